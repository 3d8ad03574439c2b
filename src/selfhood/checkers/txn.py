"""Elle-class transactional checker for list-append and rw-register histories (pure).

Pipeline, as in Elle: transactions from paired ops -> per-workload version
orders, ww/wr/rw edges and non-cycle anomalies -> process or realtime edges
when a requested model prohibits their anomalies -> SCCs -> per SCC, a cheap
witness cycle, then an exact search for each prohibited cycle class
(G0, G1c, G-single-item, G-nonadjacent-item, G2-item and their -process /
-realtime variants) -> the verdict against the requested models.

Only anomalies the requested models prohibit are reported (Elle's
"reportable" anomalies); `not_` names the weakest models the reported
anomalies rule out (Elle's `:not`); stronger ones go to details["also_not"].
A search that hits the time limit makes its class "unknown" unless some
other prohibited anomaly already made the history invalid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from selfhood.checkers.elle import models as cm
from selfhood.checkers.elle.graph import (
    DATA,
    PROCESS,
    REALTIME,
    REL_NAMES,
    RW,
    WR,
    WW,
    CycleSpec,
    DepGraph,
    SearchTimeout,
    Step,
    any_cycle,
    find_cycle,
    sccs,
)
from selfhood.checkers.elle.history import (
    Txn,
    add_process_edges,
    add_realtime_edges,
    transactions,
)
from selfhood.checkers.elle.list_append import ListAppendAnalysis
from selfhood.checkers.elle.rw_register import RwRegisterAnalysis
from selfhood.checkers.history import TXN_MODELS, Op
from selfhood.checkers.verdict import UNKNOWN, CheckResult, Validity
from selfhood.errors import SpecError

__all__ = ["WORKLOADS", "check_txn", "classify_cycle"]

WORKLOADS = TXN_MODELS
#: at most this many explanations per anomaly type (the count is in details)
MAX_EXPLANATIONS = 8
#: seconds for a search whose class an earlier SCC already showed: the verdict
#: no longer depends on it, it only adds a witness (and to the class's count)
EXTRA_WITNESS_S = 0.25


class _Analysis(Protocol):
    txns: Sequence[Txn]
    graph: DepGraph
    anomalies: dict[str, list[str]]

    def explain(self, a: int, b: int, rel: int) -> str: ...


def _specs(extra: int) -> list[CycleSpec]:
    base = [
        CycleSpec("G0", WW, WW),
        CycleSpec("G1c", WR, WW | WR),
        CycleSpec("G-single-item", RW, WW | WR),
        CycleSpec("G-nonadjacent-item", RW, WW | WR | RW, "nonadjacent"),
        CycleSpec("G2-item", RW, WW | WR | RW, "adjacent"),
    ]
    out = list(base)
    if extra:
        suffix = "-realtime" if extra == REALTIME else "-process"
        out += [CycleSpec(s.name + suffix, s.anchor, s.path_rels | extra, s.kind, extra)
                for s in base]
    return out


def classify_cycle(steps: Sequence[Step]) -> str:
    """Elle's name for a cycle from the relations on its edges."""
    rels = [r for _, _, r in steps]
    rw = rels.count(RW)
    adjacent = any(rels[i] == RW and rels[i - 1] == RW for i in range(len(rels)))
    if rw == 1:
        base = "G-single-item"
    elif rw > 1:
        base = "G2-item" if adjacent else "G-nonadjacent-item"
    elif WR in rels:
        base = "G1c"
    elif WW in rels:
        base = "G0"
    else:  # pragma: no cover - order edges alone are acyclic
        raise ValueError("a cycle without data dependencies")
    if REALTIME in rels:
        return base + "-realtime"
    if PROCESS in rels:
        return base + "-process"
    return base


def _render(analysis: _Analysis, name: str, steps: Sequence[Step]) -> tuple[str, list[Any]]:
    txns = analysis.txns
    chain = txns[steps[0][0]].name() + "".join(
        f" -{REL_NAMES[r]}-> {txns[b].name()}" for _, b, r in steps)
    reasons = [analysis.explain(a, b, r) for a, b, r in steps]
    text = f"{name} cycle {chain}: " + "; ".join(reasons)
    detail = [{"from": txns[a].index, "to": txns[b].index, "rel": REL_NAMES[r], "why": why}
              for (a, b, r), why in zip(steps, reasons, strict=True)]
    return text, detail


