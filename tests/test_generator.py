"""Generators: immutable, seeded, and honest about time and processes."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfhood.chaos.generator import (
    MS,
    NEMESIS,
    PENDING,
    Context,
    OpRequest,
    Pending,
    any_of,
    clients,
    delay,
    limit,
    mix,
    nemesis,
    nemesis_and_clients,
    once,
    phases,
    repeat,
    seq,
    simulate,
    sleep,
    stagger,
    time_limit,
)
from selfhood.checkers.history import Op
from selfhood.errors import ChaosError


def counter_fn(ctx: Context) -> OpRequest:
    return OpRequest("txn", ctx.rng.randrange(1000))


def invokes(h: list[Op], f: str | None = None) -> list[Op]:
    return [o for o in h if o.type == "invoke" and (f is None or o.f == f)]


def test_same_seed_same_history_and_different_seed_differs() -> None:
    gen = time_limit(50 * MS, stagger(MS, repeat(counter_fn)))
    a = simulate(gen, seed=7)
    b = simulate(gen, seed=7)
    c = simulate(gen, seed=8)
    assert a == b
    assert [o.value for o in a] != [o.value for o in c]


def test_generators_are_values_asking_twice_gives_the_same_answer() -> None:
    gen = limit(3, repeat(counter_fn))
    ctx1 = Context(0, (0, 1), (0, 1), random.Random(1))
    ctx2 = Context(0, (0, 1), (0, 1), random.Random(1))
    r1, r2 = gen.op(ctx1), gen.op(ctx2)
    assert r1 is not None and r2 is not None
    assert r1[0] == r2[0]
    # the original is untouched: it still has all three ops
    assert len(invokes(simulate(gen, seed=1))) == 3


def test_limit_once_and_seq_counts() -> None:
    h = simulate(seq(limit(5, repeat(OpRequest("a"))), once(OpRequest("b"))), seed=1)
    assert Counter(o.f for o in invokes(h)) == {"a": 5, "b": 1}
    assert all(o.type in ("invoke", "ok") for o in h)
    assert len(h) == 12


def test_time_limit_stops_issuing_at_the_deadline() -> None:
    h = simulate(time_limit(20 * MS, stagger(MS, repeat(counter_fn))), seed=3)
    inv = invokes(h)
    assert inv and all(o.time is not None and o.time < 20 * MS for o in inv)
    assert max(o.time or 0 for o in inv) > 15 * MS


def test_stagger_mean_gap_is_dt() -> None:
    h = simulate(limit(400, stagger(2 * MS, repeat(counter_fn))), seed=5, concurrency=50)
    times = [o.time or 0 for o in invokes(h)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps)
    assert 1.6 * MS < mean < 2.4 * MS


def test_phases_wait_for_outstanding_ops() -> None:
    gen = phases(limit(6, repeat(OpRequest("load"))), once(OpRequest("final")))
    h = simulate(gen, seed=2, concurrency=3, latency_ns=5 * MS)
    final_invoke = invokes(h, "final")[0]
    last_load_done = max(o.index for o in h if o.f == "load" and o.type == "ok")
    assert final_invoke.index > last_load_done


def test_nemesis_and_clients_split_processes_and_follow_the_schedule() -> None:
    faults = seq(OpRequest("partition", time=10 * MS), OpRequest("heal", time=30 * MS))
    load = time_limit(50 * MS, stagger(MS, repeat(counter_fn)))
    h = simulate(nemesis_and_clients(faults, load), seed=4)
    nem = [o for o in invokes(h) if o.process == NEMESIS]
    assert [(o.f, o.time) for o in nem] == [("partition", 10 * MS), ("heal", 30 * MS)]
    assert all(o.process != NEMESIS for o in invokes(h, "txn"))


def test_nemesis_and_clients_ends_with_the_clients() -> None:
    h = simulate(nemesis_and_clients(repeat(OpRequest("kill")), limit(3, repeat(counter_fn))),
                 seed=1, latency_ns=MS)
    assert len(invokes(h, "txn")) == 3
    assert len(invokes(h, "kill")) < 100


def test_sleep_and_delay_hold_back_ops() -> None:
    h = simulate(seq(sleep(7 * MS), once(OpRequest("x"))), seed=1)
    assert invokes(h)[0].time == 7 * MS
    h2 = simulate(delay(3 * MS, limit(2, repeat(OpRequest("y")))), seed=1)
    assert all((o.time or 0) >= 3 * MS for o in invokes(h2))


def test_mix_draws_from_every_generator() -> None:
    h = simulate(limit(200, mix(repeat(OpRequest("a")), repeat(OpRequest("b")))), seed=9)
    c = Counter(o.f for o in invokes(h))
    assert c["a"] > 50 and c["b"] > 50


def test_any_of_takes_the_soonest() -> None:
    gen = any_of(once(OpRequest("late", time=9 * MS)), once(OpRequest("early", time=2 * MS)))
    assert [o.f for o in invokes(simulate(gen, seed=1))] == ["early", "late"]


def test_nemesis_only_runs_on_the_nemesis_process() -> None:
    h = simulate(seq(nemesis(once(OpRequest("crash", "r1"))), clients(once(OpRequest("c")))),
                 seed=1)
    assert next((o.f, o.process) for o in invokes(h)) == ("crash", NEMESIS)
    assert invokes(h, "c")[0].process != NEMESIS


def test_info_completion_retires_the_process() -> None:
    def crashing(req: OpRequest, rng: random.Random) -> tuple[str, Any]:
        return "info", None

    h = simulate(limit(4, repeat(OpRequest("w"))), seed=1, concurrency=1, complete=crashing)
    assert [o.process for o in invokes(h)] == [0, 1, 2, 3]


def test_pending_with_nothing_in_flight_is_a_deadlock() -> None:
    class Stuck:
        def op(self, ctx: Context) -> tuple[OpRequest | Pending, Any]:
            return PENDING, self

        def update(self, ctx: Context, event: Op) -> Any:
            return self

    with pytest.raises(ChaosError, match="deadlock"):
        simulate(Stuck(), seed=1)


gen_strategy = st.recursive(
    st.sampled_from(["a", "b"]).map(lambda f: limit(3, repeat(OpRequest(f)))),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda gs: seq(*gs)),
        st.lists(children, min_size=1, max_size=3).map(lambda gs: phases(*gs)),
        st.lists(children, min_size=1, max_size=3).map(lambda gs: mix(*gs)),
        st.lists(children, min_size=1, max_size=3).map(lambda gs: any_of(*gs)),
        children.map(lambda g: stagger(MS, g)),
        children.map(lambda g: time_limit(40 * MS, g)),
    ),
    max_leaves=8,
)


@given(gen=gen_strategy, seed=st.integers(0, 2**32), conc=st.integers(1, 4))
def test_a_process_never_has_two_open_ops_and_time_never_goes_back(
        gen: Any, seed: int, conc: int) -> None:
    h = simulate(gen, seed=seed, concurrency=conc)
    open_: set[Any] = set()
    last = 0
    for o in h:
        assert (o.time or 0) >= last
        last = o.time or 0
        if o.type == "invoke":
            assert o.process not in open_
            open_.add(o.process)
        else:
            open_.remove(o.process)
    assert not open_
    assert simulate(gen, seed=seed, concurrency=conc) == h


def test_fill_in_new_places_an_op_as_fill_in_places_the_unfilled_request() -> None:
    from selfhood.chaos.generator import Pending, fill_in, fill_in_new

    for free, procs in (((0, 1, 2), (0, 1, 2, 3)), ((2,), (0, 1, 2)), ((), (0, 1)),
                        ((1, NEMESIS), (0, 1, NEMESIS)), ((NEMESIS,), (NEMESIS,)),
                        ((), (NEMESIS,))):
        a, b = random.Random(4), random.Random(4)
        for t in (0, 7):
            got = fill_in_new("txn", [1], "i0", Context(t, free, procs, a))
            want = fill_in(OpRequest("txn", [1], instance="i0"), Context(t, free, procs, b))
            assert got == want and type(got) is type(want)
            assert isinstance(got, Pending) or (got.time == t and got.process in free)
        assert a.random() == b.random()  # the same draws
