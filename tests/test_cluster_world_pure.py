"""The cluster world's pure parts: failover-gap measurement and reply decoding."""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any, cast

import pytest

from selfhood.chaos.cluster_world.world import Kill, _reply_of, failover_gaps, gap_summary
from selfhood.checkers.history import Op
from selfhood.consistency.replica import UNAVAILABLE
from selfhood.errors import SpecError
from selfhood.spec import DEFAULT_SPEC, with_overrides

MS = 1_000_000


def _op(i: int, typ: str, p: int, f: str, v: Any, t_ms: float, node: str, inst: str) -> Op:
    return Op(i, typ, p, f, v, int(t_ms * MS), node, inst)


def test_gap_is_kill_to_first_acknowledged_write_invoked_after_it() -> None:
    w = [["append", "i1/transcript", 1]]
    h = [
        _op(0, "invoke", 0, "txn", w, 90, "r0", "i1"),        # invoked before the kill
        _op(1, "invoke", 1, "txn", [["r", "i1/transcript", None]], 101, "r1", "i1"),
        _op(2, "ok", 1, "txn", [["r", "i1/transcript", [1]]], 150, "r1", "i1"),  # a read
        _op(3, "invoke", 2, "txn", w, 120, "r2", "i0"),        # another instance
        _op(4, "ok", 2, "txn", w, 200, "r2", "i0"),
        _op(5, "ok", 0, "txn", w, 300, "r0", "i1"),            # old write: not counted
        _op(6, "invoke", 3, "txn", w, 400, "r1", "i1"),
        _op(7, "ok", 3, "txn", w, 1350, "r1", "i1"),
    ]
    k = Kill("r0", 100 * MS, ("i1",), (1,))
    failover_gaps([k], h)
    assert (k.gap_ms, k.by) == (1250.0, "r1")
    never = Kill("r2", 2000 * MS, ("i0",), (0,))
    failover_gaps([never], h)
    assert never.gap_ms is None
    s = gap_summary([k, never], 1000)
    assert (s["kills"], s["measured"], s["p50_ms"], s["session_timeout_ms"]) == (2, 1, 1250.0, 1000)


def test_replies_from_the_client_process() -> None:
    assert _reply_of(1, {"error": "refused"}).error == UNAVAILABLE  # type: ignore[union-attr]
    assert _reply_of(1, {"error": "timeout"}) is None  # the op's own timeout decides
    ok = _reply_of(2, {"status": 200, "body": {"type": "ok", "value": [1], "token": {"1": 7}}})
    assert ok is not None and (ok.type, ok.value, ok.token) == ("ok", [1], {1: 7})
    bad = _reply_of(3, {"status": 400, "body": {"detail": "f: nope"}})
    assert bad is not None and bad.type == "fail" and "f: nope" in str(bad.error)
    assert _reply_of(4, {"status": 500, "body": None}).type == "info"  # type: ignore[union-attr]


def test_runtime_and_session_timeout_are_validated_spec_fields() -> None:
    assert with_overrides(DEFAULT_SPEC, runtime="cluster").runtime == "cluster"
    with pytest.raises(SpecError, match="runtime"):
        with_overrides(DEFAULT_SPEC, runtime="docker")
    with pytest.raises(SpecError, match="session_timeout_ms"):
        with_overrides(DEFAULT_SPEC, session_timeout_ms=100)


def test_broker_kill_is_a_fault_both_runtimes_accept() -> None:
    from selfhood.chaos.nemesis import build_schedule, final_heal
    from selfhood.chaos.runner import simulate_mode

    spec = with_overrides(DEFAULT_SPEC, nemesis=("broker-kill",), time_limit_s=2.0,
                          modes=("sequential",))
    sched = build_schedule(spec)
    assert [s.f for s in sched][:2] == ["kill-broker", "restart-broker"]
    cut_short = [s for s in sched if s.f == "kill-broker"][:1]
    assert [s.f for s in final_heal(cut_short, 10_000)][-1] == "restart-broker"
    res = simulate_mode(spec, "sequential")
    assert res.stats["broker_kills"] >= 1
    assert any(o.f == "kill-broker" for o in res.history)


def test_the_table_reports_the_failover_gap_of_cluster_runs_only() -> None:
    from selfhood.report.render import failover_lines

    k = Kill("r0", 0, ("i1",), (1,), gap_ms=812.5, by="r1", replayed=40, replayed_from="tail")
    cluster = {"modes": {"sequential": {"failover": gap_summary([k], 1000)}}}
    (line,) = failover_lines(cluster)
    assert "sequential: p50 812.5 ms, p99 812.5 ms over 1/1 kills" in line
    assert "session timeout 1000 ms" in line and "40 events" in line
    assert failover_lines({"modes": {"sequential": {"valid": True}}}) == []


def test_report_puts_projection_fingerprints_next_to_the_replicas() -> None:
    from selfhood.chaos.cluster_world.world import fingerprint_table
    from selfhood.report.render import fingerprint_lines

    reps = {"r0": {"i0": {"fingerprint": "aa" * 32}}, "r1": {"i0": {"fingerprint": "bb" * 32}},
            "r2": {"i0": {"fingerprint": "aa" * 32}}}
    proj = {"fingerprints": {"i0": "aa" * 32}, "command": "selfhood project kafka://x/t"}
    table = fingerprint_table(reps, proj)
    assert table["i0"]["agree"] is False  # r1 differs
    table_ok = fingerprint_table({"r0": reps["r0"]}, proj)
    assert table_ok["i0"]["agree"] is True
    lines = fingerprint_lines({"fingerprints": {"projection": proj, "instances": table}})
    assert "`selfhood project kafka://x/t`" in lines[0]
    assert any(line.startswith("| i0 | aaaaaaaaaaaa | bbbbbbbbbbbb |") and "**no**" in line
               for line in lines)
    assert fingerprint_lines({"valid": True}) == []


def _tiny_timeout_rounds(q: Any, rounds: int) -> None:
    """The interpreter thread's pattern at its worst: a reply taken from a non-empty queue,
    then a wait of ~1 µs for the next (the harness waits until the next due time)."""
    with contextlib.suppress(queue.Empty):
        q.get(timeout=0.001)
    for _ in range(rounds):
        q.put(("reply", None))
        q.get()
        with contextlib.suppress(queue.Empty):
            q.get(timeout=1e-6)


def test_the_world_queue_never_blocks_past_a_tiny_timeout() -> None:
    """CPython 3.11's SimpleQueue.get(timeout) blocks forever when its deadline passes
    between its first lock attempt and the next (it then waits with a negative, i.e.
    unlimited, time): a CI run's interpreter thread hung there with 348 µs to wait. The
    world's queue must come back from 50k such waits (SimpleQueue hung within ~10k here)."""
    import asyncio

    from selfhood.chaos.cluster_world.world import ClusterWorld

    loop = asyncio.new_event_loop()
    try:
        world = ClusterWorld(cast(Any, None), loop)
    finally:
        loop.close()
    worker = threading.Thread(target=_tiny_timeout_rounds, args=(world.q, 50_000),
                              daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "a get(timeout=1e-6) on the world's queue never returned"
