"""Session guarantees per process (pure): read-your-writes, monotonic reads,
monotonic writes, writes-follow-reads (Terry et al., 1994).

The checker never needs the system's real version order. It only uses order
facts a client can know from its own session, which every system that
offers the guarantees must respect:

- a process's own acknowledged writes to a key are ordered in session order;
- a write is newer than every version its writer had already read of that key.

From those facts each write ``w`` gets ``older(w)``: the writes known to
precede it (per writer, a session sequence number, so a vector clock). Every
process carries *floors*: writes its next reads must reflect, each with the
guarantee that demands it:

- read-your-writes: the process's own acknowledged writes;
- monotonic-reads: every write the process has already read;
- monotonic-writes: when it reads a write ``w`` by process ``q``, every write
  ``q`` acknowledged before ``w`` (to any key);
- writes-follow-reads: when it reads ``w`` by ``q``, the latest version of
  each key that ``q`` had read before issuing ``w``.

A register read violates a floor ``f`` when it returns the initial value, or
a write known to be older than ``f``. A list-append or set read violates it
when ``f``'s element is absent; a single list read that shows a writer's
later append without its earlier one violates read-your-writes if the
reader is that writer, monotonic-writes otherwise (and showing them in the
wrong order is monotonic-writes). A list or set read that holds an element
twice reflects no state at all: ``duplicate-elements`` (Elle's name), whatever
guarantees are checked. Floors are not transitive (that would be
causal consistency). Reads are checked against floors only, so the checker
is sound but not complete; docs/checkers.md spells out both. Values are
assumed unique per key, as in Jepsen and Elle; keys where a value is written
twice are skipped and listed in details.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from selfhood.checkers.history import (
    TXN_MODELS,
    Op,
    Pair,
    freeze,
    pair_ops,
    paused_gc,
    repeated,
)
from selfhood.checkers.verdict import CheckResult

__all__ = [
    "GUARANTEES",
    "SESSION_MODELS",
    "SOp",
    "check_session",
    "session_ops",
]

RYW = "read-your-writes"
MR = "monotonic-reads"
MW = "monotonic-writes"
WFR = "writes-follow-reads"
#: in the order a violated read is classified when several floors fail
GUARANTEES: tuple[str, ...] = (RYW, MR, MW, WFR)
#: a list or set read holding one element twice (no state reads like that)
DUPLICATES = "duplicate-elements"
SESSION_MODELS = frozenset({"register", "cas-register", "kv", "list-append", "rw-register",
                            "set"})
#: stronger models that imply all four guarantees and are ruled out with them
IMPLIED_BY = ("causal", "sequential", "linearizable")


@dataclass(frozen=True, slots=True)
class Mop:
    """A micro-op: w (register write), r (register read), a (append/add), l (list/set read)."""

    kind: str
    key: Hashable
    value: Any


@dataclass(slots=True)
class SOp:
    """One op of a session: its pair, outcome and micro-ops in normal form."""

    pair: Pair
    type: str
    process: Any
    mops: list[Mop]
    ordered: bool = True  # list reads are ordered (False for sets)

    @property
    def index(self) -> int:
        return (self.pair.completion or self.pair.invoke).index

    @property
    def invoke_time(self) -> int | None:
        return self.pair.invoke.time

    @property
    def complete_time(self) -> int | None:
        return None if self.pair.completion is None else self.pair.completion.time

    @property
    def node(self) -> str | None:
        c = self.pair.completion
        return (c.node if c is not None and c.node is not None else self.pair.invoke.node)


def _kv_key_value(op: Op, value: Any) -> tuple[Hashable, Any] | None:
    if "key" in op.extra:
        return freeze(op.extra["key"]), value
    if isinstance(value, list | tuple) and len(value) == 2:
        return freeze(value[0]), value[1]
    return None


def _is_pair(x: Any) -> bool:
    return isinstance(x, list | tuple) and len(x) == 2


def _register_keyed(f: str, inv_value: Any, value: Any) -> bool:
    if f == "cas":
        return _is_pair(value) and _is_pair(value[1])
    if f == "read":
        return _is_pair(value) and (inv_value is None or _is_pair(inv_value))
    return _is_pair(value)


#: element types freeze() returns unchanged
_ATOMIC = frozenset({int, str, float, bool, type(None)})


def _frozen_list(v: Any) -> list[Any]:
    """A read list with every element frozen. A list of ints or strs (the usual
    case) is returned as it is, without a Python pass over it (reads can be long):
    nothing here mutates it."""
    if type(v) is list and _ATOMIC.issuperset(map(type, v)):
        return v
    return [freeze(x) for x in (v or [])]


def _mops(model: str, inv: Op, comp: Op | None) -> tuple[list[Mop], bool]:
    """Normalise one pair's effects; reads come from the completion only."""
    done = comp if comp is not None else inv
    f = done.f or inv.f or ""
    ok = comp is not None and comp.type == "ok"
    out: list[Mop] = []
    if model in TXN_MODELS:
        value = comp.value if ok and comp is not None else inv.value
        for m in value or []:
            if not isinstance(m, list | tuple) or len(m) < 2:
                continue
            mf, k = m[0], freeze(m[1])
            v = m[2] if len(m) > 2 else None
            if mf == "append":
                out.append(Mop("a", k, freeze(v)))
            elif mf == "w":
                out.append(Mop("w", k, freeze(v)))
            elif mf == "r" and ok:
                if model == "list-append":
                    out.append(Mop("l", k, _frozen_list(v)))
                else:
                    out.append(Mop("r", k, freeze(v)))
        return out, True
    if model == "set":
        # each instance's set is its own object (as `convergence` reads them); a history
        # without instances (Jepsen's) has one set
        set_key: Hashable = inv.instance
        if f == "add":
            out.append(Mop("a", set_key, freeze(inv.value)))
        elif f == "read" and ok and comp is not None:
            out.append(Mop("l", set_key, _frozen_list(comp.value)))
        return out, False
    value = comp.value if ok and comp is not None else inv.value
    if model == "kv":
        kv = _kv_key_value(done, value)
        if kv is None:
            return out, True
        key, v = kv
    elif "key" in inv.extra:
        key, v = freeze(inv.extra["key"]), value
    elif _register_keyed(f, inv.value, value):
        # Jepsen's independent keys: [k v] (and [k [from to]] for cas), as linear.py reads them
        key, v = freeze(value[0]), value[1]
    else:
        key, v = None, value
    if f in ("write", "put"):
        out.append(Mop("w", key, freeze(v)))
    elif f in ("read", "get") and ok:
        out.append(Mop("r", key, freeze(v)))
    elif f == "cas" and isinstance(v, list | tuple) and len(v) == 2:
        if ok:
            out.append(Mop("r", key, freeze(v[0])))
        out.append(Mop("w", key, freeze(v[1])))
    elif f == "append" and model == "kv":
        # string append: values are not versions; mark the key unsupported
        out.append(Mop("x", key, None))
    return out, True


