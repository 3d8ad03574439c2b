"""`selfhood hunt`: search seeds and fault schedules for a property violation.

Hypothesis draws a seed and a list of fault windows (start, duration, fault,
choice) from `selfhood.chaos.schedules.fault_windows` (public as
`selfhood.strategies.fault_windows`); the window list becomes an explicit
spec `schedule`, so whatever hypothesis shrinks it to is exactly what
`selfhood run --spec` replays. The simulator is deterministic, which is what makes shrinking sound.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from selfhood.chaos.nemesis import windows_schedule
from selfhood.chaos.runner import plan_checks, run_check, simulate_mode, split_history
from selfhood.checkers.identity import check_identity
from selfhood.checkers.verdict import combine_validity
from selfhood.errors import SpecError
from selfhood.spec import MODES, ExperimentSpec

#: property phrase -> what it checks
CLAUSES: Final = {
    "never forks": "forks",
    "never forgets": "forgotten_acks",
    "never revives rules": "revived_rules",
    "never tears memory": "torn_memory",
    "converges": "converged",
    "stays valid": "valid",
}


@dataclass(frozen=True, slots=True)
class Property:
    """'<mode> <clause>', e.g. 'sequential never forks'."""

    mode: str
    clause: str
    text: str


def parse_property(text: str) -> Property:
    m = re.fullmatch(r"\s*(\S+)\s+(.+?)\s*", text)
    if m is None or m.group(1) not in MODES or m.group(2) not in CLAUSES:
        raise SpecError(
            f"option --property: {text!r} is not '<mode> <clause>' with mode in "
            f"{', '.join(MODES)} and clause in {', '.join(repr(c) for c in CLAUSES)}")
    return Property(m.group(1), m.group(2), text.strip())


def violation(prop: Property, spec: ExperimentSpec,
              check_time_limit_s: float = 10.0) -> str | None:
    """Run `spec` in the property's mode; a description of the violation, or None."""
    sim = simulate_mode(spec, prop.mode)
    what = CLAUSES[prop.clause]
    if what == "valid":
        hs = split_history(sim.history)
        vals = []
        for c in plan_checks(prop.mode, hs):
            if c.purpose != "promise":
                continue
            run_check(c, hs[c.file], check_time_limit_s)
            assert c.result is not None
            vals.append(c.result.valid)
            if c.result.valid is False:
                return f"{c.file} violates {c.consistency}: {', '.join(c.result.anomaly_types)}"
        return None if combine_validity(vals) is not False else "invalid"
    ident = check_identity(sim.history, instances=spec.instance_names,
                           replicas=spec.replica_names)
    if what == "converged":
        return None if ident.converged else "replicas did not converge"
    n = getattr(ident, what)
    if n:
        example = (ident.cases.get(what) or [{}])[0]
        text = f"{n} {what.replace('_', ' ')}; first: {example}"
        return text if len(text) <= 300 else text[:297] + "..."
    return None


@dataclass(slots=True)
class HuntResult:
    spec: ExperimentSpec | None
    examples: int
    elapsed_s: float
    detail: str = ""


def hunt_spec(base: ExperimentSpec, prop: Property, seed: int,
              windows: Sequence[tuple[int, int, str, int]]) -> ExperimentSpec:
    """The replayable spec for one drawn example."""
    single = msgspec.structs.replace(base, modes=(prop.mode,), seed=seed, name="hunt")
    return msgspec.structs.replace(single, schedule=windows_schedule(windows, single))


def hunt(prop: Property, base: ExperimentSpec, *, faults: Sequence[str], max_examples: int,
         time_limit_s: float, progress: Callable[[str], None] | None = None) -> HuntResult:
    """Find a (shrunk) spec violating `prop`, within the example and time budgets."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import NoSuchExample

    from selfhood.chaos.schedules import fault_windows

    if not faults:
        raise SpecError("option --faults: at least one fault is needed")
    load_ms = max(1, int(base.time_limit_s * 1000))
    example = st.tuples(st.integers(0, 2**16), fault_windows(faults, load_ms=load_ms))
    started = time.monotonic()
    count = 0
    last: dict[str, Any] = {}

    def violates(ex: tuple[int, list[tuple[int, int, str, int]]]) -> bool:
        nonlocal count
        if time.monotonic() - started > time_limit_s:
            return False
        count += 1
        spec = hunt_spec(base, prop, ex[0], ex[1])
        found = violation(prop, spec)
        if found is not None:
            last["detail"] = found
            if progress is not None:
                progress(f"run {count}: violated with {len(spec.schedule or ())} nemesis ops")
        elif progress is not None and count % 10 == 0:
            progress(f"run {count}: holds ({time.monotonic() - started:.0f} s)")
        return found is not None

    cfg = settings(max_examples=max_examples, deadline=None, database=None,
                   phases=[Phase.generate, Phase.shrink],
                   suppress_health_check=list(HealthCheck))
    try:
        best = find(example, violates, settings=cfg)
    except NoSuchExample:
        return HuntResult(None, count, time.monotonic() - started)
    spec = hunt_spec(base, prop, best[0], best[1])
    detail = violation(prop, spec) or last.get("detail", "")
    return HuntResult(spec, count, time.monotonic() - started, detail)