def check_txn(
    ops: Sequence[Op],
    *,
    workload: str,
    consistency: Sequence[str] = ("strict-serializable",),
    time_limit_s: float | None = None,
    wfr_keys: bool = False,
    sequential_keys: bool = False,
    linearizable_keys: bool = False,
    search_timeout_s: float | None = 10.0,
) -> CheckResult:
    """Check a list-append or rw-register history against consistency models.

    The rw-register version-order hints (`wfr_keys`, `sequential_keys`,
    `linearizable_keys`) are opt-in assumptions, as in Elle; list-append needs
    none. `time_limit_s` bounds the whole check; `search_timeout_s` caps each
    exact cycle search even without it (like Elle's per-SCC cycle-search
    timeout), so an adversarial SCC cannot hang the check. Raises SpecError
    for an unknown workload/model and HistoryError for malformed transactions.
    """
    t0 = time.monotonic()
    deadline = None if time_limit_s is None else t0 + time_limit_s
    if workload not in WORKLOADS:
        raise SpecError(f"unknown transactional workload {workload!r}; "
                        f"use one of {', '.join(WORKLOADS)}")
    if isinstance(consistency, str):
        consistency = [consistency]
    models = [cm.canonical_model(m) for m in consistency] or ["strict-serializable"]
    prohibited = cm.prohibited_anomalies(models)

    def out_of_time(step: str) -> CheckResult | None:
        # the limit covers building the graph too, checked between its steps
        if deadline is None or time.monotonic() <= deadline:
            return None
        return CheckResult(valid=UNKNOWN, unknown_reasons=[
            f"the time limit of {time_limit_s} s ran out while {step}"],
            details={"workload": workload, "consistency": models,
                     "elapsed_s": time.monotonic() - t0})

    txns = transactions(ops)
    if late := out_of_time("pairing the transactions"):
        return late
    analysis: _Analysis
    if workload == "list-append":
        analysis = ListAppendAnalysis(txns)
    else:
        analysis = RwRegisterAnalysis(txns, wfr_keys=wfr_keys, sequential_keys=sequential_keys,
                                      linearizable_keys=linearizable_keys)
    if late := out_of_time("inferring version orders and dependencies"):
        return late
    g = analysis.graph
    extra = 0
    if any(a.endswith("-realtime") for a in prohibited):
        extra = REALTIME
        add_realtime_edges(g, txns)
    elif any(a.endswith("-process") for a in prohibited):
        extra = PROCESS
        add_process_edges(g, txns)
    if late := out_of_time("adding the process / real-time order"):
        return late

    found: dict[str, list[str]] = {}
    cycles: dict[str, list[Any]] = {}
    unknown: list[str] = []
    unknown_types: set[str] = set()
    cut_short = 0

    def record(name: str, steps: Sequence[Step]) -> None:
        text, detail = _render(analysis, name, steps)
        found.setdefault(name, []).append(text)
        cycles.setdefault(name, []).append(detail)

    specs = [s for s in _specs(extra) if s.name in prohibited]
    components = sorted(sccs(g, DATA | extra), key=len)
    searches_left = len(components) * len(specs)
    for comp in components:
        members = set(comp)
        witness = any_cycle(g, members, DATA | extra)
        kind = classify_cycle(witness)
        have = {kind}
        record(kind, witness)
        for spec in specs:
            searches_left -= 1
            if spec.name in have:
                continue
            now = time.monotonic()
            sub = None if search_timeout_s is None else now + search_timeout_s
            if deadline is not None:
                share = now + max(0.0, deadline - now) / (searches_left + 1)
                sub = share if sub is None else min(sub, share)
            again = spec.name in found
            if again:
                sub = now + EXTRA_WITNESS_S if sub is None else min(sub, now + EXTRA_WITNESS_S)
            try:
                steps = find_cycle(g, members, spec, sub)
            except SearchTimeout:
                if again:  # the class is already shown; this only cost a witness
                    cut_short += 1
                    continue
                unknown.append(f"search for {spec.name} in a strongly connected component of "
                               f"{len(comp)} transactions hit the time limit")
                unknown_types.add(spec.name)
                continue
            if steps is not None:
                name = classify_cycle(steps)
                have.add(name)
                record(name, steps)

    all_found = {**analysis.anomalies, **found}
    reported = {k: v for k, v in all_found.items() if k in prohibited}
    result = CheckResult(valid=True)
    for name, texts in sorted(reported.items()):
        result.anomalies[name] = texts[:MAX_EXPLANATIONS]
    committed = [t.type for t in txns].count("ok")
    valid: Validity = True
    if reported:
        valid = False
    elif unknown_types:
        valid = UNKNOWN
    elif committed == 0:
        valid = UNKNOWN
        unknown.append("the history has no committed transactions")
    result.valid = valid
    result.unknown_reasons = unknown
    impossible = cm.impossible_models(reported)
    result.not_ = set(cm.weakest_models(impossible))
    result.details = {
        "workload": workload,
        "consistency": models,
        "also_not": sorted(impossible - result.not_),
        "anomaly_counts": {k: len(v) for k, v in sorted(reported.items())},
        "unreported_anomaly_types": sorted(set(all_found) - set(reported)),
        "cycles": {k: v[:MAX_EXPLANATIONS] for k, v in cycles.items() if k in prohibited},
        "txns": len(txns),
        "committed": committed,
        "edges": g.edge_count(),
        "sccs": [len(c) for c in components],
        "witness_searches_cut_short": cut_short,
        "elapsed_s": time.monotonic() - t0,
    }
    return result
