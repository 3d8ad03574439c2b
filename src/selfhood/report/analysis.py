"""What a report shows, derived from a stored run (pure).

Everything here is a function of the stored histories and results: op
latencies over time, availability per time bucket, staleness per read, the
fault windows, the identity panel (final fingerprints, the same-instance
verdict, the first fork's two transcripts) and the anomalies with the
checker's own explanations, cycles and stuck linearizations. Checkers are
re-run on the stored derived histories where the results keep only counts;
they are deterministic, so the report shows what `selfhood check` shows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from selfhood.checkers.history import Op, pair_ops
from selfhood.consistency.keys import is_transcript_key

#: nemesis ops that end a fault window, and the fault each one ends
HEALS: Final = {"heal": ("partition",), "restart": ("crash",), "resume": ("pause",),
                "unskew": ("skew",)}
#: the fault kinds a study groups by (partition patterns are partitions)
FAULT_OF: Final = {"partition": "partition", "crash": "crash", "pause": "pause",
                   "skew": "skew", "rebalance": "rebalance"}
NS: Final = 1e9


@dataclass(frozen=True, slots=True)
class OpPoint:
    """One client op: when it started, how long it took, how it ended."""

    t_s: float
    latency_ms: float
    type: str  # ok | fail | info (info also for an op that never completed)
    f: str
    node: str | None


@dataclass(frozen=True, slots=True)
class FaultWindow:
    start_s: float
    end_s: float | None  # None: instantaneous (rebalance) or never healed
    f: str
    label: str


def _t(op: Op | None, default: int = 0) -> int:
    return default if op is None or op.time is None else op.time


def op_points(history: Sequence[Op]) -> list[OpPoint]:
    """Client ops (final reads excluded) with latency; an unfinished op runs to the end."""
    end = max((_t(o) for o in history), default=0)
    out = []
    for p in pair_ops(history):
        inv = p.invoke
        if inv.process == "nemesis" or inv.f == "final-read" or inv.type != "invoke":
            continue
        c = p.completion
        kind = "info" if c is None else c.type
        done = end if c is None else _t(c, end)
        out.append(OpPoint(_t(inv) / NS, max(0.0, (done - _t(inv)) / 1e6), kind, inv.f or "?",
                           inv.node))
    return out


def availability_buckets(points: Sequence[OpPoint], span_s: float,
                         n: int = 40) -> list[tuple[float, float, int]]:
    """(bucket start s, share ok, ops) per time bucket of the load (empty buckets skipped)."""
    if not points:
        return []
    width = max(span_s / n, 0.05)
    total: dict[int, int] = defaultdict(int)
    ok: dict[int, int] = defaultdict(int)
    for p in points:
        b = int(p.t_s / width)
        total[b] += 1
        ok[b] += p.type == "ok"
    return [(b * width, ok[b] / total[b], total[b]) for b in sorted(total)]


def _fault_label(f: str, value: Any) -> str:
    if f == "partition" and isinstance(value, dict):
        groups = value.get("groups")
        pattern = value.get("pattern", "")
        if isinstance(groups, list):
            return f"partition {pattern} " + " | ".join(
                ",".join(str(n) for n in g) for g in groups if isinstance(g, list))
    if f == "skew" and isinstance(value, dict):
        return "skew " + ", ".join(f"{k} {v:+}ms" if isinstance(v, int) else f"{k} {v}"
                                   for k, v in value.items())
    return f if value is None else f"{f} {value}"


def fault_windows(history: Sequence[Op], spec: dict[str, Any]) -> list[FaultWindow]:
    """Fault windows from the history's nemesis ops (the schedule if the history has none).

    A fault opens a window; the first later heal of its kind (and, for crash
    and pause, of its node) closes it. A rebalance is an instant.
    """
    events: list[tuple[float, str, Any]] = []
    seen: set[tuple[int, str, str]] = set()
    for op in history:
        if op.process != "nemesis" or op.f is None:
            continue
        key = (_t(op), op.f, repr(op.value if op.f != "partition" else None))
        if key in seen:  # invoke and completion of one nemesis op
            continue
        seen.add(key)
        events.append((_t(op) / NS, op.f, op.value))
    if not events:
        for s in spec.get("schedule") or []:
            if isinstance(s, dict) and isinstance(s.get("at_ms"), (int, float)):
                events.append((s["at_ms"] / 1000, str(s.get("f")), s.get("value")))
    out: list[FaultWindow] = []
    open_: list[tuple[float, str, Any]] = []
    for t, f, value in sorted(events, key=lambda e: e[0]):
        if f in HEALS:
            still = []
            for st, sf, sv in open_:
                if sf in HEALS[f] and (f in ("heal", "unskew") or str(sv) == str(value)):
                    out.append(FaultWindow(st, t, sf, _fault_label(sf, sv)))
                else:
                    still.append((st, sf, sv))
            open_ = still
        elif f == "rebalance":
            out.append(FaultWindow(t, None, f, "rebalance"))
        else:
            open_.append((t, f, value))
    out += [FaultWindow(st, None, sf, _fault_label(sf, sv) + " (never healed)")
            for st, sf, sv in open_]
    return sorted(out, key=lambda w: w.start_s)


# --- identity -------------------------------------------------------------------------


IDENTITY_KINDS: Final = (("forks", "reordered reads (forks)"),
                         ("forgotten_acks", "forgotten acknowledged turns"),
                         ("revived_rules", "revived revoked rules"),
                         ("torn_memory", "torn memory reads"))


@dataclass(slots=True)
class Transcript:
    index: int
    process: Any
    node: str | None
    t_s: float
    turns: list[Any]


@dataclass(slots=True)
class IdentityPanel:
    """What the report says about "is it still the same instance?" for one mode."""

    same: bool
    verdict: str  # "same instance: yes" / "same instance: no: ..."
    fingerprints: dict[str, dict[str, str]]  # instance -> replica -> fingerprint
    replicas: list[str]
    agree: dict[str, bool]
    first_fork: tuple[Transcript, Transcript, int] | None = None  # (read, later, diverge_at)
    cases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    expected: str | None = None


def _transcript_of(op: Op) -> list[Any] | None:
    if op.f == "final-read" and isinstance(op.value, dict):
        t = op.value.get("transcript")
        return list(t) if isinstance(t, list) else None
    if isinstance(op.value, list):
        for m in op.value:
            if (isinstance(m, list) and len(m) == 3 and m[0] == "r"
                    and is_transcript_key(m[1]) and isinstance(m[2], list)):
                return list(m[2])
    return None


def _case_where(case: dict[str, Any], by_index: dict[int, Op]) -> str:
    idx = case.get("index", case.get("read_index"))
    op = by_index.get(idx) if isinstance(idx, int) else None
    node = case.get("node", case.get("read_node"))
    parts = [f"first at {case.get('instance', '?')}"]
    if op is not None and op.time is not None:
        parts.append(f"t={op.time / NS:.2f} s")
    if node is not None:
        parts.append(f"replica {node}")
    return ", ".join(parts)


def identity_panel(history: Sequence[Op], spec: dict[str, Any],
                   expected: str | None = None) -> IdentityPanel:
    """Final fingerprints per replica, the one-line verdict and the first fork, for one mode."""
    from selfhood.checkers.identity import check_identity

    insts = spec.get("instances")
    replicas = spec.get("replicas")
    inst_names = [f"i{n}" for n in range(insts)] if isinstance(insts, int) else None
    rep_names = [f"r{n}" for n in range(replicas)] if isinstance(replicas, int) else None
    ident = check_identity(list(history), instances=inst_names, replicas=rep_names)
    by_index = {op.index: op for op in history}
    fps = {i: dict(info.get("fingerprints", {})) for i, info in ident.per_instance.items()}
    reps = sorted({r for f in fps.values() for r in f} | set(rep_names or []))
    counts = {k: getattr(ident, k) for k, _ in IDENTITY_KINDS}
    problems = []
    for k, label in IDENTITY_KINDS:
        if counts[k]:
            first = (ident.cases.get(k) or [{}])[0]
            problems.append(f"{counts[k]} {label}, {_case_where(first, by_index)}")
    disagree = [i for i, info in ident.per_instance.items() if not info.get("agree")]
    if disagree:
        problems.append(f"replicas end with different fingerprints for {', '.join(disagree)}")
    same = not problems
    verdict = "same instance: yes" if same else "same instance: no: " + "; ".join(problems)
    panel = IdentityPanel(same, verdict, fps, reps,
                          {i: bool(info.get("agree")) for i, info in ident.per_instance.items()},
                          cases=ident.cases, counts=counts, expected=expected)
    forks = ident.cases.get("forks") or []
    if forks:
        f0 = forks[0]
        a, b = by_index.get(f0.get("index", -1)), by_index.get(f0.get("later_index", -1))
        ta = _transcript_of(a) if a is not None else None
        tb = _transcript_of(b) if b is not None else None
        if a is not None and b is not None and ta is not None and tb is not None:
            panel.first_fork = (Transcript(a.index, a.process, a.node, _t(a) / NS, ta),
                                Transcript(b.index, b.process, b.node, _t(b) / NS, tb),
                                int(f0.get("diverge_at", 0)))
    return panel


def expected_failure(mode: str, spec: dict[str, Any]) -> str | None:
    """Why a failure of this mode is the deployment, not a bug (None: it would be a bug)."""
    if mode in ("sequential", "linearizable") and spec.get("sharded_memory") \
            and not spec.get("atomic_memory"):
        return ("expected: sharded memory without atomic writes lets a turn and its memory "
                "write land separately — this is the deployment under test, not a bug")
    return None


# --- anomalies --------------------------------------------------------------------------


@dataclass(slots=True)
class TxnLabel:
    index: int
    process: Any
    node: str | None
    t_s: float | None
    text: str


@dataclass(slots=True)
class Cycle:
    name: str
    steps: list[dict[str, Any]]  # {from, to, rel, why}
    labels: dict[int, TxnLabel]


@dataclass(slots=True)
class Stuck:
    """Porcupine's longest partial linearization of one key."""

    key: str
    consistency: str
    linearized: int
    total: int
    text: str
    ops: list[dict[str, Any]]  # {index, process, start_s, end_s, desc, order (or None), pending}
    states: list[str]


