"""List-append analysis: version orders from reads, dependency edges, non-cycle anomalies.

Every append is unique, so each read of a key reveals the order of all
appends before it: a read of x = [1 2 3] says 1 < 2 < 3. The longest read
is the key's version order, provided every other read is a prefix of it
(otherwise: incompatible-order). As in Elle, an append nobody read is placed
after the last element anybody read (a committed append that no read shows
must have come after every state that was read).

Edges (Adya's direct dependencies over that order):
- wr: the txn that appended a read's last element -> the reader;
- ww: the txn that appended the previous element -> the appender;
- rw: every txn that read the previous state -> the appender.
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from collections.abc import Sequence
from functools import partial
from itertools import accumulate, chain, compress, islice, pairwise, repeat
from operator import gt, itemgetter, le
from typing import Any, cast

from selfhood.checkers.elle.graph import PROCESS, REALTIME, RW, WR, WW, DepGraph
from selfhood.checkers.elle.history import Txn
from selfhood.checkers.history import repeated
from selfhood.errors import HistoryError

INIT: Any = ("<init>",)  # the empty initial state of every key


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return "[" + " ".join(_show(x) for x in v) + "]"
    if v is None:
        return "nil"
    return repr(v) if isinstance(v, str) else str(v)


class ListAppendAnalysis:
    """Indexes, graph and anomalies for one list-append history."""

    def __init__(self, txns: Sequence[Txn]) -> None:
        self.txns = txns
        self.graph = DepGraph.empty(len(txns))
        self.anomalies: dict[str, list[str]] = {}
        self.writer: dict[tuple[Any, Any], int] = {}
        self.intermediate: set[tuple[Any, Any]] = set()
        # ok reads: (txn id, key, tuple value)
        self.reads: list[tuple[int, Any, tuple[Any, ...]]] = []
        self.order: dict[Any, list[Any]] = {}
        self.pos: dict[Any, dict[Any, int]] = {}
        # (key, last element or INIT) -> readers, for keys not in plain_info
        self.read_index: dict[tuple[Any, Any], list[int]] = {}
        # key -> (pos, writer of each element, readers of each read length); see _edges
        self.plain_info: dict[Any, tuple[dict[Any, int], list[int | None],
                                         list[list[int] | None]]] = {}
        self.order_tuple: dict[Any, tuple[Any, ...]] = {}
        # (txn id, key, its appends to that key in program order), for txns
        # appending to one key more than once
        self.multi_appends: list[tuple[int, Any, list[Any]]] = []
        # key -> read value -> first reader; keys whose reads are incompatible
        self.read_values: dict[Any, dict[tuple[Any, ...], int]] = {}
        self.incompatible_keys: set[Any] = set()
        self.longest_read: dict[Any, tuple[Any, ...]] = {}
        self.twice: list[Txn] = []
        self.failed = [t.type == "fail" for t in txns]
        self._index()
        self._version_orders()
        self._edges()
        self._non_cycle()

    def add(self, name: str, text: str) -> None:
        self.anomalies.setdefault(name, []).append(text)

    # --- indexes ---------------------------------------------------------------

    def _index(self) -> None:
        writer, intermediate, add_read = self.writer, self.intermediate, self.reads.append
        twice = self.twice
        for t in self.txns:
            tid, committed, mops = t.id, t.type == "ok", t.mops
            last_append: dict[Any, Any] | None = None
            multi: dict[Any, list[Any]] | None = None
            for f, k, v in mops:
                if f == "append":
                    kv = (k, v)
                    if kv in writer:
                        raise HistoryError(
                            f"op {t.index}: element {_show(v)} appended to key {_show(k)} "
                            f"twice (also by op {self.txns[writer[kv]].index}); list-append "
                            "needs unique appends")
                    writer[kv] = tid
                    if last_append is None:
                        last_append = {k: v}
                        continue
                    if k in last_append:
                        intermediate.add((k, last_append[k]))
                        if multi is None:
                            multi = {}
                        multi.setdefault(k, [last_append[k]]).append(v)
                    last_append[k] = v
                elif f == "r":
                    if committed:
                        # Elle reads a committed nil as the empty initial state
                        if v is None:
                            v = ()
                        elif type(v) is not tuple:  # lists were normalized to tuples
                            raise HistoryError(f"op {t.index}: list-append read of key "
                                               f"{_show(k)} returned {v!r}, not a list")
                        add_read((tid, k, v))
                else:
                    raise HistoryError(f"op {t.index}: list-append micro-op must be "
                                       f":append or :r, got {f!r}")
            if multi is not None:
                self.multi_appends.extend((tid, k, es) for k, es in multi.items())
            # internal, future-read and lost-update need two micro-ops on one key
            if committed and len(mops) > 1 and len({m[1] for m in mops}) < len(mops):
                twice.append(t)

    def _version_orders(self) -> None:
        values = self.read_values
        for tid, k, v in self.reads:
            if v:
                got = values.get(k)
                if got is None:
                    values[k] = {v: tid}
                else:
                    got.setdefault(v, tid)  # one hash of v, not two
        for k, vs in values.items():
            ordered = sorted(vs, key=len)
            for a, b in pairwise(ordered):
                if b[:len(a)] != a:
                    self.add("incompatible-order",
                             f"key {_show(k)}: reads {_show(a)} and {_show(b)} cannot both be "
                             "states of one list (neither is a prefix of the other)")
                    self.incompatible_keys.add(k)
                    break
            longest = ordered[-1]
            self.longest_read[k] = longest
            self.order[k] = list(dict.fromkeys(longest))
        # a key nobody read non-empty, appended to once: that append is its order
        unread: dict[Any, Any] = {}
        order = self.order
        for kv in self.writer:
            k = kv[0]
            if k not in order:
                unread[k] = INIT if k in unread else kv[1]
        for k, v in unread.items():
            if v is not INIT:
                order[k] = [v]
        self.pos = {k: dict(zip(o, range(len(o)), strict=True)) for k, o in order.items()}
        self.order_tuple = {k: tuple(o) for k, o in order.items()}

    def _prev(self, k: Any, v: Any) -> Any:
        """The element appended just before v (INIT if v was first)."""
        order = self.order.get(k)
        if not order:
            return INIT
        i = self.pos[k].get(v)
        if i is None:
            return order[-1]
        return order[i - 1] if i > 0 else INIT

    # --- edges -------------------------------------------------------------------

    def _edges(self) -> None:
        adj = self.graph.adj
        writer = self.writer
        read_index = self.read_index
        failed = self.failed
        order, pos = self.order, self.pos
        # Keys whose reads are all prefixes of a duplicate-free version order o
        # (see _non_cycle): a read of length L is the state after o[L - 1],
        # whose writer and readers sit at index L - 1 and L of two lists, with
        # no (key, element) tuple to build and hash per read or append.
        plain_info = self.plain_info
        for k, lr in self.longest_read.items():
            o = order[k]
            if k not in self.incompatible_keys and len(lr) == len(o) and INIT not in pos[k]:
                plain_info[k] = (pos[k], list(map(writer.get, zip(repeat(k), o))),
                                 [None] * (len(o) + 1))
        for tid, k, v in self.reads:
            info = plain_info.get(k)
            if info is not None:
                n = len(v)
                if n:
                    w = info[1][n - 1]
                    if w is not None and w != tid and not failed[w]:
                        adj[w][tid] = WR  # the first edges: no other relation yet
                by_len = info[2]
                got = by_len[n]
                if got is None:
                    by_len[n] = [tid]
                else:
                    got.append(tid)
                continue
            if v:
                ks = (k, v[-1])
                w = writer.get(ks)
                if w is not None and w != tid and not failed[w]:
                    adj[w][tid] = WR
            else:
                ks = (k, INIT)
            got = read_index.get(ks)
            if got is None:
                read_index[ks] = [tid]
            else:
                got.append(tid)
        # each element's predecessor in its key's order (INIT for the first), and the
        # last element, which precedes every append nobody read (see _prev)
        before = {k: (dict(zip(o, chain((INIT,), o), strict=False)), o[-1])
                  for k, o in order.items() if o and k not in plain_info}
        # the writer map holds every append in txn order, as the loop over txns would
        for kv, tid in writer.items():
            if failed[tid]:
                continue
            k = kv[0]
            info = plain_info.get(k)
            if info is not None:
                ws = info[1]
                i = info[0].get(kv[1], len(ws))  # nobody read it: after the last
                if i:
                    w = ws[i - 1]
                    if w is not None and w != tid and not failed[w]:
                        row = adj[w]
                        row[tid] = row.get(tid, 0) | WW
                rs = info[2][i]
            else:
                got_b = before.get(k)
                if got_b is None:
                    kp = (k, INIT)
                else:
                    prev = got_b[0].get(kv[1], got_b[1])
                    kp = (k, prev)
                    if prev is not INIT:
                        w = writer.get(kp)
                        if w is not None and w != tid and not failed[w]:
                            row = adj[w]
                            row[tid] = row.get(tid, 0) | WW
                rs = read_index.get(kp)
            if rs is not None:
                for r in rs:
                    if r != tid:
                        row = adj[r]
                        row[tid] = row.get(tid, 0) | RW

    def _readers(self, k: Any, x: Any) -> list[int] | tuple[()]:
        """The ok readers of key k whose read ended in element x (INIT: empty)."""
        info = self.plain_info.get(k)
        if info is None:
            return self.read_index.get((k, x), ())
        if x is INIT:
            return info[2][0] or ()
        i = info[0].get(x)
        if i is None:
            return ()
        return info[2][i + 1] or ()

    # --- non-cycle anomalies ---------------------------------------------------------

    def _non_cycle(self) -> None:
        # Reads that are prefixes of their key's version order hold only
        # elements of that order, so those elements are checked once per key
        # (with the longest read as the example); other reads element by element.
        order_tuple = self.order_tuple
        # keys whose reads are all prefixes of the longest, which holds no element
        # twice: every read is a prefix of the version order (the longest itself)
        plain = {k for k, lr in self.longest_read.items()
                 if k not in self.incompatible_keys and len(lr) == len(order_tuple[k])}
        longest: dict[Any, tuple[int, tuple[Any, ...]]]
        if len(plain) == len(self.longest_read):
            longest = self._plain_reads()
        else:
            longest = {}
            self._reads(longest, plain)
        plain_info = self.plain_info
        for k, (tid, v) in longest.items():
            info = plain_info.get(k)
            self._check_elements(tid, k, v, v, None if info is None else info[1])
        for t in self.twice:  # committed txns with two micro-ops on one key
            self._internal(t)
        self._reordered_appends()
        self._lost_updates()
        self._dirty_updates()
        self._lost_appends()

    def _plain_reads(self) -> dict[Any, tuple[int, tuple[Any, ...]]]:
        """_reads when every key read non-empty is plain, without a loop over the reads.

        Each key's first non-empty read inserted it into read_values, as into
        `longest` below. A read ending in an intermediate append is read by a
        reader _readers lists; its reads are walked in program order, as the
        loop over the reads would.
        """
        read_values, intermediate = self.read_values, self.intermediate
        longest = {k: (read_values[k][lr], lr) for k, lr in self.longest_read.items()}
        if intermediate:
            txns = self.txns
            readers = sorted({r for k, e in intermediate for r in self._readers(k, e)})
            for tid in readers:
                for f, k, v in txns[tid].mops:
                    if f == "r" and v and (k, v[-1]) in intermediate:
                        self._intermediate_read(tid, k, v)
        return longest

    def _reads(self, longest: dict[Any, tuple[int, tuple[Any, ...]]], plain: set[Any]) -> None:
        """G1b, duplicate-elements and the elements of reads of non-plain keys, read by read."""
        txns = self.txns
        order_tuple, intermediate = self.order_tuple, self.intermediate
        read_values, longest_read = self.read_values, self.longest_read
        for tid, k, v in self.reads:
            if k in plain:
                if v and k not in longest:  # the first reader of the longest, at the
                    lr = longest_read[k]    # key's first non-empty read, as below
                    longest[k] = (read_values[k][lr], lr)
                if intermediate and v and (k, v[-1]) in intermediate:
                    self._intermediate_read(tid, k, v)
                continue
            order = order_tuple.get(k, ())
            if v == order[:len(v)]:
                # a prefix of the (duplicate-free) version order: no element twice
                if len(v) > len(longest.get(k, (0, ()))[1]):
                    longest[k] = (tid, v)
            else:
                twice = repeated(v)
                if twice:
                    dups = sorted({_show(e) for e in twice})
                    self.add("duplicate-elements",
                             f"{txns[tid].name()} read key {_show(k)} = {_show(v)}, which "
                             f"holds {', '.join(dups)} more than once")
                self._check_elements(tid, k, v, v)
            if v and (k, v[-1]) in intermediate:
                self._intermediate_read(tid, k, v)

    def _intermediate_read(self, tid: int, k: Any, v: tuple[Any, ...]) -> None:
        """G1b: `tid` read an element its writer appended to the key again later."""
        txns = self.txns
        w = self.writer[(k, v[-1])]
        if w != tid:
            self.add("G1b", f"{txns[tid].name()} read key {_show(k)} = {_show(v)}, "
                            f"ending in {_show(v[-1])}, an intermediate append of "
                            f"{txns[w].name()} which appended to {_show(k)} again "
                            "later (intermediate read)")

    def _check_elements(self, tid: int, k: Any, v: tuple[Any, ...],
                        elements: tuple[Any, ...],
                        writers: list[int | None] | None = None) -> None:
        """garbage-read and G1a for these elements of read `v` by `tid` (their writers,
        if known)."""
        if writers is None:
            writers = list(map(self.writer.get, zip(repeat(k), elements)))
        if None not in writers and not any(
                map(self.failed.__getitem__, cast(list[int], writers))):
            return  # every element written, by no failed txn (all at C speed)
        txns = self.txns
        t = txns[tid]
        for e in elements:
            w = self.writer.get((k, e))
            if w is None:
                self.add("garbage-read",
                         f"{t.name()} read key {_show(k)} = {_show(v)}, but no "
                         f"transaction ever appended {_show(e)} to it")
            elif txns[w].type == "fail":
                self.add("G1a", f"{t.name()} read key {_show(k)} = {_show(v)}, including "
                                f"{_show(e)} appended by {txns[w].name()}, which failed "
                                "(aborted read)")

    def _internal(self, t: Txn) -> None:
        # expected: key -> (known prefix?, list of elements)
        expected: dict[Any, tuple[bool, list[Any]]] = {}
        # what the txn read of each key so far: its one read, a set once it read twice
        read_so_far: dict[Any, tuple[Any, ...] | set[Any]] = {}
        for f, k, v in t.mops:
            if f == "append":
                if v in read_so_far.get(k, ()):
                    self.add("future-read", f"{t.name()} read {_show(v)} in key {_show(k)} "
                                            "before appending it itself")
                known_elems = expected.get(k)
                if known_elems is None:
                    expected[k] = (False, [v])
                else:
                    known_elems[1].append(v)  # in place: one txn may append 10^5 times
            else:
                seen = v or ()
                before = read_so_far.get(k)
                if before is None:
                    read_so_far[k] = seen
                else:
                    if type(before) is not set:
                        before = read_so_far[k] = set(before)
                    before.update(seen)
                if k in expected:
                    known, elems = expected[k]
                    ok = (list(seen) == elems) if known else (
                        len(seen) >= len(elems) and list(seen[len(seen) - len(elems):]) == elems)
                    if not ok:
                        want = _show(tuple(elems)) if known else (
                            "[... " + " ".join(_show(e) for e in elems) + "]")
                        self.add("internal", f"{t.name()} read key {_show(k)} = {_show(seen)} "
                                             f"but its own earlier reads/appends imply {want}")
                expected[k] = (True, list(seen))

    def _reordered_appends(self) -> None:
        """Ours: a read shows one txn's appends to a key out of the txn's own order.

        A transaction that appends 1 then 2 to x makes every later state of x
        hold 1 immediately followed by 2. A read holding 2 before 1, or 2 without
        1, shows a state no execution of the transactions ever produced, whatever
        the isolation level (dirty reads only expose states that existed). The
        other half, another txn's element between 1 and 2, needs no check here:
        it puts ww edges both ways between the two writers (G0), or reads a
        failed write (G1a, dirty-update), or an element nobody wrote
        (garbage-read).

        The key's version order holds every element of its compatible reads, so
        it is checked once per key; for keys with incompatible reads (already
        invalid from read-committed up), every distinct read is checked too.
        """
        txns = self.txns
        for tid, k, elems in self.multi_appends:
            if k not in self.read_values:
                continue
            if k in self.incompatible_keys:
                candidates = [(v, r, {e: i for i, e in enumerate(v)})
                              for v, r in self.read_values[k].items()]
            else:
                longest = self.longest_read[k]
                candidates = [(longest, self.read_values[k][longest], self.pos[k])]
            for v, reader, pos in candidates:
                why = _out_of_order(elems, pos)
                if why is not None:
                    self.add("reordered-appends",
                             f"key {_show(k)}: {txns[tid].name()} appended "
                             f"{' then '.join(_show(e) for e in elems)}, but "
                             f"{txns[reader].name()} read {_show(k)} = {_show(v)}, "
                             f"which holds {why}")
                    break

    def _lost_updates(self) -> None:
        groups: dict[tuple[Any, Any], list[Txn]] = {}
        for t in self.twice:
            first_read: dict[Any, Any] = {}
            written: set[Any] = set()
            for f, k, v in t.mops:
                if f == "r":
                    first_read.setdefault(k, v or ())
                elif k not in written:
                    written.add(k)
                    if k in first_read:
                        groups.setdefault((k, first_read[k]), []).append(t)
        for (k, v), ts in groups.items():
            if len(ts) > 1:
                self.add("lost-update",
                         f"{', '.join(t.name() for t in ts)} all read key {_show(k)} = "
                         f"{_show(v)} and then appended to it: all but one update is lost")

    def _dirty_updates(self) -> None:
        txns = self.txns
        writer = self.writer
        failed = self.failed
        if not any(failed):
            return  # no failed append to build on
        # only a key with a failed append can have a committed one on top of it
        with_failed = {k for t in compress(txns, failed)
                       for f, k, _ in t.mops if f == "append"}
        plain_info = self.plain_info
        for k, order in self.order.items():
            if k not in with_failed:
                continue
            info = plain_info.get(k)
            if info is not None:
                ws = info[1]
                if None not in ws and not any(map(failed.__getitem__, cast(list[int], ws))):
                    continue  # no failed append in the order (C speed): none built on
            t1_type = "ok"
            t1: Txn | None = None  # None: the initial state
            span: list[Any] = []
            for v in order:
                w = writer.get((k, v))
                if w is None:
                    continue  # garbage, reported elsewhere
                t2 = txns[w]
                if t1_type == "fail" and t2.type == "ok":
                    t1_name = "the initial state" if t1 is None else t1.name()
                    self.add("dirty-update",
                             f"key {_show(k)}: {t2.name()} (committed) appended {_show(v)} on "
                             f"top of {_show(tuple(span))}, written by {t1_name}, which failed")
                if t2.type == "info" or (t2.type == "fail" and t1_type == "fail"):
                    span.append(v)  # can't say yet; keep the span open
                    continue
                t1_type, t1, span = t2.type, t2, [v]

    def _lost_appends(self) -> None:
        """Ours: an acknowledged append no read that began after the ack contains.

        Reads of a key whose orders are compatible are prefixes of its version
        order, so "some later read contains e" is "the longest read starting
        after the ack is longer than e's position": a suffix maximum, O(reads).
        """
        txns = self.txns
        invoked = [t.invoke_pos for t in txns]
        # each key's ok reads, as they are in self.reads (no new tuple a read)
        reads_by_key: dict[Any, list[tuple[int, Any, tuple[Any, ...]]]] = {}
        for r in self.reads:
            got = reads_by_key.get(r[1])
            if got is None:
                reads_by_key[r[1]] = [r]
            else:
                got.append(r)
        acked = [t.complete_pos if t.type == "ok" else None for t in txns]
        # each read key's acknowledged appends: elements and writers, in writer order
        appends_by_key: dict[Any, tuple[list[Any], list[int]]] = {
            k: ([], []) for k in reads_by_key}
        for kv, w in self.writer.items():
            if acked[w] is not None:
                got_a = appends_by_key.get(kv[0])
                if got_a is not None:
                    got_a[0].append(kv[1])
                    got_a[1].append(w)
        # beyond any position in an order and any read's length (a txn may append many
        # elements, so the txn count is no bound): an element not in the order sits
        # here, and "no read began after the ack" one further
        unseen = sys.maxsize - 1
        lost: dict[Any, list[str]] = {}
        for k, (es, ws) in appends_by_key.items():
            if not es:
                continue
            rs = reads_by_key[k]
            starts = list(map(invoked.__getitem__, map(itemgetter(0), rs)))
            if not all(map(le, starts, islice(starts, 1, None))):
                by_start = sorted(range(len(rs)), key=starts.__getitem__)  # stable
                rs = list(map(rs.__getitem__, by_start))
                starts = list(map(starts.__getitem__, by_start))
            later = list(map(partial(bisect_right, starts), map(acked.__getitem__, ws)))
            if k in self.incompatible_keys:
                seen = [i >= len(rs) or any(e in r[2] for r in rs[i:])
                        for e, i in zip(es, later, strict=True)]
            else:
                # the longest read that began at or after each read, and an element
                # not in the order at an impossible position
                longest_after = list(accumulate(map(len, map(itemgetter(2), reversed(rs))),
                                                max))
                longest_after.reverse()
                longest_after.append(unseen + 1)
                seen = list(map(gt, map(longest_after.__getitem__, later),
                                map(self.pos.get(k, {}).get, es, repeat(unseen))))
            if all(seen):
                continue
            lost[k] = [f"{txns[w].name()} appended {_show(e)} to key {_show(k)} and was "
                       f"acknowledged, but none of the {len(rs) - i} reads of "
                       f"{_show(k)} that began later contains it "
                       f"(the last read {_show(rs[-1][2])})"
                       for e, w, i, ok in zip(es, ws, later, seen, strict=True) if not ok]
        if lost:  # keys in the order of their first acknowledged append
            for k in dict.fromkeys(kv[0] for kv, w in self.writer.items()
                                   if acked[w] is not None and kv[0] in lost):
                for text in lost[k]:
                    self.add("lost-append", text)

    # --- explanations ------------------------------------------------------------------

    def explain(self, a: int, b: int, rel: int) -> str:
        """Why edge a -> b of relation `rel` exists, in words."""
        ta, tb = self.txns[a], self.txns[b]
        if rel == WR:
            for f, k, v in tb.mops:
                if f == "r" and v and isinstance(v, list | tuple):
                    last = v[-1]
                    if self.writer.get((k, last)) == a:
                        return (f"{tb.name()} read key {_show(k)} = "
                                f"{_show(v)}, whose last element "
                                f"{ta.name()} appended")
        if rel in (WW, RW):
            for f, k, v in tb.mops:
                if f != "append":
                    continue
                prev = self._prev(k, v)
                if rel == WW and prev is not INIT and self.writer.get((k, prev)) == a:
                    return (f"{tb.name()} appended {_show(v)} to key {_show(k)} after "
                            f"{ta.name()} appended {_show(prev)}")
                if rel == RW and a in self._readers(k, prev):
                    if prev is INIT:
                        return (f"{ta.name()} read key {_show(k)} empty, and {tb.name()}'s "
                                f"append of {_show(v)} is its first element")
                    return (f"{ta.name()} read key {_show(k)} ending at {_show(prev)} and did "
                            f"not see {tb.name()}'s append of {_show(v)}, which came next")
        return explain_order(ta, tb, rel)


def _out_of_order(elems: list[Any], pos: dict[Any, int]) -> str | None:
    """How a read (as element -> position) contradicts this append order, or None.

    The read may stop partway through the appends (a prefix), but it may not
    skip one and show a later one, nor show them in another order.
    """
    missing: list[Any] = []
    last_e: Any = None
    last_pos = -1
    for e in elems:
        p = pos.get(e)
        if p is None:
            missing.append(e)
            continue
        if missing:
            return f"{_show(e)} but not {_show(missing[0])}, appended before it"
        if p < last_pos:
            return f"{_show(e)} before {_show(last_e)}"
        last_e, last_pos = e, p
    return None


def explain_order(ta: Txn, tb: Txn, rel: int) -> str:
    """Process / realtime edges, shared by both workloads."""
    if rel == REALTIME:
        return (f"{ta.name()} completed (op {ta.index}) before {tb.name()} was invoked "
                f"(op {tb.invoke_index})")
    if rel == PROCESS:
        return f"{ta.name()} then {tb.name()} ran in that order on process {ta.process!r}"
    return f"{ta.name()} -> {tb.name()}"


def show(v: Any) -> str:
    """EDN-ish rendering of values in explanations."""
    return _show(v)
