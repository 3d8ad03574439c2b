"""The simulator's speed-ups keep its outputs: each shortcut against the plain path."""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Any

import pytest

from selfhood.chaos.client import ClientSessions
from selfhood.chaos.generator import Context, clients, limit
from selfhood.chaos.interpreter import Interpreter
from selfhood.chaos.sim import SimConfig, run_simulation
from selfhood.chaos.workloads import client_mix
from selfhood.checkers.formats import ops_to_jsonl
from selfhood.checkers.history import Op, make_op
from selfhood.events import Case, Hlc, MemoryWritten, TurnAppended, make_event, seeded_event_ids
from selfhood.projections.crdt import merge_eventual, merge_states
from selfhood.projections.reducer import apply_sequential
from selfhood.projections.state import InstanceState, Turn, canonical_bytes, fingerprint
from selfhood.spec import ExperimentSpec


def _fresh(st: InstanceState) -> bytes:
    """The encoding without any cache: `copy()` starts with none."""
    return canonical_bytes(st.copy())


def test_incremental_canonical_bytes_equal_a_fresh_encoding_under_any_mutation() -> None:
    rng = random.Random(7)
    checked = 0
    for trial in range(150):
        st = InstanceState.empty("i0")
        eventual = trial % 2 == 0
        for k in range(rng.randrange(1, 50)):
            hlc = Hlc(rng.randrange(50), rng.randrange(3))
            if rng.random() < 0.6:
                p: TurnAppended | MemoryWritten = TurnAppended(role="user",
                                                               content=str(rng.randrange(99)))
            else:
                key = str(rng.randrange(1000))
                p = MemoryWritten(module="case_bank", key=key,
                                  case=Case(situation=key, plan="", reward=rng.random()))
            ev = make_event("i0", p, writer=rng.choice("abc"), hlc=hlc, event_id=f"e{trial}.{k}")
            (merge_eventual if eventual else apply_sequential)(st, ev)
            r = rng.random()
            if r < 0.05 and st.transcript:  # an entry replaced in place
                i = rng.randrange(len(st.transcript))
                t = st.transcript[i]
                st.transcript[i] = Turn(t.hlc, t.writer, t.event_id, t.role, t.content + "!")
            elif r < 0.1 and st.transcript:  # an entry removed
                del st.transcript[rng.randrange(len(st.transcript))]
            elif r < 0.13 and eventual:  # a list replaced by a merge
                st = merge_states(st, InstanceState.empty("i0"))
            if rng.random() < 0.6:
                assert canonical_bytes(st) == _fresh(st)
                checked += 1
    assert checked > 500


def test_a_changed_transcript_changes_the_cached_fingerprint() -> None:
    st = InstanceState.empty("i0")
    for k in range(5):
        apply_sequential(st, make_event("i0", TurnAppended(role="user", content=str(k)),
                                        writer="r0", event_id=f"e{k}"))
    before = fingerprint(st)
    t = st.transcript[2]
    st.transcript[2] = Turn(t.hlc, t.writer, t.event_id, t.role, "other")
    assert fingerprint(st) != before
    assert fingerprint(st) == fingerprint(st.copy())


def test_seeded_event_ids_are_the_uuid4s_of_the_seeded_draws() -> None:
    for seed in (0, "1/r0/0", "1/r4/0", 12345678901234567):
        ids, rng = seeded_event_ids(seed), random.Random(seed)
        got = [ids() for _ in range(200)]
        assert got == [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200)]
        assert all(uuid.UUID(x).version == 4 for x in got)
    # replicas and incarnations draw from their own seeds: no shared ids
    many = {seeded_event_ids(f"1/r{i}/{inc}")() for i in range(64) for inc in range(4)}
    assert len(many) == 256


def test_slot_built_ops_and_contexts_equal_the_constructed_ones() -> None:
    assert make_op(3, "ok", 1, "txn", [1], 9, "r0", "i0", None, {"a": 1}) == Op(
        3, "ok", 1, "txn", [1], 9, "r0", "i0", None, {"a": 1})
    assert make_op(0, "invoke", "nemesis", "heal", None, 0, None, None, None, {}) == Op(
        0, "invoke", "nemesis", "heal", None, 0)
    rng = random.Random(1)

    class At:
        now = 5

    sessions = ClientSessions(("r0",), "sticky", down_ms=1, timeout_ns=2, margin_ns=1)
    interp = Interpreter(At(), sessions, concurrency=2, rng=rng)
    interp.busy.add(1)
    c = interp._ctx()
    assert type(c) is Context and c == Context(5, (0, "nemesis"), (0, 1, "nemesis"), rng)
    assert c.clients_only() == Context(5, (0,), (0, 1), rng)
    assert c.clients_only().clients_only() is c.clients_only()
    n = c.nemesis_only()  # slot-built too
    assert type(n) is Context and n == Context(5, ("nemesis",), ("nemesis",), rng)
    assert n.clients_only() == Context(5, (), (), rng) and n.rng is rng
    interp.busy.add("nemesis")
    interp._pv += 1  # a new context: the nemesis is busy in it
    assert interp._ctx().nemesis_only() == Context(5, (), ("nemesis",), rng)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.time = 6  # type: ignore[misc]