def session_ops(ops: Sequence[Op], model: str) -> list[SOp]:
    """Pairs in invocation order with normalised micro-ops (non-client ops dropped)."""
    out = []
    for pair in pair_ops(ops):
        if pair.invoke.process == "nemesis":
            continue
        comp = pair.completion
        typ = "info" if comp is None else comp.type
        mops, ordered = _mops(model, pair.invoke, comp)
        out.append(SOp(pair, typ, pair.invoke.process, mops, ordered))
    return out


WriteId = tuple[Hashable, Hashable]  # (key, value)
VC = dict[Any, int]  # writer process -> session sequence number
_Why = tuple[str, int, "_Write | None"]  # (own|read|mw|wfr, op index, write read)
# (writer's seq, why, what the reader knew was older then, the write itself)
_Floor = tuple[int, _Why, VC, "_Write"]
_Floors = dict[Hashable, dict[str, dict[Any, _Floor]]]
class _Deps:
    """What a reader owes one writer q: the highest session position (ordinal) of
    q's writes it has read, and how far into q's write log (monotonic-writes) and
    q's read log (writes-follow-reads) the floors that bound implies are applied."""

    __slots__ = ("bound", "mw_at", "rlog", "wfr_at", "wlog")

    def __init__(self, wlog: _Log | None, rlog: _Log | None) -> None:
        self.bound = 0
        self.wlog, self.rlog = wlog, rlog  # q's write and read logs
        self.mw_at = 0
        self.wfr_at = 0


_MwBounds = dict[Any, _Deps]  # writer -> what the reader owes it
_EMPTY: VC = {}


# what a list or set read holds: (pos, n), where value v is in the read iff
# pos.get(v, n) < n (a prefix of an indexed list: pos maps its values to their
# positions; otherwise pos holds the read's values, each at 0, and n is 1)
_Contents = tuple[dict[Any, int], int]