@dataclass(slots=True)
class CheckView:
    """One failing check of a mode, explained."""

    file: str
    model: str
    consistency: str
    purpose: str
    command: str
    valid: Any
    anomalies: dict[str, list[str]] = field(default_factory=dict)
    cycles: list[Cycle] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    note: str | None = None


def _label(op: Op | None, index: int) -> TxnLabel:
    if op is None:
        return TxnLabel(index, None, None, None, f"T{index}")
    t = None if op.time is None else op.time / NS
    when = "" if t is None else f" t={t:.3f}s"
    return TxnLabel(index, op.process, op.node,
                    t, f"T{index} p{op.process} {op.node or '?'}{when}")


def _describe(op: Op) -> str:
    v = op.value
    if isinstance(v, list) and len(v) == 2 and op.f in ("read", "write"):
        return f"{op.f} {v[1]!r}"
    return f"{op.f} {v!r}"


def _stuck_view(ops: Sequence[Op], key: str, consistency: str, detail: dict[str, Any],
                text: str) -> Stuck:
    pairs = [p for p in pair_ops(ops) if p.invoke.process != "nemesis"]
    order = {idx: n for n, idx in enumerate(detail.get("prefix") or [])}
    pending = {p.get("op") for p in detail.get("pending") or []}
    end = max((_t(o) for o in ops), default=0)
    rows = []
    for p in pairs:
        inv, c = p.invoke, p.completion
        if not (isinstance(inv.value, list) and inv.value and inv.value[0] == key):
            continue
        idx = inv.index
        n = order.get(idx, order.get(c.index if c is not None else -1))
        shown = c if c is not None and c.type == "ok" else inv
        rows.append({"index": idx, "process": inv.process, "start_s": _t(inv) / NS,
                     "end_s": (_t(c, end) if c is not None else end) / NS,
                     "desc": _describe(shown) + ("" if c is None or c.type == "ok"
                                                 else f" ({c.type})"),
                     "order": n,
                     "pending": idx in pending or (c is not None and c.index in pending)})
    return Stuck(key, consistency, int(detail.get("linearized", 0)), int(detail.get("of", 0)),
                 text, rows, [str(s) for s in detail.get("states") or []])


