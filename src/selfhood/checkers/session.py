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

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from selfhood.checkers.history import Op, Pair, freeze, pair_ops, repeated
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


def _mops(model: str, inv: Op, comp: Op | None) -> tuple[list[Mop], bool]:
    """Normalise one pair's effects; reads come from the completion only."""
    done = comp if comp is not None else inv
    f = done.f or inv.f or ""
    ok = comp is not None and comp.type == "ok"
    out: list[Mop] = []
    if model in ("list-append", "rw-register"):
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
                    out.append(Mop("l", k, [freeze(x) for x in (v or [])]))
                else:
                    out.append(Mop("r", k, freeze(v)))
        return out, True
    if model == "set":
        if f == "add":
            out.append(Mop("a", None, freeze(inv.value)))
        elif f == "read" and ok and comp is not None:
            out.append(Mop("l", None, [freeze(x) for x in (comp.value or [])]))
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
_Floor = tuple[int, _Why, VC]  # (writer's seq, why, what the reader knew was older then)
_Floors = dict[Hashable, dict[str, dict[Any, _Floor]]]
class _Deps(NamedTuple):
    """What a reader owes one writer q: the ordinals of q's writes it read, each the
    first to raise the bound (monotonic-writes, see _mw_floors), the why of each,
    and how far into q's read log its writes-follow-reads floors are applied."""

    bounds: list[int]
    whys: list[_Why]
    wfr_at: list[int]  # one mutable position


_MwBounds = dict[Any, _Deps]  # writer -> what the reader owes it
_EMPTY: VC = {}


class _Seen(NamedTuple):
    """A list read, scanned once (see _Checker.scan)."""

    obs: list[_Write]
    last_any: dict[Any, _Write]
    last_acked: dict[Any, _Write]
    in_order: bool
_NONE: dict[Any, _Floor] = {}


@dataclass(slots=True)
class _Write:
    key: Hashable
    value: Any
    sop: SOp
    process: Any
    seq: int | None  # per (process, key) among acknowledged writes; None for info
    ordinal: int  # position in the writer's session
    older: VC = field(default_factory=dict)


def _describe(w: _Write) -> str:
    if w.sop.mops and any(m.kind == "a" for m in w.sop.mops):
        return f"the append of {w.value!r} to {w.key!r} (op {w.sop.index}, process {w.process!r})"
    return f"{w.key!r}={w.value!r} (op {w.sop.index}, process {w.process!r})"


