"""Hypothesis strategies for property suites: specs, fault schedules, histories, events.

The one public strategies module (as Hypothesis keeps its own): everything a
user's property test draws from is here and in `__all__`. Pure: drawing
never runs anything.

    from hypothesis import given
    from selfhood import make_spec, run_experiment
    from selfhood.strategies import fault_schedules
    from selfhood.testing import assert_same_instance

    BASE = make_spec(modes=("sequential",), time_limit_s=1.0)

    @given(fault_schedules(BASE, faults=("crash", "partition")))
    def test_sequential_survives(schedule):
        assert_same_instance(run_experiment(BASE, schedule=schedule), "sequential")

The schedule strategies live beside the nemesis (`selfhood.chaos.schedules`,
which `selfhood hunt` draws from) and are re-exported here. Values come from
small alphabets on purpose (few keys, values, rules), so
collisions that make properties bite are common.
"""

from __future__ import annotations

from typing import Any, Final

from hypothesis import strategies as st

from selfhood.chaos.schedules import fault_schedules, fault_windows
from selfhood.checkers.history import TXN_MODELS, Op
from selfhood.projections.strategies import event_lists, events
from selfhood.spec import FAULTS, MODES, ExperimentSpec, spec_from_mapping, to_dict

__all__ = [
    "HISTORY_MODELS",
    "event_lists",
    "events",
    "fault_schedules",
    "fault_windows",
    "histories",
    "specs",
]

#: the models `histories` draws for
HISTORY_MODELS: Final = ("register", "cas-register", "kv", "set", "list-append", "rw-register")
#: faults the simulator runs (broker-kill needs the cluster runtime)
SIM_FAULTS: Final = tuple(f for f in FAULTS if f != "broker-kill")


@st.composite
def _specs(draw: st.DrawFn, fixed: dict[str, Any]) -> ExperimentSpec:
    data: dict[str, Any] = {
        "seed": draw(st.integers(0, 2**16)),
        "modes": draw(st.lists(st.sampled_from(MODES), min_size=1, max_size=2, unique=True)),
        "time_limit_s": draw(st.sampled_from((0.5, 1.0, 1.5))),
        "replicas": draw(st.integers(2, 4)),
        "instances": draw(st.integers(1, 3)),
        "concurrency": draw(st.integers(2, 6)),
        "nemesis": draw(st.lists(st.sampled_from(SIM_FAULTS), max_size=2, unique=True)),
        "quiesce_ms": 500,
    }
    data.update(fixed)
    base = to_dict(ExperimentSpec())
    base.update(data)
    return spec_from_mapping(base, source="specs()")


def specs(**fixed: Any) -> st.SearchStrategy[ExperimentSpec]:
    """Small, quick, valid simulator specs; `fixed` pins any spec field.

    >>> spec = specs(modes=["sequential"]).example()  # doctest: +SKIP
    """
    return _specs({k: list(v) if isinstance(v, tuple) else v for k, v in fixed.items()})


_UPDATES: Final = {"register": ("write",), "cas-register": ("write", "cas"), "set": ("add",),
                   "kv": ("put", "append", "append")}
#: what a key holds before any update (a kv store answers "" for a missing key, as Porcupine's)
_EMPTY: Final[dict[str, Any]] = {"set": frozenset(), "kv": ""}


