"""Regressions for simulator / replica-core bugs found by the harness (fast, seeded)."""

from __future__ import annotations

from typing import Any

import pytest

from selfhood.chaos import runner
from selfhood.chaos.generator import MS, NEMESIS, OpRequest
from selfhood.chaos.sim import SimResult, Simulation
from selfhood.consistency.replica import UNAVAILABLE, Reply, Request
from selfhood.spec import ExperimentSpec, NemesisOp


def _finals(res: SimResult) -> dict[str, dict[str, dict[str, Any]]]:
    """instance -> replica -> final-read value (ok final reads only)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for o in res.history:
        if o.f == "final-read" and o.type == "ok":
            out.setdefault(o.instance or "", {})[o.node or ""] = o.value
    return out


def _simulate(spec: ExperimentSpec, mode: str) -> SimResult:
    res: SimResult = runner.simulate_mode(spec, mode)
    return res


def _assert_converged(spec: ExperimentSpec, res: SimResult) -> None:
    finals = _finals(res)
    assert set(finals) == set(spec.instance_names)
    for inst, views in finals.items():
        assert set(views) == set(spec.replica_names), inst
        assert len({v["fingerprint"] for v in views.values()}) == 1, inst


def test_event_ids_are_unique_across_replicas_and_incarnations() -> None:
    """The UUID version nibble used to erase bits of the replica index: r4 minted r0's ids."""
    sim = Simulation(runner.sim_config(ExperimentSpec(replicas=20), "eventual"), 1)
    ids: set[str] = set()
    minted = 0
    for name in sim.names:
        for inc in range(3):
            sim.incarnation[name] = inc
            r = sim._new_replica(name)
            for _ in range(50):
                ids.add(r._eid())
                minted += 1
    assert len(ids) == minted


def test_eventual_converges_with_five_replicas_after_isolating_r4() -> None:
    """Harness report: r4 isolated then healed never converged (its ids collided with r0's)."""
    spec = ExperimentSpec(
        modes=("eventual",), replicas=5, shards=3, time_limit_s=3.0,
        schedule=(NemesisOp(at_ms=500, f="partition",
                            value={"groups": [["r4"], ["log", "r0", "r1", "r2", "r3"]]}),
                  NemesisOp(at_ms=1500, f="heal"),
                  NemesisOp(at_ms=2000, f="skew", value={"r2": 505}),
                  NemesisOp(at_ms=2500, f="unskew")))
    res = _simulate(spec, "eventual")
    _assert_converged(spec, res)
    # every turn acknowledged by r4 while it was cut off reached everyone
    final_t = set(_finals(res)["i0"]["r0"]["transcript"])
    r4_acked = [v for o in res.history if o.type == "ok" and o.f == "txn" and o.node == "r4"
                and o.instance == "i0" for f, k, v in o.value
                if f == "append" and k == "i0/transcript"]
    assert r4_acked and set(r4_acked) <= final_t


def _sharded_spec(seed: int, atomic: bool) -> ExperimentSpec:
    return ExperimentSpec(seed=seed, modes=("linearizable", "sequential"), sharded_memory=True,
                          atomic_memory=atomic, shards=4, router="round-robin",
                          nemesis=("halves", "pause", "skew", "rebalance"), time_limit_s=2.5)


def _txn_verdicts(spec: ExperimentSpec, mode: str, consistency: str) -> dict[str, Any]:
    from selfhood.checkers.api import check_history

    hist = runner.split_history(_simulate(spec, mode).history)
    out: dict[str, Any] = {}
    for name, model in (("list-append", "list-append"), ("rw-register", "rw-register")):
        r = check_history(hist[name], model=model, consistency=[consistency], time_limit_s=20)
        out[name] = (r.valid, sorted(r.anomalies))
    return out


@pytest.mark.parametrize(("mode", "consistency", "seed"), [
    ("linearizable", "strict-serializable", 4), ("sequential", "strong-session-serializable", 1)])
def test_atomic_sharded_memory_reads_each_key_in_its_partitions_order(
        mode: str, consistency: str, seed: int) -> None:
    """Harness report: linearizable + --sharded-memory showed lost updates on the transcript.

    A txn's reads were all evaluated at its first event (the memory write), so two
    read-modify-write turns both read the transcript before either turn (lost
    update, G-single-item). With atomic cross-partition writes every txn is clean.
    """
    verdicts = _txn_verdicts(_sharded_spec(seed, True), mode, consistency)
    assert verdicts == {"list-append": (True, []), "rw-register": (True, [])}


