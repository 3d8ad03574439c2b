"""Workloads and nemesis schedules: checkable shapes, unique values, replayable faults."""

from __future__ import annotations

import itertools
import random
from collections import Counter

from selfhood.chaos.generator import MS, NEMESIS, SECOND, simulate
from selfhood.chaos.nemesis import (
    build_schedule,
    final_heal,
    nodes_of,
    partition_groups,
    windows_schedule,
)
from selfhood.chaos.workloads import experiment_generator
from selfhood.consistency.keys import instance_of, is_list_key
from selfhood.spec import DEFAULT_SPEC, PARTITION_PATTERNS, NemesisOp, with_overrides

SPEC = with_overrides(DEFAULT_SPEC, time_limit_s=2.0, quiesce_ms=200, nemesis_interval_ms=300,
                      fault_duration_ms=200, nemesis=("partition", "crash", "pause", "skew"))


def run(spec=SPEC, seed: int = 1):  # type: ignore[no-untyped-def]
    sched = build_schedule(spec)
    gen = experiment_generator(spec, sched, final_heal(sched, spec.time_limit_s * 1000))
    return sched, simulate(gen, seed=seed, concurrency=spec.concurrency)


def test_txns_stay_within_one_instance_and_values_are_unique() -> None:
    _, h = run()
    written: list[int] = []
    for o in h:
        if o.type != "invoke" or o.f != "txn":
            continue
        assert o.instance is not None
        for f, k, v in o.value:
            assert instance_of(k) == o.instance
            assert f in ("r", "w", "append")
            assert (f == "append") == (is_list_key(k) and f != "r")
            if f == "r":
                assert v is None
            else:
                written.append(v)
    assert len(written) == len(set(written)) > 100


def test_every_workload_appears() -> None:
    _, h = run()
    fs = Counter(o.f for o in h if o.type == "invoke" and o.process != NEMESIS)
    for f in ("txn", "add-rule", "revoke-rule", "read-rules", "probe", "final-read"):
        assert fs[f] > 0, f
    turns_with_memory = [o for o in h if o.type == "invoke" and o.f == "txn" and any(
        m[0] == "append" for m in o.value) and any("/mem/subtask/" in m[1] for m in o.value)]
    assert turns_with_memory


def test_phases_load_then_heal_then_quiesce_then_final_reads() -> None:
    sched, h = run()
    load_end = SPEC.time_limit_s * SECOND
    nem = [o for o in h if o.type == "invoke" and o.process == NEMESIS]
    # scheduled faults happen at their times during load
    scheduled = [(s.f, s.at_ms * MS) for s in sched if s.at_ms * MS < load_end]
    assert [(o.f, o.time) for o in nem[: len(scheduled)]] == scheduled
    assert next(o.f for o in nem[len(scheduled):]) == "heal"
    heal_idx = max(o.index for o in nem)
    client_load = [o for o in h if o.f == "txn"]
    assert all(o.index < heal_idx for o in client_load)
    finals = [o for o in h if o.f == "final-read" and o.type == "invoke"]
    probes_after = [o for o in h if o.f == "probe" and o.index > heal_idx]
    assert probes_after and all(o.index > max(p.index for p in probes_after) for o in finals)
    pairs = {(o.value["replica"], o.instance) for o in finals}
    assert pairs == {(r, i) for r in SPEC.replica_names for i in SPEC.instance_names}


def test_final_heal_undoes_what_is_still_broken() -> None:
    sched = (NemesisOp(at_ms=10, f="crash", value="r1"), NemesisOp(at_ms=20, f="pause",
             value="r2"), NemesisOp(at_ms=30, f="resume", value="r2"),
             NemesisOp(at_ms=40, f="skew", value={"r0": 500}))
    fh = final_heal(sched, 100)
    assert [(s.f, s.value) for s in fh] == [("heal", None), ("restart", "r1"), ("unskew", None)]


def test_schedule_is_seeded_and_spaced() -> None:
    a, b = build_schedule(SPEC), build_schedule(SPEC)
    assert a == b and a
    c = build_schedule(with_overrides(SPEC, seed=2))
    assert a != c
    assert all(x.at_ms <= y.at_ms for x, y in itertools.pairwise(a))
    assert {s.f for s in a} >= {"partition", "heal", "crash", "restart"}
    assert build_schedule(with_overrides(SPEC, nemesis=())) == ()


def test_same_seed_same_client_history() -> None:
    assert run(seed=3)[1] == run(seed=3)[1]


def test_partition_patterns_cut_the_network() -> None:
    nodes = nodes_of(SPEC)
    for pattern in PARTITION_PATTERNS:
        groups = partition_groups(pattern, nodes, random.Random(1))
        assert {n for g in groups for n in g} == set(nodes)

        def talk(a: str, b: str, groups: list[list[str]] = groups) -> bool:
            return any(a in g and b in g for g in groups)

        cut = [(a, b) for a in nodes for b in nodes if a < b and not talk(a, b)]
        assert cut, pattern
    iso = partition_groups("isolate", nodes, random.Random(3))
    assert sorted(len(g) for g in iso) == [1, len(nodes) - 1]


def test_windows_schedule_replays_the_same_fault() -> None:
    w = [(100, 50, "crash", 7), (300, 80, "halves", 8)]
    s1, s2 = windows_schedule(w, SPEC), windows_schedule(w, SPEC)
    assert s1 == s2
    assert [(s.at_ms, s.f) for s in s1] == [(100, "crash"), (150, "restart"),
                                             (300, "partition"), (380, "heal")]
