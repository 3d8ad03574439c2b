"""Staleness and convergence (pure), in the spirit of probabilistically
bounded staleness (Bailis et al.).

Staleness is measured per read. A write is *missing* from a read when it was
acknowledged before the read was invoked and the read does not reflect it:

- list-append / set: its element is absent from the returned list;
- register / kv / rw-register: the read returned the initial value, or a
  version whose write completed before the missing write was even invoked
  (so the missing write is certainly newer in real time).

``k`` is how many writes are missing (k-staleness; a fresh read has k = 0)
and ``t`` how long the oldest missing one had been acknowledged when the
read began (t-staleness). Distributions (p50/p90/p99/max) go to
``details["staleness"]``. Staleness is a measurement: it makes a history
invalid (anomaly ``stale-read``) only when the caller sets a bound.

Convergence: after heal and quiescence every replica's final read of each
key must agree; differing final states are reported as
``divergent-final-reads``. When the history carries times, the convergence
time is measured from the last heal to the first final read after which
every final read agreed. Final reads, replicas, agreement and heal times are
those of `selfhood.checkers.convergence`, the one home of the measure.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from selfhood.checkers.convergence import agreement, final_reads, final_values, heal_time
from selfhood.checkers.history import Op, pair_ops
from selfhood.checkers.measures import distribution
from selfhood.checkers.session import SOp, session_ops
from selfhood.checkers.verdict import CheckResult

__all__ = ["AckedWrite", "check_convergence", "check_staleness", "missed_writes"]


@dataclass(frozen=True, slots=True)
class AckedWrite:
    """An acknowledged write (append, add or register write) and its window."""

    value: Any
    invoke: int
    complete: int
    index: int


def _writes_by_key(sops: Sequence[SOp]) -> dict[Hashable, list[AckedWrite]]:
    out: dict[Hashable, list[AckedWrite]] = defaultdict(list)
    for s in sops:
        if s.type != "ok" or s.invoke_time is None or s.complete_time is None:
            continue
        for m in s.mops:
            if m.kind in ("w", "a"):
                out[m.key].append(AckedWrite(m.value, s.invoke_time, s.complete_time, s.index))
    for ws in out.values():
        ws.sort(key=lambda w: w.complete)
    return out


def missed_writes(writes: Sequence[AckedWrite], completes: Sequence[int], at: int,
                  shown: Collection[Any]) -> list[AckedWrite]:
    """The writes a list or set read invoked at ``at`` is missing: acknowledged before it
    (``writes`` sorted by completion, ``completes`` their completion times) yet absent.

    Its k-staleness is their number, its t-staleness ``at`` minus the first one's
    completion. The one home of list staleness (the identity measures use it too).
    """
    return [w for w in writes[:bisect_left(completes, at)] if w.value not in shown]


def check_staleness(ops: Sequence[Op], *, model: str, initial: Any = None,
                    max_k: int | None = None, max_t_ns: int | None = None) -> CheckResult:
    """Measure k- and t-staleness of every ok read; flag reads beyond the bounds if given."""
    sops = session_ops(ops, model)
    writes = _writes_by_key(sops)
    completes = {k: [w.complete for w in ws] for k, ws in writes.items()}
    by_value = {k: {w.value: w for w in ws} for k, ws in writes.items()}
    ks: list[float] = []
    ts: list[float] = []
    by_node: dict[str, list[float]] = defaultdict(list)
    untimed = 0
    res = CheckResult(valid=True)
    for s in sops:
        if s.type != "ok":
            continue
        for m in s.mops:
            if m.kind not in ("r", "l"):
                continue
            if s.invoke_time is None:
                untimed += 1
                continue
            ws = writes.get(m.key, [])
            if m.kind == "l":
                missing = missed_writes(ws, completes.get(m.key, []), s.invoke_time,
                                        set(m.value))
            else:
                before = ws[:bisect_left(completes.get(m.key, []), s.invoke_time)]
                got = by_value.get(m.key, {}).get(m.value)
                is_initial = m.value == initial or (model == "kv" and m.value == "")
                if is_initial or got is None:
                    missing = list(before) if is_initial else []
                else:
                    missing = [w for w in before if w is not got and w.invoke > got.complete]
            k = len(missing)
            t = s.invoke_time - min(w.complete for w in missing) if missing else 0
            ks.append(k)
            ts.append(t)
            by_node[str(s.node if s.node is not None else s.process)].append(k)
            if (max_k is not None and k > max_k) or (max_t_ns is not None and t > max_t_ns):
                res.add("stale-read",
                        f"process {s.process!r} read {m.key!r} (op {s.index}) {k} acknowledged "
                        f"write(s) behind, the oldest acknowledged {t / 1e6:.3f} ms before the "
                        f"read began (first missing: op {missing[0].index} wrote "
                        f"{missing[0].value!r})")
    res.valid = not res.anomalies
    stale = sum(1 for k in ks if k > 0)
    res.details["staleness"] = {
        "reads": len(ks),
        "untimed_reads": untimed,
        "stale_reads": stale,
        "stale_fraction": stale / len(ks) if ks else 0.0,
        "k": distribution(ks),
        "t_ns": distribution(ts),
        "k_by_node": {n: distribution(v) for n, v in sorted(by_node.items())},
    }
    return res


def check_convergence(ops: Sequence[Op], *, model: str) -> CheckResult:
    """Every replica's last final read of each key must agree (`checkers.convergence`)."""
    heal = heal_time(ops)
    finals = final_reads(pair_ops(ops), lambda op: final_values(op, model))
    res = CheckResult(valid=True)
    if not finals:
        res.valid = "unknown"
        res.unknown_reasons.append("no final reads (f=\"final-read\") in the history")
        res.details["convergence"] = {"final_reads": 0}
        return res
    keys = agreement(finals, model)
    times: dict[str, float | None] = {}
    for a in keys:
        if a.divergent:
            res.add("divergent-final-reads", a.describe())
            times[repr(a.key)] = None
        elif a.first_read_at is not None:
            start = heal if heal is not None else a.first_read_at
            times[repr(a.key)] = (max(0, a.converged_at - start) / 1e9
                                  if a.converged_at is not None else None)
    res.valid = not res.anomalies
    if res.anomalies:
        res.not_.update({"convergence", "eventual"})
    known = [t for t in times.values() if t is not None]
    res.details["convergence"] = {
        "final_reads": len({fr.index for fr in finals}),
        "replicas": len({fr.replica for fr in finals}),
        "keys": len(keys),
        "heal_time_ns": heal,
        "convergence_time_s": max(known) if known else None,
        "convergence_time_s_by_key": times,
    }
    return res