def test_same_seed_same_history_across_modes() -> None:
    spec = ExperimentSpec()
    for mode in ("sequential", "eventual"):
        cfg = SimConfig().with_overrides(mode=mode, instances=spec.instance_names, concurrency=4)
        a = run_simulation(cfg, clients(limit(400, client_mix(spec))), seed=5)
        b = run_simulation(cfg, clients(limit(400, client_mix(spec))), seed=5)
        assert ops_to_jsonl(a.history) == ops_to_jsonl(b.history)
        assert a.final_states == b.final_states


def test_slot_init_builds_the_dataclass_its_own_init_would() -> None:
    import dataclasses
    import inspect

    from selfhood.chaos.generator import EMPTY, Limit, OpRequest, Pending
    from selfhood.slots import slot_init

    @dataclasses.dataclass(frozen=True, slots=True)
    class Plain:
        a: int
        b: Any = None
        c: list[int] | None = dataclasses.field(default=None, compare=False)
        d: int = dataclasses.field(default=7, init=False)

    Fast = slot_init(dataclasses.make_dataclass(
        "Fast", [("a", int), ("b", Any, None),
                 ("c", "list[int] | None", dataclasses.field(default=None, compare=False)),
                 ("d", int, dataclasses.field(default=7, init=False))],
        frozen=True, slots=True))
    for args, kw in (((1,), {}), ((1, "x"), {}), ((1,), {"c": [2]}), ((), {"a": 3, "b": 4})):
        p, f = Plain(*args, **kw), Fast(*args, **kw)
        assert [getattr(p, n) for n in "abcd"] == [getattr(f, n) for n in "abcd"]
    assert str(inspect.signature(Fast)) == "(a, b=None, c=None)"
    with pytest.raises(TypeError):
        Fast()  # a required field stays required
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fast(1).a = 2
    # the generator's own values: equal to what the fields say, frozen, hashable when they are
    o = OpRequest("txn", None, 1, instance="i0")
    assert (o.f, o.value, o.process, o.instance, o.time) == ("txn", None, 1, "i0", None)
    assert dataclasses.replace(o, time=5) == OpRequest("txn", None, 1, "i0", 5)
    assert hash(Pending(3)) == hash(Pending(3)) and Limit(2, EMPTY) == Limit(2, EMPTY)


def test_clients_of_clients_is_one_restriction() -> None:
    from selfhood.chaos.generator import OnProcesses, nemesis, repeat
    from selfhood.chaos.generator import OpRequest as Req

    g = limit(3, repeat(Req("r")))
    once = clients(g)
    assert clients(once) is once and isinstance(once, OnProcesses) and once.gen is g
    assert nemesis(nemesis(g)) == nemesis(g) and clients(nemesis(g)) != nemesis(g)


def test_write_path_events_are_the_events_make_event_builds() -> None:
    from selfhood.consistency.config import ReplicaConfig
    from selfhood.consistency.replica import Clock, make_replica

    for sharded in (False, True):
        r = make_replica("r0", ReplicaConfig(mode="sequential", shards=2, sharded_memory=sharded),
                         ("i0",), new_id=seeded_event_ids(3))
        mops: list[list[Any]] = [["r", "i0/transcript", None], ["append", "i0/transcript", 5],
                                 ["append", "i0/cases", 6], ["w", "i0/mem/tool/k1", 7]]
        entries = r._txn_events("i0", mops, Clock(10 * 1_000_000, 12 * 1_000_000), 2, True)
        assert [e.kind for _, e in entries] == ["memory_written", "memory_written",
                                                "turn_appended"]
        for _, ev in entries:
            assert ev == make_event(ev.instance_id, ev.payload, writer="r0", epoch=2,
                                    hlc=ev.hlc, deps=ev.deps, read_version=ev.read_version,
                                    event_id=ev.event_id)
        assert bool(entries[-1][1].deps) == sharded