def _register_keys(ops: Sequence[Op]) -> list[str]:
    keys = {op.value[0] for op in ops if isinstance(op.value, list) and len(op.value) == 2
            and isinstance(op.value[0], str)}
    return sorted(keys)


MAX_CYCLES_DRAWN: Final = 4
MAX_STUCK_KEYS: Final = 6


def explain_check(check: dict[str, Any], ops: Sequence[Op] | None,
                  time_limit_s: float = 10.0) -> CheckView:
    """Re-run one failing check on its stored history to show why it failed."""
    from selfhood.checkers.api import check_history
    from selfhood.errors import SelfhoodError

    view = CheckView(check["file"], str(check.get("model")), str(check.get("consistency")),
                     str(check.get("purpose")), check["command"], check.get("valid"))
    if ops is None:
        view.note = f"{check['file']} is missing from the run directory; counts only"
        return view
    try:
        res = check_history(ops, model=view.model, consistency=[view.consistency],
                            time_limit_s=time_limit_s)
    except SelfhoodError as exc:
        view.note = f"re-checking failed: {exc}"
        return view
    view.anomalies = {k: list(v) for k, v in res.anomalies.items()}
    view.unknown = list(res.unknown_reasons)
    by_index = {op.index: op for op in ops}
    for name, cycles in ((res.details.get("elle") or {}).get("cycles") or {}).items():
        for steps in cycles[:MAX_CYCLES_DRAWN]:
            idxs = [s["from"] for s in steps]
            view.cycles.append(Cycle(name, list(steps),
                                     {i: _label(by_index.get(i), i) for i in idxs}))
    if view.model in ("register", "cas-register") and view.consistency in (
            "linearizable", "sequential") and res.valid is False:
        # Porcupine draws the longest partial linearization of every failing key
        for key in _register_keys(ops)[:200]:
            kops = [o for o in ops if o.process == "nemesis" or (
                isinstance(o.value, list) and len(o.value) == 2 and o.value[0] == key)]
            kres = check_history(kops, model=view.model, consistency=[view.consistency],
                                 time_limit_s=time_limit_s / 4)
            d = kres.details.get(view.consistency) or {}
            stuck = d.get("stuck") if isinstance(d, dict) else None
            if kres.valid is False and isinstance(stuck, dict):
                text = next(iter(kres.anomalies.values()), [""])[0]
                view.stuck.append(_stuck_view(kops, key, view.consistency, stuck, text))
            if len(view.stuck) >= MAX_STUCK_KEYS:
                break
    return view
