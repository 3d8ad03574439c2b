"""Hypothesis strategies for fault schedules (pure): what `selfhood hunt` draws and shrinks.

Public through `selfhood.strategies`; here, beside the nemesis that turns a
window into nemesis ops, so the chaos harness never imports the public
strategies module (subpackages form a DAG).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from selfhood.chaos.nemesis import windows_schedule
from selfhood.spec import FAULTS, ExperimentSpec, NemesisOp

#: one fault window: (start_ms, duration_ms, fault, choice); `choice` seeds its target
Window = tuple[int, int, str, int]


def fault_windows(faults: Sequence[str] = ("partition", "crash"), *, load_ms: int = 1000,
                  max_windows: int = 6) -> st.SearchStrategy[list[Window]]:
    """Lists of fault windows inside `load_ms` (what `selfhood hunt` draws and shrinks)."""
    if not faults:
        raise ValueError("fault_windows needs at least one fault")
    bad = [f for f in faults if f not in FAULTS]
    if bad:
        raise ValueError(f"unknown fault {bad[0]!r}; expected one of {', '.join(FAULTS)}")
    window = st.tuples(st.integers(0, max(0, load_ms - 1)), st.integers(50, 2000),
                       st.sampled_from(list(faults)), st.integers(0, 1000))
    return st.lists(window, max_size=max_windows)


def fault_schedules(spec: ExperimentSpec, *, faults: Sequence[str] | None = None,
                    max_windows: int = 6) -> st.SearchStrategy[tuple[NemesisOp, ...]]:
    """Explicit nemesis schedules for `spec` (pass one as `schedule=` to run it).

    Faults default to the spec's `nemesis`; every fault window is healed,
    so the schedule shrinks to fewer and shorter faults.
    """
    chosen = tuple(faults if faults is not None else spec.nemesis) or ("partition",)
    load_ms = max(1, int(spec.time_limit_s * 1000))
    return fault_windows(chosen, load_ms=load_ms, max_windows=max_windows).map(
        lambda ws: windows_schedule(ws, spec))
