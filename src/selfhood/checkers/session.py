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
wrong order is monotonic-writes). Floors are not transitive (that would be
causal consistency). Reads are checked against floors only, so the checker
is sound but not complete; docs/checkers.md spells out both. Values are
assumed unique per key, as in Jepsen and Elle; keys where a value is written
twice are skipped and listed in details.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfhood.checkers.history import Op, Pair, freeze, pair_ops
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


@dataclass(slots=True)
class _Write:
    key: Hashable
    value: Any
    sop: SOp
    process: Any
    seq: int | None  # per (process, key) among acknowledged writes; None for info
    ordinal: int  # position in the writer's session
    older: VC = field(default_factory=dict)
    mw_deps: dict[Hashable, int] = field(default_factory=dict)
    wfr_deps: dict[Hashable, tuple[Any, int]] = field(default_factory=dict)


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

    def observed(self, m: Mop) -> list[_Write]:
        if m.kind == "r":
            w = self.writes.get((m.key, m.value))
            return [w] if w is not None else []
        return [w for v in m.value if (w := self.writes.get((m.key, v))) is not None]

    # pass 1: what each writer knew when it wrote ---------------------------------
    def annotate_writes(self) -> None:
        """older(w) for register writes; per write, the writer's own latest writes
        (monotonic-writes deps) and the latest version it had read of each key
        (writes-follow-reads deps). Dep maps are shared until they change."""
        own: dict[Any, dict[Hashable, int]] = defaultdict(dict)
        seen: dict[Any, dict[Hashable, VC]] = defaultdict(dict)
        last: dict[Any, dict[Hashable, tuple[Any, int]]] = defaultdict(dict)
        mw_snap: dict[Any, dict[Hashable, int]] = {}
        wfr_snap: dict[Any, dict[Hashable, tuple[Any, int]]] = {}
        for s in self.sops:
            if s.type == "fail":
                continue
            p = s.process
            if p not in mw_snap:
                mw_snap[p] = dict(own[p])
            if p not in wfr_snap:
                wfr_snap[p] = dict(last[p])
            for m in s.mops:
                if m.kind in ("w", "a"):
                    w = self.writes[(m.key, m.value)]
                    if w.sop is not s:
                        continue
                    w.mw_deps, w.wfr_deps = mw_snap[p], wfr_snap[p]
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
                        last[p][m.key] = (newest.process, newest.seq or 0)
                        wfr_snap.pop(p, None)
                elif m.kind in ("w", "a"):
                    w = self.writes[(m.key, m.value)]
                    if w.seq is not None:
                        own[p][m.key] = w.seq
                        mw_snap.pop(p, None)

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
        applied: dict[Any, dict[Any, int]] = defaultdict(dict)
        for s in self.sops:
            if s.type != "ok":
                continue
            p = s.process
            passed = []
            obs_cache: dict[int, list[_Write]] = {}
            for m in s.mops:
                # a read after the txn's own write still owes every earlier floor
                if m.kind not in ("r", "l") or m.key in self.skipped:
                    continue
                self.reads_checked += 1
                flagged = self.check_one(s, m, floors[p][m.key])
                if flagged is None:
                    passed.append(m)
                if m.kind == "l":
                    self.within_read(s, m, obs_cache.setdefault(id(m), self.observed(m)),
                                     flagged)
            self.raise_floors(s, floors[p], know[p], applied[p], obs_cache)
            obs_cache.clear()
            # one transaction's reads are one snapshot: what it observed on one
            # key (via monotonic-writes / writes-follow-reads) binds its other reads
            for m in passed:
                self.check_one(s, m, floors[p][m.key], (MW, WFR))

    def check_one(self, s: SOp, m: Mop, fl: dict[str, dict[Any, _Floor]],
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
                for writer, (seq, why, _) in fl.get(g, {}).items():
                    floor = by_seq.get((key, writer, seq))
                    if floor is not None and floor.value not in contents:
                        self.result.add(g, f"process {s.process!r} read {key!r}={shown!r} "
                                           f"(op {s.index}), but {_why(why)} "
                                           f"{_describe(floor)}, which that read does not "
                                           f"reflect")
                        return g
            return None
        for g in gs:
            for writer, (seq, why, known) in fl.get(g, {}).items():
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
        """A list read showing a writer's later append without (or before) an earlier one."""
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
                     applied: dict[Any, int], obs_cache: dict[int, list[_Write]]) -> None:
        """Raise process s.process's floors after its op s (ok) completed.

        `applied[q]` is the session position of the latest write by q whose
        deps were already applied: a writer's deps only grow, so older ones
        are skipped.
        """
        empty: VC = {}

        def bump(key: Hashable, g: str, writer: Any, seq: int, why: _Why,
                 known: VC = empty) -> None:
            cur = fl[key][g].get(writer)
            if cur is None or cur[0] < seq:
                fl[key][g][writer] = (seq, why, known)

        latest: dict[Any, _Write] = {}
        before = {m.key: dict(know.get(m.key, empty)) for m in s.mops if m.kind in ("r", "l")}
        for m in s.mops:
            if m.kind in ("w", "a"):
                w = self.writes[(m.key, m.value)]
                if w.seq is not None:
                    bump(m.key, RYW, s.process, w.seq, ("own", s.index, None))
                    know[m.key][s.process] = max(know[m.key].get(s.process, 0), w.seq)
            elif m.kind in ("r", "l"):
                obs = obs_cache.get(id(m))
                if obs is None:
                    obs = self.observed(m)
                # per writer, its last element in the read: its newest write unless the read
                # is out of order (then reported above), where a lower floor stays sound
                last_any = {w.process: w for w in obs}
                last_acked = {w.process: w for w in obs if w.seq is not None}
                for q, w in last_any.items():
                    if q != s.process and (q not in latest or latest[q].ordinal < w.ordinal):
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
        for q, w in latest.items():
            if applied.get(q, 0) >= w.ordinal:
                continue
            applied[q] = w.ordinal
            for key, seq in w.mw_deps.items():
                bump(key, MW, q, seq, ("mw", s.index, w))
            for key, (writer, seq) in w.wfr_deps.items():
                bump(key, WFR, writer, seq, ("wfr", s.index, w))


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
    res.anomalies = {g: v for g, v in res.anomalies.items() if g in guarantees}
    res.valid = not res.anomalies
    if res.anomalies:
        res.not_ = set(res.anomalies) | set(IMPLIED_BY)
    res.details["session"] = {
        "reads_checked": c.reads_checked,
        "skipped_keys": sorted(map(repr, c.skipped)),
        "guarantees": list(guarantees),
    }
    return res