def test_an_acked_eventual_write_survives_a_crash_within_the_outbox_window() -> None:
    """Lead's decision: eventual must not lose a write it acknowledged.

    The outbox used to live only in memory, so a crash within ``outbox_ms`` of a
    local-first acknowledgement lost that write for good (``lost-append``). The
    outbox is durable now: the restarted replica ships it and every final read
    has every acknowledged turn, while clients failed over meanwhile still miss
    them (read-your-writes failures are the price eventual pays, not loss).
    """
    spec = ExperimentSpec(modes=("eventual",), seed=1, replicas=3, shards=1, time_limit_s=3.0,
                          schedule=(NemesisOp(at_ms=950, f="crash", value="r0"),
                                    NemesisOp(at_ms=1600, f="restart", value="r0")))
    res = _simulate(spec, "eventual")
    crash_ns = next(o.time for o in res.history
                    if o.process == "nemesis" and o.f == "crash" and o.type == "info")
    assert crash_ns is not None
    window_ns = runner.sim_config(spec, "eventual").replica.outbox_ms * 1_000_000
    # turns r0 acknowledged within the outbox window before it crashed: unshipped
    acked: list[tuple[str, Any]] = [
        (o.instance or "", v) for o in res.history
        if o.type == "ok" and o.f == "txn" and o.node == "r0" and o.time is not None
        and crash_ns - window_ns <= o.time <= crash_ns
        for f, k, v in o.value if f == "append" and k.endswith("/transcript")]
    assert acked, "the scenario must ack turns inside the outbox window"
    _assert_converged(spec, res)
    finals = _finals(res)
    for inst, v in acked:
        for node, view in finals[inst].items():
            assert v in view["transcript"], (inst, v, node)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "seed", "nemesis"), [
    ("eventual", 1, ("crash",)), ("eventual", 6, None), ("eventual", 8, None)])
def test_a_world_with_every_replica_down_still_lets_virtual_time_pass(
        mode: str, seed: int, nemesis: tuple[str, ...] | None) -> None:
    """Issue 11: ``selfhood run --replicas 1`` spun at 100 % CPU once its replica crashed.

    With the only eventual replica down nothing is scheduled (no ticks, no
    coordinator), and the scheduler returned without moving virtual time to
    the generator's wake-up, so the interpreter asked again at the same time
    forever. The run must finish, with the crash's client ops timed out.
    """
    spec = ExperimentSpec(seed=seed, modes=(mode,), replicas=1,
                          **({"nemesis": nemesis} if nemesis else {}))
    res = _simulate(spec, mode)
    assert any(o.f == "crash" for o in res.history)
    assert any(o.f == "restart" for o in res.history)
    assert max(o.time or 0 for o in res.history) >= spec.time_limit_s * 1e9


def test_a_restarted_replica_holds_no_read_lease_until_its_first_poll() -> None:
    """A restarted replica's state is empty until it has read the log back.

    The simulator gave it a fresh read lease at once (the real node renews it
    only once a poll has caught it up, `Records.lease`), so a sequential read
    reaching it before its first poll was served from the empty state. Now it
    is refused as unreachable, as on the real cluster, until that poll.
    """
    spec = ExperimentSpec(modes=("sequential",), seed=1, replicas=3, shards=1)
    sim = Simulation(runner.sim_config(spec, "sequential"), seed=1)
    start = sim.replicas["r1"]
    assert start is not None and start._log_reachable(sim._clock("r1"))  # the empty log's
    for f in ("crash", "restart"):
        sim._nemesis(OpRequest(f, "r1", process=NEMESIS, time=0))
    fresh = sim.replicas["r1"]
    assert fresh is not None and fresh is not start
    inst = spec.instance_names[0]
    outs = fresh.on_request(Request(1, "txn", [["r", f"{inst}/transcript", None]], inst),
                            sim._clock("r1"))
    assert [(o.type, o.error) for o in outs if isinstance(o, Reply)] == [("fail", UNAVAILABLE)]
    sim.step_until(sim.now + 200 * MS)  # its first poll and the log's answer
    assert fresh._log_reachable(sim._clock("r1"))
    outs = fresh.on_request(Request(2, "txn", [["r", f"{inst}/transcript", None]], inst),
                            sim._clock("r1"))
    assert [o.type for o in outs if isinstance(o, Reply)] in ([], ["ok"])
