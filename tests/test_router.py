"""Router policies and failover (pure)."""

from __future__ import annotations

import pytest

from selfhood.consistency.ownership import Coordinator, home_partition, memory_partition
from selfhood.consistency.router import Router
from selfhood.errors import ConsistencyError

MS = 1_000_000
R = ("r0", "r1", "r2")


def test_round_robin_cycles_over_live_replicas() -> None:
    r = Router(R, "round-robin")
    assert [r.pick(0, 0) for _ in range(6)] == ["r0", "r1", "r2", "r0", "r1", "r2"]
    r.mark_down("r1", 0)
    picks = [r.pick(0, 1) for _ in range(4)]
    assert "r1" not in picks and set(picks) == {"r0", "r2"}


def test_sticky_keeps_a_session_and_moves_it_only_on_failure() -> None:
    r = Router(R, "sticky", down_ms=100)
    assert {r.pick(1, 0) for _ in range(5)} == {"r1"}
    assert r.mark_down("r1", 10) is True
    moved = r.pick(1, 11)
    assert moved == "r2"
    # once r1 is back, the session stays where it moved (affinity, not a home)
    assert r.is_up("r1", 10 + 100 * MS)
    assert r.pick(1, 10 + 100 * MS) == "r2"
    assert r.failovers == 1


def test_least_loaded_prefers_fewest_outstanding() -> None:
    r = Router(R, "least-loaded")
    r.started("r0")
    r.started("r0")
    r.started("r1")
    assert r.pick(0, 0) == "r2"
    r.started("r2")
    r.started("r2")
    assert r.pick(0, 0) == "r1"
    r.finished("r0")
    r.finished("r0")
    assert r.pick(0, 0) == "r0"


def test_down_replica_comes_back_after_down_ms_and_on_reply() -> None:
    r = Router(R, "round-robin", down_ms=5)
    r.mark_down("r0", 0)
    assert r.live(1) == ["r1", "r2"]
    assert r.live(5 * MS) == list(R)
    r.mark_down("r2", 0)
    r.mark_up("r2")
    assert "r2" in r.live(1)


def test_all_down_still_routes_somewhere() -> None:
    r = Router(R, "round-robin")
    for x in R:
        r.mark_down(x, 0)
    assert r.pick(0, 1) in R


def test_bad_policy_is_a_typed_error() -> None:
    with pytest.raises(ConsistencyError, match="unknown router policy"):
        Router(R, "random")


def test_coordinator_epochs_strictly_increase_on_failover_and_rebalance() -> None:
    c = Coordinator(R, ("i0", "i1", "i2", "i3"), 3)
    grants = c.initial_grants()
    assert {g.epoch for g in grants} == {1}
    owner = c.owner_of("i0")
    moved = c.fail_over(owner, [x for x in R if x != owner])
    assert moved and all(g.owner != owner and g.epoch == 2 for g in moved)
    assert c.owner_of("i0") != owner
    again = c.rebalance(list(R))
    assert all(g.epoch >= 2 for g in again)
    assert c.epoch_of("i0") > 2


def test_sharded_memory_lives_on_another_partition() -> None:
    for inst in ("i0", "i1", "i2", "abc"):
        assert memory_partition(inst, 4, True) != home_partition(inst, 4)
        assert memory_partition(inst, 4, False) == home_partition(inst, 4)
    assert memory_partition("i0", 1, True) == 0