#: the histories the simulator writes for three small runs, as of 2026-12-07: a speed-up
#: must leave every byte alone (the stored specs' `history_sha256` replays depend on it).
#: A change of the simulated behaviour itself (the protocol, the workload, the faults)
#: changes these on purpose: then say so in the commit and record the new digests.
GOLDEN_HISTORIES = {
    "sequential": "bf064e98bf8886f58557db0068775caf54f017592de7b6074c67682c95bb549e",
    "linearizable": "2c9dc6ec472d6b51202acc8591e5642d60d0583ad92593f5d8c9b7abc8a5aa9f",
    "eventual": "3875b79968c4047b820206a6e48c7acaa6ea252f6b6d0dee45950a7352dce201",
}


def test_the_simulator_writes_the_recorded_histories() -> None:
    import msgspec

    from selfhood.chaos.runner import history_sha256, simulate_mode

    base = ExperimentSpec()
    variants: dict[str, dict[str, Any]] = {
        "sequential": {},
        "linearizable": {"nemesis": ("crash", "pause", "skew"), "nemesis_interval_ms": 700,
                         "fault_duration_ms": 400},
        "eventual": {"sharded_memory": True,
                     "net": msgspec.structs.replace(base.net, loss=0.05)},
    }
    got = {}
    for mode, kw in variants.items():
        spec = msgspec.structs.replace(base, seed=3, time_limit_s=4.0, **kw)
        got[mode] = history_sha256(simulate_mode(spec, mode).history)[1]
    assert got == GOLDEN_HISTORIES


def test_randbelow_draws_what_randrange_and_choice_draw() -> None:
    from selfhood.chaos.generator import randbelow

    a, b = random.Random(11), random.Random(11)
    below = randbelow(a)
    seq = ("p", "q", "r", "s", "t")
    for n in (1, 2, 3, 7, 1 << 30, 12345678901):
        assert [below(n) for _ in range(50)] == [b.randrange(n) for _ in range(50)]
        assert [seq[below(len(seq))] for _ in range(20)] == [b.choice(seq) for _ in range(20)]
    assert a.random() == b.random()  # and the streams stay in step


def test_a_finished_run_leaves_no_cyclic_garbage() -> None:
    """The world and its interpreter refer to each other; run_simulation cuts that
    cycle, so a run's whole deployment is freed at its end. Left as cyclic garbage it
    waited for a collection, and a hunt's later runs paid for tracing it."""
    import gc

    from selfhood.chaos.generator import MS, NEMESIS, OpRequest, nemesis_and_clients, seq

    spec = ExperimentSpec()
    faults = seq(OpRequest("partition", {"pattern": "halves"}, NEMESIS, time=50 * MS),
                 OpRequest("heal", None, NEMESIS, time=150 * MS),
                 OpRequest("crash", "r1", NEMESIS, time=200 * MS),
                 OpRequest("restart", "r1", NEMESIS, time=300 * MS))
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for mode in ("sequential", "eventual"):
            cfg = SimConfig.from_spec(spec, mode)
            gen = nemesis_and_clients(faults, clients(limit(300, client_mix(spec))))
            res = run_simulation(cfg, gen, seed=2)
            assert len(res.history) >= 600
            del res, gen
            assert gc.collect() == 0, mode
    finally:
        if was:
            gc.enable()


def test_paused_gc_promote_puts_what_the_block_kept_in_the_oldest_generation() -> None:
    """Resumed plainly, the collector's next young pass traces everything the block
    kept (a run's history, ~5 % of a run); promoted, it is not young any more. Frozen
    objects (someone's `gc.freeze`) are left frozen."""
    import gc

    from selfhood.checkers.history import paused_gc

    def young() -> set[int]:
        return {id(o) for o in gc.get_objects(0)} | {id(o) for o in gc.get_objects(1)}

    was = gc.isenabled()
    gc.enable()
    try:
        with paused_gc():
            plain = [[i] for i in range(3000)]
        assert gc.isenabled()
        assert {id(x) for x in plain} <= young()
        with paused_gc(promote=True):
            kept = [[i] for i in range(3000)]
        assert gc.isenabled() and gc.get_count()[0] < 1000
        assert not {id(x) for x in kept} & young()
        assert {id(x) for x in kept} <= {id(o) for o in gc.get_objects(2)}
        gc.freeze()
        frozen = gc.get_freeze_count()
        with paused_gc(promote=True):
            later = [[i] for i in range(3000)]
        assert gc.get_freeze_count() == frozen and len(later) == 3000
    finally:
        gc.unfreeze()
        if not was:
            gc.disable()