@st.composite
def _single(draw: st.DrawFn, model: str) -> list[Op]:
    """Clients on a real two-key store; each op takes effect once inside its window, or
    the client crashes (info) before or after the effect and never returns."""
    store: dict[str, Any] = dict.fromkeys("ab", _EMPTY.get(model))
    read = "get" if model == "kv" else "read"
    ops: list[Op] = []
    open_: dict[int, tuple[str, str, Any, str]] = {}  # process -> (f, key, value, outcome)
    alive = list(range(draw(st.integers(1, 4))))
    n_ops, started, fresh = draw(st.integers(1, 20)), 0, 0

    def emit(p: int, typ: Any, f: str, k: str, v: Any) -> None:
        if model in _EMPTY:
            ops.append(Op(len(ops), typ, p, f, v, extra={"key": k}))
        else:
            ops.append(Op(len(ops), typ, p, f, [k, v]))

    while alive and (started < n_ops or open_):
        p = draw(st.sampled_from(alive))
        if p not in open_:
            if started >= n_ops:
                continue
            f, k = draw(st.sampled_from((read, *_UPDATES[model]))), draw(st.sampled_from("ab"))
            fresh += 1
            v: Any = {read: None, "write": draw(st.integers(0, 3)), "add": fresh,
                      "put": f"x{fresh} ", "append": f"x{fresh} ",
                      "cas": [draw(st.integers(0, 3)), draw(st.integers(0, 3))]}[f]
            emit(p, "invoke", f, k, v)
            open_[p] = (f, k, v, "")
            started += 1
            continue
        f, k, v, outcome = open_[p]
        if not outcome:  # the op takes effect now, or the client crashes first
            if draw(st.integers(0, 9)) == 0:
                del open_[p]
                emit(p, "info", f, k, v)
                alive.remove(p)
                continue
            outcome, cur = "ok", store[k]
            if f == read:
                v = sorted(cur) if model == "set" else cur
            elif f in ("write", "put"):
                store[k] = v
            elif f == "append":
                store[k] = cur + v
            elif f == "add":
                store[k] = cur | {v}
            elif cur == v[0]:
                store[k] = v[1]
            else:
                outcome = "fail"
            open_[p] = (f, k, v, outcome)
            continue
        del open_[p]
        if draw(st.integers(0, 9)) == 0:  # crashed after the effect
            emit(p, "info", f, k, v)
            alive.remove(p)
        else:
            emit(p, outcome, f, k, v)
    return ops


@st.composite
def _txns(draw: st.DrawFn, model: str) -> list[Op]:
    """Clients running transactions that apply atomically at completion, or crash."""
    store: dict[str, Any] = {}
    ops: list[Op] = []
    open_: dict[int, list[list[Any]]] = {}
    n_proc, n_txn = draw(st.integers(1, 4)), draw(st.integers(1, 15))
    started, counter, crashed = 0, 0, set()
    while started < n_txn or open_:
        p = draw(st.integers(0, n_proc - 1))
        if p in crashed:
            continue
        if p not in open_:
            if started >= n_txn:
                continue
            started += 1
            txn: list[list[Any]] = []
            for _ in range(draw(st.integers(1, 3))):
                k = draw(st.sampled_from("xyz"))
                if draw(st.booleans()):
                    txn.append(["r", k, None])
                else:
                    counter += 1
                    txn.append(["append" if model == "list-append" else "w", k, counter])
            ops.append(Op(len(ops), "invoke", p, "txn", [list(m) for m in txn]))
            open_[p] = txn
            continue
        txn = open_.pop(p)
        outcome = draw(st.sampled_from(("ok", "ok", "ok", "fail", "info")))
        snapshot, done = dict(store), []
        for f, k, v in txn:
            if f == "r":
                cur = snapshot.get(k)
                done.append(["r", k, list(cur or ()) if model == "list-append" else cur])
            else:
                snapshot[k] = (*snapshot.get(k, ()), v) if f == "append" else v
                done.append([f, k, v])
        if outcome == "ok" or (outcome == "info" and draw(st.booleans())):
            store = snapshot
        ops.append(Op(len(ops), outcome, p, "txn", done if outcome == "ok" else txn))  # type: ignore[arg-type]
        if outcome == "info":
            crashed.add(p)
            n_proc += 1  # a crashed client never returns; a fresh process takes its slot
    return ops


def histories(model: str) -> st.SearchStrategy[list[Op]]:
    """Histories a correct (linearizable / strict-serializable) store could produce.

    Concurrent clients run against a real in-memory store; each operation
    takes effect at one moment inside its invoke/complete window, or the
    client crashes (an `info` completion, before or after the effect).
    Mutate one to test that a checker catches the damage.
    """
    if model in _UPDATES:
        return _single(model)
    if model in TXN_MODELS:
        return _txns(model)
    raise ValueError(f"no history strategy for {model!r}; expected one of "
                     f"{', '.join(HISTORY_MODELS)}")
