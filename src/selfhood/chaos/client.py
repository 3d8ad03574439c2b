"""The client side of the replica protocol (pure): routing, session tokens, failover, timeouts.

Every world (the simulator, the cluster of replica processes) runs the same
client logic, so a verdict cannot differ between them because their clients
did. A `ClientSessions` turns an op into a `Request` for a replica and a
replica's `Reply` (or the op's timeout) into the completion to record:

- **routing**: the `Router` picks the replica; probes and final reads name
  their replica themselves;
- **session tokens**: each client process keeps the highest offset per
  partition any reply showed it and sends it with its next request
  (read-your-writes across replicas); a crashed process starts a new session;
- **failover**: a reply ``fail``/``unavailable`` or a timeout marks the
  replica down in the router, so the process's next op goes elsewhere; any
  other reply marks it up again;
- **timeouts**: an op times out ``timeout_ns`` after its invoke; the replica
  gets a relative deadline ``margin_ns`` shorter, so it answers before the
  client gives up. A timed-out op is ``info`` when it could have written
  (the effect may have happened) and ``fail`` when it only reads.

Nothing here reads a clock: every call takes ``now`` (ns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from selfhood.chaos.generator import OpRequest
from selfhood.consistency.replica import UNAVAILABLE, Reply, Request, Token
from selfhood.consistency.router import Router
from selfhood.errors import ChaosError

#: ops sent to the replica named in their value, not routed
UNROUTED: Final = frozenset({"probe", "final-read"})
#: the error a timed-out op completes with
TIMEOUT: Final = "timeout"


def readonly(req: OpRequest) -> bool:
    """True if the op cannot have written (so a timeout may record it ``fail``)."""
    f = req.f
    if f in ("read-rules", "probe", "final-read"):
        return True
    if f == "txn" and isinstance(req.value, list):
        return all(m[0] == "r" for m in req.value)
    return False


#: a client op sent and not yet completed: its request, the replica it went to, and
#: whether the router chose that replica (a plain tuple: one is made per client op)
OpenOp = tuple[OpRequest, str, bool]


class Completion(NamedTuple):
    """What to record for a completed op. Built with ``tuple.__new__`` (`_new_tuple`):
    the namedtuple's own constructor is a Python function, and one is made per op."""

    req: OpRequest
    replica: str
    type: str
    value: Any
    error: Any
    extra: dict[str, Any] | None


_new_tuple: Final = tuple.__new__


class ClientSessions:
    """The open ops, sessions and router of every client process in one run."""

    def __init__(self, replicas: Sequence[str], policy: str, *, down_ms: int,
                 timeout_ns: int, margin_ns: int) -> None:
        self.replicas = tuple(replicas)
        self.router = Router(self.replicas, policy, down_ms=down_ms)
        self.timeout_ns = timeout_ns
        self.request_timeout_ns = timeout_ns - margin_ns
        self.tokens: dict[Any, Token] = {}
        self.open: dict[int, OpenOp] = {}
        self.next_req = 0
        self.timeouts = 0

    def begin(self, o: OpRequest, now: int) -> tuple[Request, int]:
        """The request for client op ``o`` and the time it times out at."""
        process = o.process
        f = o.f
        routed = f not in UNROUTED
        if routed:
            router = self.router
            replica = router.pick(process, now)
            router.outstanding[replica] += 1  # router.started(replica)
        else:
            v = o.value
            target = v.get("replica") if isinstance(v, dict) else None
            if not isinstance(target, str) or target not in self.replicas:
                raise ChaosError(f"{f} needs value {{'replica': one of {self.replicas}}}, "
                                 f"got {v!r}")
            replica = target
        self.next_req = rid = self.next_req + 1
        self.open[rid] = (o, replica, routed)
        req = Request(rid, f, o.value, o.instance, self.tokens.get(process),
                      self.request_timeout_ns, replica)
        return req, now + self.timeout_ns

    def reply(self, reply: Reply, now: int) -> Completion | None:
        """The completion a reply gives, or None if its op already completed."""
        rid = reply.req_id
        op = self.open.pop(rid, None)
        if op is None:
            return None  # the client already timed out
        o, replica, routed = op
        typ = reply.type
        if routed:
            router = self.router
            if typ == "fail" and reply.error == UNAVAILABLE:
                router.mark_down(replica, now)
            elif router.down_until[replica] != -1:
                router.mark_up(replica)
            router.outstanding[replica] -= 1  # router.finished(replica)
        token = reply.token
        process = o.process
        if typ == "info":
            # the process is presumed crashed: its successor starts a new session
            self.tokens.pop(process, None)
        elif token:
            # copy on write: requests in flight hold the old token dict
            tokens = self.tokens
            cur = tokens.get(process)
            if cur is None:
                tokens[process] = {p: n for p, n in token.items() if n > 0}
            else:
                tok = None
                for p, n in token.items():
                    if (cur if tok is None else tok).get(p, 0) < n:
                        if tok is None:
                            tok = dict(cur)
                        tok[p] = n
                if tok is not None:
                    tokens[process] = tok
        return _new_tuple(Completion, (o, replica, typ, reply.value if typ == "ok" else o.value,
                                       reply.error, reply.extra))

    def timeout(self, rid: int, now: int) -> Completion | None:
        """The completion of op ``rid`` timing out, or None if it already completed."""
        op = self.open.pop(rid, None)
        if op is None:
            return None
        o, replica, routed = op
        self.timeouts += 1
        if routed:
            self.router.mark_down(replica, now)
            self.router.finished(replica)
        typ = "fail" if readonly(o) else "info"
        if typ == "info":
            # the process is presumed crashed: its successor starts a new session
            self.tokens.pop(o.process, None)
        return _new_tuple(Completion, (o, replica, typ, o.value, TIMEOUT, None))
