"""The client protocol (pure) and the interpreter over a minimal world."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest

from selfhood.chaos.client import TIMEOUT, ClientSessions, readonly
from selfhood.chaos.generator import MS, NEMESIS, OpRequest, limit, nemesis_and_clients
from selfhood.chaos.interpreter import Interpreter
from selfhood.consistency.replica import UNAVAILABLE, Reply, Request
from selfhood.errors import ChaosError


def _sessions(policy: str = "sticky") -> ClientSessions:
    return ClientSessions(("r0", "r1", "r2"), policy, down_ms=1000, timeout_ns=300 * MS,
                          margin_ns=10 * MS)


def test_readonly_ops_are_the_reads() -> None:
    assert readonly(OpRequest("txn", [["r", "k", None]]))
    assert readonly(OpRequest("probe", {"replica": "r0"}))
    assert not readonly(OpRequest("txn", [["r", "k", None], ["append", "k", 1]]))
    assert not readonly(OpRequest("add-rule", "x"))


def test_request_carries_session_token_and_a_relative_timeout_shorter_than_the_op_timeout() -> None:
    c = _sessions()
    req, timeout_at = c.begin(OpRequest("txn", [["append", "k", 1]], process=0), 5)
    assert timeout_at == 5 + 300 * MS and req.timeout_ns == 290 * MS and req.token is None
    done = c.reply(Reply(req.req_id, "ok", [["append", "k", 1]], token={0: 4}), 7)
    assert done is not None and done.type == "ok"
    req2, _ = c.begin(OpRequest("txn", [["r", "k", None]], process=0), 8)
    assert req2.token == {0: 4} and req2.via == req.via
    # a lower offset never lowers the token; a higher one raises it
    c.reply(Reply(req2.req_id, "ok", [], token={0: 2, 1: 3}), 9)
    assert c.tokens[0] == {0: 4, 1: 3}


def test_unavailable_fails_over_and_a_timeout_is_info_only_for_writes() -> None:
    c = _sessions()
    req, _ = c.begin(OpRequest("txn", [["append", "k", 1]], process=0), 0)
    done = c.reply(Reply(req.req_id, "fail", None, UNAVAILABLE), 1)
    assert done is not None and done.type == "fail"
    nxt, _ = c.begin(OpRequest("txn", [["append", "k", 2]], process=0), 2)
    assert nxt.via != req.via  # the router moved the session
    t = c.timeout(nxt.req_id, 3)
    assert t is not None and (t.type, t.error) == ("info", TIMEOUT)
    assert 0 not in c.tokens  # an indeterminate op ends the session
    assert c.timeout(nxt.req_id, 4) is None  # completed once only
    rd, _ = c.begin(OpRequest("txn", [["r", "k", None]], process=1), 5)
    t2 = c.timeout(rd.req_id, 6)
    assert t2 is not None and t2.type == "fail"
    assert c.reply(Reply(rd.req_id, "ok", []), 7) is None  # a late reply is ignored


def test_probes_need_a_known_replica() -> None:
    with pytest.raises(ChaosError, match="probe needs"):
        _sessions().begin(OpRequest("probe", {"replica": "r9"}, process=0), 0)


class EchoWorld:
    """Replies ok after 1 ms; replicas named in ``silent`` never answer."""

    def __init__(self, silent: frozenset[str] = frozenset()) -> None:
        self.now = 0
        self.silent = silent
        self.q: deque[tuple[int, Any]] = deque()
        self.faults: list[str] = []
        self.interp: Interpreter | None = None

    def send(self, replica: str, request: Request) -> None:
        if replica not in self.silent:
            self.q.append((self.now + MS, Reply(request.req_id, "ok", request.value)))

    def call_at(self, t: int, op: OpRequest) -> None:
        self.q.append((t, op))

    def nemesis(self, op: OpRequest) -> None:
        self.faults.append(op.f)
        assert self.interp is not None
        self.interp.nemesis_done(op, {"done": op.f})

    def step_until(self, wake: int | None) -> None:
        interp = self.interp
        assert interp is not None
        while not interp.interesting:
            nxt = [t for t, _ in self.q] + [t for t, _ in interp.timeouts]
            if not nxt:
                return
            t = min(nxt)
            if wake is not None and t > wake:
                self.now = wake
                return
            self.now = t
            if interp.timeouts and interp.timeouts[0][0] == t:
                interp.on_timeout(interp.timeouts.popleft()[1])
                continue
            i = next(i for i, (u, _) in enumerate(self.q) if u == t)
            _, item = self.q[i]
            del self.q[i]
            if isinstance(item, Reply):
                interp.on_reply(item)
            else:
                interp.invoke_scheduled(item)


def _run(world: EchoWorld, n: int) -> list[Any]:
    cs = ClientSessions(("r0", "r1"), "round-robin", down_ms=1000, timeout_ns=300 * MS,
                        margin_ns=MS)
    interp = Interpreter(world, cs, concurrency=2, rng=random.Random(1))
    world.interp = interp
    gen = nemesis_and_clients(
        [OpRequest("partition", {"pattern": "halves"}, process=NEMESIS, time=2 * MS)],
        limit(n, lambda ctx: OpRequest("txn", [["append", "k", ctx.time]])))
    return interp.run(gen)


def test_interpreter_records_invoke_and_completion_pairs_and_nemesis_ops() -> None:
    w = EchoWorld()
    h = _run(w, 6)
    assert [o.index for o in h] == list(range(len(h)))
    client = [o for o in h if o.process != NEMESIS]
    assert [o.type for o in client].count("invoke") == 6
    assert [o.type for o in client].count("ok") == 6
    nem = [o for o in h if o.process == NEMESIS]
    assert [(o.type, o.f) for o in nem] == [("info", "partition")] * 2 and w.faults == ["partition"]
    assert nem[1].value == {"done": "partition"}


def test_interpreter_times_out_silent_replicas_as_info_and_retires_the_process() -> None:
    h = _run(EchoWorld(silent=frozenset({"r0", "r1"})), 3)
    done = [o for o in h if o.process != NEMESIS and o.type != "invoke"]
    assert done and all(o.type == "info" and o.error == TIMEOUT for o in done)
    # an info op's process is never reused: each new op has a new process
    procs = [o.process for o in h if o.process != NEMESIS and o.type == "invoke"]
    assert len(set(procs)) == len(procs)