class _Checker:
    def __init__(self, sops: list[SOp], initial: Any, guarantees: Sequence[str],
                 model_kv: bool = False) -> None:
        self.guarantees = tuple(g for g in GUARANTEES if g in guarantees)
        self.sops = sops
        # kv stores (Porcupine's) answer "" for a missing key, Jepsen's nil
        self.initials = (initial, "") if model_kv else (initial,)
        self.writes: dict[WriteId, _Write] = {}
        self.by_seq: dict[tuple[Hashable, Any, int], _Write] = {}
        self.skipped: set[Hashable] = set()
        self.result = CheckResult(valid=True)
        self.reads_checked = 0
        # (writer, key) -> ordinals and seqs of its acknowledged writes to the key, in
        # session order: what it had written before a write w (monotonic-writes) is the
        # last one with ordinal < w.ordinal. Per writer, (ordinal, key, (writer, seq))
        # of the newest version each of its reads saw (writes-follow-reads); what it
        # had read before w is the last entry per key with ordinal < w.ordinal.
        self.own_writes: dict[tuple[Any, Hashable], tuple[list[int], list[int]]] = {}
        self.wfr_log: dict[Any, list[tuple[int, Hashable, tuple[Any, int]]]] = \
            defaultdict(list)

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

    def scan(self, m: Mop) -> _Seen:
        """One pass over a read: the writes it shows, each writer's last one (and last
        acknowledged one), and whether each writer's appends are 1..n in order."""
        writes = self.writes
        key = m.key
        obs: list[_Write] = []
        last_any: dict[Any, _Write] = {}
        last_acked: dict[Any, _Write] = {}
        nxt: dict[Any, int] = {}
        in_order = True
        for v in m.value:
            w = writes.get((key, v))
            if w is None:
                continue
            obs.append(w)
            q = w.process
            last_any[q] = w
            seq = w.seq
            if seq is not None:
                last_acked[q] = w
                if in_order:
                    if seq != nxt.get(q, 1):
                        in_order = False
                    nxt[q] = seq + 1
        return _Seen(obs, last_any, last_acked, in_order)

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
            for m in s.mops:
                if m.kind in ("r", "l"):
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
                        self.wfr_log[p].append((ordinal, m.key,
                                                (newest.process, newest.seq or 0)))
                elif m.kind in ("w", "a"):
                    w = self.writes[(m.key, m.value)]
                    if w.seq is not None:
                        own[p][m.key] = w.seq
                        ords, seqs = self.own_writes.setdefault((p, m.key), ([], []))
                        ords.append(ordinal)
                        seqs.append(w.seq)

    # pass 2: check every read against the process's floors -------------------------
    def violated(self, m: Mop, floor: _Write, known: VC, contents: frozenset[Any]) -> int:
        """Does read `m` fail to reflect `floor`? 0 no, 1 yes, 2 yes by `known`.

        For a register, `known` adds the writes the reader itself knew of when
        it read `floor`: if that read honoured its guarantees they are older
        than `floor`. A violation found only that way (2) means that either
        that earlier read or this one broke a guarantee.
        """
        if m.kind == "r":
            if m.value in self.initials:
                return 1
            w = self.writes.get((m.key, m.value))
            if w is None or w is floor or w.seq is None:
                return 0
            if floor.older.get(w.process, 0) >= w.seq:
                return 1
            return 2 if known.get(w.process, 0) >= w.seq else 0
        return int(floor.value not in contents)

    def check_reads(self) -> None:
        # floors[p][key][guarantee][writer] = (seq, why, reader's knowledge then)
        floors: dict[Any, _Floors] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
        know: dict[Any, dict[Hashable, VC]] = defaultdict(lambda: defaultdict(dict))
        # monotonic-writes floors, kept as bounds: mw[p][q] = ordinals of q's writes that
        # p read, each the first to raise the bound, and why; p must reflect each of q's
        # own writes with an ordinal below the last bound (see _mw_floors)
        mw: dict[Any, _MwBounds] = defaultdict(dict)
        for s in self.sops:
            if s.type != "ok":
                continue
            p = s.process
            passed = []
            obs_cache: dict[int, _Seen] = {}
            for m in s.mops:
                # a set holds an element once even if added twice; a list key whose
                # values repeat is skipped (values are assumed unique)
                if m.kind == "l" and (not s.ordered or m.key not in self.skipped):
                    self.duplicates(s, m)
                # a read after the txn's own write still owes every earlier floor
                if m.kind not in ("r", "l") or m.key in self.skipped:
                    continue
                self.reads_checked += 1
                flagged = self.check_one(s, m, floors[p][m.key], mw[p])
                if flagged is None:
                    passed.append(m)
                if m.kind == "l":
                    seen = obs_cache[id(m)] = self.scan(m)
                    if not seen.in_order:
                        self.within_read(s, m, seen.obs, flagged)
            self.raise_floors(s, floors[p], know[p], mw[p], obs_cache)
            obs_cache.clear()
            # one transaction's reads are one snapshot: what it observed on one
            # key (via monotonic-writes / writes-follow-reads) binds its other reads
            for m in passed:
                self.check_one(s, m, floors[p][m.key], mw[p], (MW, WFR))

    def duplicates(self, s: SOp, m: Mop) -> None:
        """A list or set read that shows an element twice."""
        if len(frozenset(m.value)) == len(m.value):
            return  # the usual case
        twice = ", ".join(map(repr, repeated(m.value)))
        self.result.add(DUPLICATES, f"process {s.process!r} read {m.key!r}={list(m.value)!r} "
                                    f"(op {s.index}), which holds {twice} twice: no state "
                                    f"of a {'list of unique appends' if s.ordered else 'set'} "
                                    f"reads like that")

    def _floors(self, g: str, fl: dict[str, dict[Any, _Floor]], mw: _MwBounds,
                key: Hashable) -> Iterable[tuple[Any, _Floor]]:
        """The reader's floors on `key` for guarantee g: (writer, (seq, why, known))."""
        if g != MW:
            return fl.get(g, {}).items()
        return self._mw_floors(mw, key)

    def _mw_floors(self, mw: _MwBounds, key: Hashable) -> list[tuple[Any, _Floor]]:
        """Per writer q the reader has read: q's last own write to `key` below the
        bound, and the read that first raised the bound above it (its why)."""
        out = []
        own_writes = self.own_writes
        for q, (bounds, whys, _) in mw.items():
            own = own_writes.get((q, key))
            if own is None:
                continue
            ords, seqs = own
            i = bisect_left(ords, bounds[-1]) - 1
            if i >= 0:
                out.append((q, (seqs[i], whys[bisect_right(bounds, ords[i])], _EMPTY)))
        return out

    def check_one(self, s: SOp, m: Mop, fl: dict[str, dict[Any, _Floor]], mw: _MwBounds,
                  guarantees: Sequence[str] | None = None) -> str | None:
        """Report the first floor read `m` violates; the guarantee reported, if any.

        A floor violated for sure wins over one violated only by what the
        reader knew when it set the floor.
        """
        shown = m.value if m.kind == "r" else list(m.value)
        contents = frozenset(m.value) if m.kind == "l" else frozenset()
        maybe: tuple[str, _Why, _Write] | None = None
        gs = [g for g in (self.guarantees if guarantees is None else guarantees)
              if g in self.guarantees]
        if m.kind == "l":  # the common, hot case: membership only
            by_seq, key = self.by_seq, m.key
            for g in gs:
                floors = self._mw_floors(mw, key) if g == MW else fl.get(g, _NONE).items()
                for writer, (seq, why, _) in floors:
                    floor = by_seq.get((key, writer, seq))
                    if floor is not None and floor.value not in contents:
                        self.result.add(g, f"process {s.process!r} read {key!r}={shown!r} "
                                           f"(op {s.index}), but {_why(why)} "
                                           f"{_describe(floor)}, which that read does not "
                                           f"reflect")
                        return g
            return None
        for g in gs:
            for writer, (seq, why, known) in self._floors(g, fl, mw, m.key):
                floor = self.by_seq.get((m.key, writer, seq))
                if floor is None:
                    continue
                how = self.violated(m, floor, known, contents)
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

        `mw[q]` (a _Deps) holds the session positions of the writes by q whose
        deps were already applied and how far into q's read log that took us.
        Deps only grow and floors keep the maximum, so a monotonic-writes
        bound moves up by one entry, and only read-log entries past that
        position and before the new write can raise a writes-follow-reads
        floor: each entry is read once per reader, and the cost is linear in
        the history rather than in history x keys.
        """
        empty: VC = {}
        p = s.process
        latest: dict[Any, _Write] = {}
        before = {m.key: dict(know.get(m.key, empty)) for m in s.mops if m.kind in ("r", "l")}
        for m in s.mops:
            if m.kind in ("w", "a"):
                w = self.writes[(m.key, m.value)]
                if w.seq is not None:
                    own = fl[m.key][RYW]
                    cur = own.get(p)
                    if cur is None or cur[0] < w.seq:
                        own[p] = (w.seq, ("own", s.index, None), empty)
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
                kn = know[m.key]
                mr = fl[m.key][MR]
                why: _Why = ("read", s.index, None)
                for writer, w in last_acked.items():
                    seq = w.seq or 0
                    cur = mr.get(writer)
                    if cur is None or cur[0] < seq:
                        mr[writer] = (seq, why, kb)
                    if kn.get(writer, 0) < seq:
                        kn[writer] = seq
        wfr_log = self.wfr_log
        for q, w in latest.items():
            o = w.ordinal
            st = mw.get(q)
            if st is None:
                st = mw[q] = _Deps([], [], [0])
            elif st.bounds[-1] >= o:
                continue
            st.bounds.append(o)
            st.whys.append(("mw", s.index, w))
            log = wfr_log.get(q)
            at = st.wfr_at[0]
            if log is None or at >= len(log) or log[at][0] >= o:
                continue  # nothing new that q had read
            wfr_new, st.wfr_at[0] = _since(log, at, o)
            why = ("wfr", s.index, w)
            for key, (writer, wseq) in wfr_new.items():
                d = fl[key][WFR]
                cur = d.get(writer)
                if cur is None or cur[0] < wseq:
                    d[writer] = (wseq, why, empty)


_V = Any


def _since(log: list[tuple[int, Hashable, _V]], at: int, before: int
           ) -> tuple[dict[Hashable, _V], int]:
    """The last value per key among log[at:] entries with ordinal < before, and the
    position reached."""
    out: dict[Hashable, _V] = {}
    n = len(log)
    while at < n and log[at][0] < before:
        _, key, v = log[at]
        out[key] = v
        at += 1
    return out, at


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
    c = _Checker(session_ops(ops, model), initial, guarantees, model_kv=model == "kv")
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