class _Seen(NamedTuple):
    """A list read, scanned once (see _Checker.scan and _KeyIndex.read)."""

    last_any: dict[Any, _Write]  # per writer, in order of first appearance
    last_acked: dict[Any, _Write]
    in_order: bool  # each writer's acknowledged appends appear as 1..n in order
    contents: _Contents


_NO_CONTENTS: _Contents = ({}, 0)
_NO_KEYS: dict[Hashable, int] = {}
_NEVER = sys.maxsize


class _KeyIndex:
    """One key's list reads, each a prefix of the longest read seen so far.

    Reads of a key in a valid history are prefixes of one list, and a key that
    lives long is read whole over and over, so the total read length grows with
    the square of the history. The index scans each element once, when it first
    appears; a later read that is a prefix of the indexed list (or extends it)
    costs one list comparison in C plus a bisect per writer, not a Python pass
    over the whole read. Only reads without a repeated value are indexed.
    """

    __slots__ = ("acked", "any", "nxt", "ooo", "pos", "unacked", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.pos: dict[Any, int] = {}  # value -> its position
        # per writer, in order of first appearance: the positions of its writes and the
        # writes (all, and the acknowledged ones)
        self.any: dict[Any, tuple[list[int], list[_Write]]] = {}
        self.acked: dict[Any, tuple[list[int], list[_Write]]] = {}
        self.nxt: dict[Any, int] = {}  # per writer, the seq its next acked append must have
        self.ooo = _NEVER  # the first position where a writer's appends leave 1..n order
        self.unacked = _NEVER  # the first position of a write not acknowledged

    def extend(self, tail: list[Any], key: Hashable, writes: dict[WriteId, _Write]) -> bool:
        """Append `tail`, unless a value would then appear twice (and then change nothing)."""
        pos = self.pos
        if len(set(tail)) != len(tail) or not pos.keys().isdisjoint(tail):
            return False
        any_, acked, nxt, ooo = self.any, self.acked, self.nxt, self.ooo
        i = len(self.values)
        for v in tail:
            pos[v] = i
            w = writes.get((key, v))
            if w is not None:
                q = w.process
                at = any_.get(q)
                if at is None:
                    any_[q] = ([i], [w])
                else:
                    at[0].append(i)
                    at[1].append(w)
                seq = w.seq
                if seq is not None:
                    at = acked.get(q)
                    if at is None:
                        acked[q] = ([i], [w])
                    else:
                        at[0].append(i)
                        at[1].append(w)
                    if ooo == _NEVER:
                        if seq != nxt.get(q, 1):
                            ooo = i
                        nxt[q] = seq + 1
                elif i < self.unacked:
                    self.unacked = i
            i += 1
        self.ooo = ooo
        self.values.extend(tail)
        return True

    def read(self, n: int) -> _Seen:
        """The scan of the first n values (what _Checker.scan would find)."""
        acked = _last_before(self.acked, n)
        # usually every write shown was acknowledged: then the two are one (read-only)
        every = acked if n <= self.unacked else _last_before(self.any, n)
        return _Seen(every, acked, n <= self.ooo, (self.pos, n))


def _last_before(by_writer: dict[Any, tuple[list[int], list[_Write]]], n: int
                 ) -> dict[Any, _Write]:
    """Per writer (in order of first appearance), its last write at a position < n."""
    out: dict[Any, _Write] = {}
    for q, (ps, ws) in by_writer.items():
        if ps[0] >= n:
            break  # writers come in order of first appearance
        out[q] = ws[bisect_left(ps, n) - 1]
    return out


@dataclass(slots=True)
class _Write:
    key: Hashable
    value: Any
    sop: SOp
    process: Any
    seq: int | None  # per (process, key) among acknowledged writes; None for info
    ordinal: int  # position in the writer's session
    # set for register writes only; appends share one empty, never-mutated map
    older: VC = field(default_factory=lambda: _EMPTY)


def _describe(w: _Write) -> str:
    if w.sop.mops and any(m.kind == "a" for m in w.sop.mops):
        return f"the append of {w.value!r} to {w.key!r} (op {w.sop.index}, process {w.process!r})"
    return f"{w.key!r}={w.value!r} (op {w.sop.index}, process {w.process!r})"


class _Checker:
    def __init__(self, sops: list[SOp], initial: Any, guarantees: Sequence[str],
                 model_kv: bool = False, index: bool = True) -> None:
        self.guarantees = tuple(g for g in GUARANTEES if g in guarantees)
        self.sops = sops
        # kv stores (Porcupine's) answer "" for a missing key, Jepsen's nil
        self.initials = (initial, "") if model_kv else (initial,)
        self.writes: dict[WriteId, _Write] = {}
        self.by_seq: dict[tuple[Hashable, Any, int], _Write] = {}
        self.skipped: set[Hashable] = set()
        self.result = CheckResult(valid=True)
        self.reads_checked = 0
        # Per writer, (ordinal, key, write) of its acknowledged writes in session order:
        # what it had written to a key before a write w (monotonic-writes) is the last
        # entry for the key with ordinal < w.ordinal. Per writer, (ordinal, key,
        # newest write) of the newest version each of its reads saw (writes-follow-
        # reads); what it had read before w is the last entry per key with ordinal <
        # w.ordinal.
        self.write_log: dict[Any, _Log] = defaultdict(_new_log)
        self.wfr_log: dict[Any, _Log] = defaultdict(_new_log)
        # per process, the keys its ok ops have yet to read (and how many such ops)
        self.read_keys: dict[Any, dict[Hashable, int]] = defaultdict(dict)
        self.register_reads = False  # any "r" micro-op (then `know` is kept, see raise_floors)
        self.index: dict[Hashable, _KeyIndex] = {}  # list reads, see _KeyIndex
        self.use_index = index

    # pass 0: name every write ------------------------------------------------
    def collect_writes(self) -> None:
        seqs: dict[tuple[Any, Hashable], int] = defaultdict(int)
        ordinals: dict[Any, int] = defaultdict(int)
        dup: set[Hashable] = set()
        for s in self.sops:
            if s.type == "fail":
                continue
            ordinals[s.process] += 1
            for m in s.mops:
                if m.kind == "x":
                    self.skipped.add(m.key)
                elif m.kind == "r":
                    self.register_reads = True
                if m.kind not in ("w", "a"):
                    continue
                wid = (m.key, m.value)
                seq = None
                if s.type == "ok":
                    seqs[(s.process, m.key)] += 1
                    seq = seqs[(s.process, m.key)]
                if wid in self.writes:
                    dup.add(m.key)
                w = _Write(m.key, m.value, s, s.process, seq, ordinals[s.process])
                self.writes[wid] = w
                if seq is not None:
                    self.by_seq[(m.key, s.process, seq)] = w
        self.skipped |= dup

    def list_read(self, m: Mop) -> _Seen | None:
        """An ordered list read through its key's index (see _KeyIndex); None if the read
        holds a value twice."""
        vals: list[Any] = m.value
        n = len(vals)
        ix = self.index.get(m.key)
        if ix is not None:
            have = ix.values
            k = len(have)
            if n <= k:
                if (have == vals) if n == k else (have[:n] == vals):
                    return ix.read(n)
            elif have == vals[:k]:
                return ix.read(n) if ix.extend(vals[k:], m.key, self.writes) else None
        # the first read of the key, or one that is not a prefix of the last: index it
        ix = _KeyIndex()
        if not ix.extend(vals, m.key, self.writes):
            return None
        self.index[m.key] = ix
        return ix.read(n)

    def scan(self, m: Mop) -> _Seen:
        """One pass over a read: each writer's last write it shows (and last
        acknowledged one), and whether each writer's appends are 1..n in order."""
        writes = self.writes
        key = m.key
        last_any: dict[Any, _Write] = {}
        last_acked: dict[Any, _Write] = {}
        nxt: dict[Any, int] = {}
        in_order = True
        for v in m.value:
            w = writes.get((key, v))
            if w is None:
                continue
            q = w.process
            last_any[q] = w
            seq = w.seq
            if seq is not None:
                last_acked[q] = w
                if in_order:
                    if seq != nxt.get(q, 1):
                        in_order = False
                    nxt[q] = seq + 1
        return _Seen(last_any, last_acked, in_order, (dict.fromkeys(m.value, 0), 1))

    def observed(self, m: Mop) -> list[_Write]:
        if m.kind == "r":
            w = self.writes.get((m.key, m.value))
            return [w] if w is not None else []
        return [w for v in m.value if (w := self.writes.get((m.key, v))) is not None]

    # pass 1: what each writer knew when it wrote ---------------------------------
    def annotate_writes(self) -> None:
        """older(w) for register writes, and the writers' records (own_writes, wfr_log) from
        which each write's monotonic-writes and writes-follow-reads deps are read."""
        own: dict[Any, dict[Hashable, int]] = defaultdict(dict)
        seen: dict[Any, dict[Hashable, VC]] = defaultdict(dict)
        ordinals: dict[Any, int] = defaultdict(int)
        for s in self.sops:
            if s.type == "fail":
                continue
            p = s.process
            ordinals[p] += 1
            ordinal = ordinals[p]
            for m in s.mops:
                if m.kind in ("w", "a"):
                    w = self.writes[(m.key, m.value)]
                    if w.sop is not s:
                        continue
                    if m.kind == "w":
                        older = dict(seen[p].get(m.key, {}))
                        if own[p].get(m.key):
                            older[p] = max(older.get(p, 0), own[p][m.key])
                        if s.type == "ok":
                            # a version this op itself read first (a cas) is older too
                            for r in s.mops:
                                if r is m:
                                    break
                                if r.kind == "r" and r.key == m.key:
                                    rw = self.writes.get((r.key, r.value))
                                    if rw is not None and rw.seq is not None and rw is not w:
                                        older[rw.process] = max(older.get(rw.process, 0),
                                                                rw.seq)
                        w.older = older
            if s.type != "ok":
                continue
            rk = self.read_keys[p]
            read_here: set[Hashable] = set()
            for m in s.mops:
                if m.kind in ("r", "l"):
                    if m.key not in read_here:
                        read_here.add(m.key)
                        rk[m.key] = rk.get(m.key, 0) + 1
                    if m.kind == "r":
                        obs = self.observed(m)
                        vc = seen[p].setdefault(m.key, {})
                        for w in obs:
                            if w.seq is not None:
                                vc[w.process] = max(vc.get(w.process, 0), w.seq)
                    else:  # only the newest element matters here
                        obs = []
                        for v in reversed(m.value):
                            cand = self.writes.get((m.key, v))
                            if cand is not None and cand.seq is not None:
                                obs = [cand]
                                break
                    newest = next((w for w in reversed(obs) if w.seq is not None), None)
                    if newest is not None:
                        self.wfr_log[p].add(ordinal, m.key, newest)
                elif m.kind in ("w", "a"):
                    w = self.writes[(m.key, m.value)]
                    if w.seq is not None:
                        own[p][m.key] = w.seq
                        self.write_log[p].add(ordinal, m.key, w)

    # pass 2: check every read against the process's floors -------------------------
    def violated(self, m: Mop, floor: _Write, known: VC) -> int:
        """Does register read `m` fail to reflect `floor`? 0 no, 1 yes, 2 yes by `known`.

        For a register, `known` adds the writes the reader itself knew of when
        it read `floor`: if that read honoured its guarantees they are older
        than `floor`. A violation found only that way (2) means that either
        that earlier read or this one broke a guarantee.
        """
        if m.value in self.initials:
            return 1
        w = self.writes.get((m.key, m.value))
        if w is None or w is floor or w.seq is None:
            return 0
        if floor.older.get(w.process, 0) >= w.seq:
            return 1
        return 2 if known.get(w.process, 0) >= w.seq else 0

    def check_reads(self) -> None:
        # floors[p][key][guarantee][writer] = (seq, why, reader's knowledge then)
        floors: dict[Any, _Floors] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
        know: dict[Any, dict[Hashable, VC]] = defaultdict(lambda: defaultdict(dict))
        # mw[p][q]: the newest session position of q's writes that p has read, and how far
        # q's write and read logs are applied to p's floors (see raise_floors)
        mw: dict[Any, _MwBounds] = defaultdict(dict)
        skipped = self.skipped
        snapshot = [g for g in (MW, WFR) if g in self.guarantees]
        for s in self.sops:
            if s.type != "ok":
                continue
            p = s.process
            passed: list[tuple[Mop, _Contents]] = []
            obs_cache: dict[int, _Seen] = {}
            fp, mwp = floors[p], mw[p]
            for m in s.mops:
                # a set holds an element once even if added twice; a list key whose
                # values repeat is skipped (values are assumed unique)
                kind = m.kind
                if kind == "l":
                    if s.ordered:
                        if m.key in skipped:
                            continue
                        seen = self.list_read(m) if self.use_index else None
                        if seen is None:  # a value read twice (or no index)
                            self.duplicates(s, m)
                            seen = self.scan(m)
                    else:
                        self.duplicates(s, m)
                        if m.key in skipped:
                            continue
                        seen = self.scan(m)
                    obs_cache[id(m)] = seen
                    contents, in_order = seen.contents, seen.in_order
                # a read after the txn's own write still owes every earlier floor
                elif kind == "r" and m.key not in skipped:
                    contents, in_order = _NO_CONTENTS, True
                else:
                    continue
                self.reads_checked += 1
                flagged = self.check_one(s, m, fp[m.key], mwp, contents)
                if flagged is None:
                    passed.append((m, contents))
                if not in_order:
                    self.within_read(s, m, self.observed(m), flagged)
            self.raise_floors(s, fp, know[p], mwp, obs_cache)
            obs_cache.clear()
            # one transaction's reads are one snapshot: what it observed on one
            # key (via monotonic-writes / writes-follow-reads) binds its other reads
            for m, contents in passed:
                self.check_one(s, m, fp[m.key], mwp, contents, snapshot)
            self.done_reading(s)

    def done_reading(self, s: SOp) -> None:
        """Strike op s's reads from its process's reads to come (see raise_floors)."""
        rk = self.read_keys.get(s.process)
        if rk is None:
            return
        for key in {m.key for m in s.mops if m.kind in ("r", "l")}:
            left = rk[key] - 1
            if left:
                rk[key] = left
            else:
                del rk[key]

    def duplicates(self, s: SOp, m: Mop) -> None:
        """A list or set read that shows an element twice."""
        if len(frozenset(m.value)) == len(m.value):
            return  # the usual case
        twice = ", ".join(map(repr, repeated(m.value)))
        self.result.add(DUPLICATES, f"process {s.process!r} read {m.key!r}={list(m.value)!r} "
                                    f"(op {s.index}), which holds {twice} twice: no state "
                                    f"of a {'list of unique appends' if s.ordered else 'set'} "
                                    f"reads like that")

    @staticmethod
    def _floors(g: str, fl: dict[str, dict[Any, _Floor]], mw: _MwBounds
                ) -> Iterable[tuple[Any, _Floor]]:
        """The reader's floors on a key for guarantee g: (writer, (seq, why, known, write)).
        Monotonic-writes floors come per writer in the order the reader first read it."""
        d = fl.get(g)
        if not d:
            return ()
        if g != MW or len(d) == 1:
            return d.items()
        return [(q, d[q]) for q in mw if q in d]

    def check_one(self, s: SOp, m: Mop, fl: dict[str, dict[Any, _Floor]], mw: _MwBounds,
                  contents: _Contents, guarantees: Sequence[str] | None = None
                  ) -> str | None:
        """Report the first floor read `m` violates; the guarantee reported, if any.
        `guarantees` (default: all checked) must be among those checked.

        `contents` answers membership for a list or set read (see _Seen). A floor
        violated for sure wins over one violated only by what the reader knew
        when it set the floor.
        """
        maybe: tuple[str, _Why, _Write] | None = None
        gs = self.guarantees if guarantees is None else guarantees
        floors = self._floors
        if m.kind == "l":  # the common, hot case: membership only
            pos, n = contents
            for g in gs:
                d = fl.get(g)
                if not d:
                    continue
                for f in d.values():
                    if pos.get(f[3].value, n) >= n:
                        break
                else:
                    continue  # every floor of g reflected: the usual case
                for _, (_, why, _, floor) in floors(g, fl, mw):  # the first, in order
                    if pos.get(floor.value, n) >= n:
                        self.result.add(g, f"process {s.process!r} read {m.key!r}="
                                           f"{list(m.value)!r} (op {s.index}), but "
                                           f"{_why(why)} {_describe(floor)}, which that "
                                           f"read does not reflect")
                        return g
            return None
        shown = m.value
        for g in gs:
            for _, (_, why, known, floor) in floors(g, fl, mw):
                how = self.violated(m, floor, known)
                if how == 1:
                    self.result.add(g, f"process {s.process!r} read {m.key!r}={shown!r} "
                                       f"(op {s.index}), but {_why(why)} "
                                       f"{_describe(floor)}, which that read does not reflect")
                    return g
                if how == 2 and maybe is None:
                    maybe = (g, why, floor)
        if maybe is None:
            return None
        g, why, floor = maybe
        self.result.add(g, f"process {s.process!r} read {m.key!r}={shown!r} (op {s.index}), "
                           f"but {_why(why)} {_describe(floor)} after it already knew of "
                           f"{m.key!r}={shown!r}: either that earlier read missed a newer "
                           f"version it knew of, or this read went back to an older one")
        return g

    def within_read(self, s: SOp, m: Mop, obs: list[_Write], flagged: str | None) -> None:
        """A list read showing a writer's later append without (or before) an earlier one
        (called only when scan found a writer's appends not 1..n in order)."""
        pos: dict[Any, list[int]] = defaultdict(list)
        for w in obs:
            if w.seq is not None:
                pos[w.process].append(w.seq)
        for writer, got in pos.items():
            if got[-1] == len(got) and got == list(range(1, len(got) + 1)):
                continue  # 1..n in order: the usual case
            top = max(got)
            missing = sorted(set(range(1, top + 1)) - set(got))
            if missing:
                lost = self.by_seq[(m.key, writer, missing[0])]
                shown = self.by_seq[(m.key, writer, top)].value
                # missing one's own write is read-your-writes; someone else's, monotonic-writes
                g = RYW if writer == s.process else MW
                if g == flagged:
                    continue  # this read is already reported
                self.result.add(g, f"process {s.process!r} read {m.key!r} (op {s.index}) and "
                                   f"saw process {writer!r}'s append of {shown!r} but "
                                   f"not its earlier acknowledged append {_describe(lost)}")
            elif s.ordered and got != sorted(got):
                self.result.add(MW, f"process {s.process!r} read {m.key!r}={list(m.value)!r} "
                                    f"(op {s.index}): process {writer!r}'s appends appear "
                                    f"out of the order it made them")

    def raise_floors(self, s: SOp, fl: _Floors, know: dict[Hashable, VC],
                     mw: _MwBounds,
                     obs_cache: dict[int, _Seen]) -> None:
        """Raise process s.process's floors after its op s (ok) completed.

        `mw[q]` (a _Deps) holds the newest session position of q's writes the
        reader has read and how far into q's write log (monotonic-writes) and
        read log (writes-follow-reads) that bound is applied. Bounds only grow
        and floors keep the maximum, so only log entries past those positions
        and before the new bound can raise a floor: each entry is read once per
        reader, and the cost is linear in the history rather than in history x
        keys or history x reads.
        """
        empty = _EMPTY
        p = s.process
        latest: dict[Any, _Write] = {}
        # what the reader knew of each key before this op: only register reads use it
        # (for a list read, membership decides), so list-append histories skip it
        regs = self.register_reads
        before = {m.key: dict(know.get(m.key, empty))
                  for m in s.mops if m.kind in ("r", "l")} if regs else {}
        for m in s.mops:
            if m.kind in ("w", "a"):
                w = self.writes[(m.key, m.value)]
                if w.seq is not None:
                    own = fl[m.key][RYW]
                    cur = own.get(p)
                    if cur is None or cur[0] < w.seq:
                        own[p] = (w.seq, ("own", s.index, None), empty, w)
                    if regs:
                        know[m.key][p] = max(know[m.key].get(p, 0), w.seq)
            elif m.kind in ("r", "l"):
                seen = obs_cache.get(id(m))
                if seen is None:
                    obs = self.observed(m)
                    last_any = {w.process: w for w in obs}
                    last_acked = {w.process: w for w in obs if w.seq is not None}
                else:
                    last_any, last_acked = seen.last_any, seen.last_acked
                # per writer, its last element in the read: its newest write unless the read
                # is out of order (then reported above), where a lower floor stays sound
                for q, w in last_any.items():
                    if q != p:
                        lq = latest.get(q)
                        if lq is None or lq.ordinal < w.ordinal:
                            latest[q] = w
                kb = before.get(m.key, empty)
                mr = fl[m.key][MR]
                why: _Why = ("read", s.index, None)
                for writer, w in last_acked.items():
                    seq = w.seq or 0
                    cur = mr.get(writer)
                    if cur is None or cur[0] < seq:
                        mr[writer] = (seq, why, kb, w)
                if regs:
                    kn = know[m.key]
                    for writer, w in last_acked.items():
                        seq = w.seq or 0
                        if kn.get(writer, 0) < seq:
                            kn[writer] = seq
        # floors only matter on keys the reader has yet to read: most of a writer's log
        # is about keys a short-lived reader never touches
        rk = self.read_keys.get(p, _NO_KEYS)  # its later reads, this op's included
        write_log, wfr_log = self.write_log, self.wfr_log
        for q, w in latest.items():
            o = w.ordinal
            st = mw.get(q)
            if st is None:
                st = mw[q] = _Deps(write_log.get(q), wfr_log.get(q))
            elif st.bound >= o:
                continue
            st.bound = o
            # monotonic-writes: q's own writes made before w, the last one per key (its
            # seq is the highest); the last entry per key wins in a dict
            log = st.wlog
            if log is not None:
                at = st.mw_at
                st.mw_at = end = bisect_left(log.ordinals, o, at)
                if end > at:
                    why = ("mw", s.index, w)
                    for key, x in {key: x for key, x in log.entries[at:end]
                                   if key in rk}.items():
                        d = fl[key][MW]
                        cur = d.get(q)
                        xseq = x.seq or 0  # acknowledged: never 0
                        if cur is None or cur[0] < xseq:
                            d[q] = (xseq, why, empty, x)
            # writes-follow-reads: the newest version of each key q had read before w
            log = st.rlog
            if log is None:
                continue
            at = st.wfr_at
            st.wfr_at = end = bisect_left(log.ordinals, o, at)
            if end == at:
                continue  # nothing new that q had read
            why = ("wfr", s.index, w)
            for key, r in {key: r for key, r in log.entries[at:end] if key in rk}.items():
                d = fl[key][WFR]
                cur = d.get(r.process)
                rseq = r.seq or 0
                if cur is None or cur[0] < rseq:
                    d[r.process] = (rseq, why, empty, r)


class _Log(NamedTuple):
    """A writer's session log: entries (key, write) and their session positions."""

    ordinals: list[int]
    entries: list[tuple[Hashable, _Write]]

    def add(self, ordinal: int, key: Hashable, w: _Write) -> None:
        self.ordinals.append(ordinal)
        self.entries.append((key, w))


def _new_log() -> _Log:
    return _Log([], [])


def _why(why: _Why) -> str:
    kind, index, w = why
    if kind == "own":
        return f"it had itself written (op {index})"
    if kind == "read":
        return f"it had already read (op {index})"
    assert w is not None
    did = "written" if kind == "mw" else "read"
    return f"it had read {_describe(w)} at op {index}, whose writer had already {did}"


def check_session(ops: Sequence[Op], *, model: str, guarantees: Sequence[str] = GUARANTEES,
                  initial: Any = None) -> CheckResult:
    """Check the four session guarantees (or a subset) on one history.

    `model` says how to read the ops: register / cas-register (one key),
    kv (key in the op's `key` field or value ``[k, v]``), list-append and
    rw-register (transactions), set (add / read). `initial` is the value a
    register holds before any write (Jepsen's nil).
    """
    unknown = [g for g in guarantees if g not in GUARANTEES]
    if unknown:
        from selfhood.errors import SpecError
        raise SpecError(f"unknown session guarantee(s) {unknown}; choose from {list(GUARANTEES)}")
    if model not in SESSION_MODELS:
        from selfhood.errors import SpecError
        raise SpecError(f"session guarantees cannot be checked for model {model!r}")
    return _check(ops, model, guarantees, initial)


def _check(ops: Sequence[Op], model: str, guarantees: Sequence[str], initial: Any,
           *, index: bool = True) -> CheckResult:
    """check_session on valid arguments; `index=False` reads every list in full (the
    plain path, which tests hold the indexed one to)."""
    # millions of small, acyclic, long-lived objects: the cyclic collector would
    # rescan them again and again, for nothing (see paused_gc)
    with paused_gc():
        c = _Checker(session_ops(ops, model), initial, guarantees, model_kv=model == "kv",
                     index=index)
        c.collect_writes()
        c.annotate_writes()
        c.check_reads()
    res = c.result
    res.anomalies = {g: v for g, v in res.anomalies.items() if g in guarantees or g == DUPLICATES}
    res.valid = not res.anomalies
    if res.anomalies:
        # a read of no state keeps none of the guarantees
        res.not_ = ((set(guarantees) if DUPLICATES in res.anomalies else set())
                    | (set(res.anomalies) - {DUPLICATES}) | set(IMPLIED_BY))
    res.details["session"] = {
        "reads_checked": c.reads_checked,
        "skipped_keys": sorted(map(repr, c.skipped)),
        "guarantees": list(guarantees),
    }
    return res
