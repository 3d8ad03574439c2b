"""The deterministic simulator: one process, a seeded scheduler and a virtual clock.

It drives the sans-IO replica core (`selfhood.consistency.replica`) with a
simulated world:

- **scheduler**: a heap of (virtual ns, sequence number, message); nothing
  reads the wall clock, nothing iterates a set, and every random draw comes
  from generators seeded from the run's seed, so the same seed, config and
  generator give a byte-identical history;
- **network**: one-way delay drawn uniformly from a range, message loss, and
  partitions as a set of cut (src, dst) links between any nodes (replicas
  and ``"log"``). Clients and the router sit outside the partitioned network,
  as in Jepsen; they still see crashed and paused replicas;
- **log service** (node ``"log"``): one append-only list per partition,
  idempotent by event id (a retried append returns the first position);
- **faults**: crash (memory and in-flight messages lost; the local disk, an
  eventual replica's durable outbox, kept) / restart (a fresh replica
  rehydrates from the log plus its disk), pause (messages queue, timers stop) /
  resume (the zombie processes its backlog), per-replica clock skew, and
  rebalance (the coordinator moves every partition);
- **interpreter**: asks the harness's generator for ops, routes client ops
  through the router, executes nemesis ops, enforces op timeouts and records
  the history (`checkers.history.Op`, dense indices, time in virtual ns).

Completion conventions: a client op that times out is ``info`` if it could
have written and ``fail`` if it only reads; nemesis ops are recorded as an
``info`` invoke and an ``info`` completion (as Jepsen does).
"""

from __future__ import annotations

import gc
import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from itertools import filterfalse
from types import MemberDescriptorType
from typing import Any, Final

from selfhood.chaos.generator import (
    NEMESIS,
    Context,
    Generator,
    OpRequest,
    Pending,
    _drop_nemesis,
)
from selfhood.checkers.history import Op
from selfhood.consistency.model import ModelPort
from selfhood.consistency.ownership import Coordinator, Grant
from selfhood.consistency.replica import (
    MODES,
    UNAVAILABLE,
    Append,
    AppendAck,
    Forward,
    Output,
    Poll,
    Records,
    Replica,
    ReplicaConfig,
    Reply,
    Request,
    Token,
)
from selfhood.consistency.router import POLICIES, Router
from selfhood.errors import ChaosError
from selfhood.events import Event
from selfhood.spec import LOG_NODE as LOG
from selfhood.spec import PARTITION_PATTERNS as PATTERNS

MS: Final = 1_000_000
CLIENT: Final = "client"

# message kinds on the heap
(_TICK, _REQ, _RECS, _ACK, _GRANT, _APPEND, _POLL, _REPLY, _INVOKE, _WAKE,
 _COORD) = range(11)
_TO_REPLICA: Final = frozenset({_TICK, _REQ, _RECS, _ACK, _GRANT})
assert max(_TO_REPLICA) == _GRANT < min(_POLL, _APPEND, _REPLY, _INVOKE, _WAKE, _COORD)


def _plain_slots(cls: type, names: tuple[str, ...]) -> bool:
    """True if ``cls`` is a dataclass whose fields are exactly ``names``, each a plain slot."""
    return (tuple(f.name for f in fields(cls)) == names
            and not hasattr(cls, "__post_init__")
            and all(isinstance(cls.__dict__.get(n), MemberDescriptorType) for n in names))


# The simulator makes two history ops and two generator contexts per client op.
# Both are frozen, slotted dataclasses, whose __init__ goes through
# object.__setattr__ once per field; filling the slots directly makes the same
# object (same class, same values) in about half the time. Used only while the
# classes have exactly these fields (else the plain constructors).
_OP_FIELDS: Final = ("index", "type", "process", "f", "value", "time", "node", "instance",
                     "error", "extra")
_CTX_FIELDS: Final = ("time", "free_processes", "all_processes", "rng", "_clients")

if _plain_slots(Op, _OP_FIELDS):
    (_o_index, _o_type, _o_process, _o_f, _o_value, _o_time, _o_node, _o_instance, _o_error,
     _o_extra) = (Op.__dict__[n].__set__ for n in _OP_FIELDS)

    def _op(index: int, type_: str, process: Any, f: str, value: Any, time: int,
            node: str | None = None, instance: str | None = None, error: Any = None,
            extra: dict[str, Any] | None = None) -> Op:
        o: Op = object.__new__(Op)
        _o_index(o, index)
        _o_type(o, type_)
        _o_process(o, process)
        _o_f(o, f)
        _o_value(o, value)
        _o_time(o, time)
        _o_node(o, node)
        _o_instance(o, instance)
        _o_error(o, error)
        _o_extra(o, {} if extra is None else extra)
        return o
else:  # pragma: no cover - only if checkers.history.Op changes shape
    def _op(index: int, type_: str, process: Any, f: str, value: Any, time: int,
            node: str | None = None, instance: str | None = None, error: Any = None,
            extra: dict[str, Any] | None = None) -> Op:
        return Op(index, type_, process, f, value, time, node, instance,  # type: ignore[arg-type]
                  error, {} if extra is None else extra)

if _plain_slots(Context, _CTX_FIELDS):
    _c_time, _c_free, _c_all, _c_rng, _c_clients = (Context.__dict__[n].__set__
                                                    for n in _CTX_FIELDS)

    def _context(time: int, free: tuple[Any, ...], procs: tuple[Any, ...],
                 rng: random.Random) -> Context:
        c: Context = object.__new__(Context)
        _c_time(c, time)
        _c_free(c, free)
        _c_all(c, procs)
        _c_rng(c, rng)
        _c_clients(c, None)
        return c

    def _context_pair(time: int, free: tuple[Any, ...], procs: tuple[Any, ...],
                      rng: random.Random, cfree: tuple[Any, ...],
                      cprocs: tuple[Any, ...]) -> Context:
        """A context with its `clients_only()` memo filled in (``cfree``/``cprocs``
        are ``free``/``procs`` without the nemesis): every client generator asks
        for that view, and building it here skips a method call and a dataclass
        ``__init__`` per context."""
        c = _context(time, free, procs, rng)
        _c_clients(c, _context(time, cfree, cprocs, rng))
        return c
else:  # pragma: no cover - only if generator.Context changes shape
    def _context(time: int, free: tuple[Any, ...], procs: tuple[Any, ...],
                 rng: random.Random) -> Context:
        return Context(time, free, procs, rng)

    def _context_pair(time: int, free: tuple[Any, ...], procs: tuple[Any, ...],
                      rng: random.Random, cfree: tuple[Any, ...],
                      cprocs: tuple[Any, ...]) -> Context:
        return Context(time, free, procs, rng)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The simulated deployment (plain data; harness builds it from the spec)."""

    mode: str = "sequential"
    replicas: int = 3
    shards: int = 2
    instances: tuple[str, ...] = ("i0",)
    sharded_memory: bool = False
    atomic_memory: bool = True
    fencing: bool = True
    router: str = "sticky"
    concurrency: int = 6
    delay_ms_min: float = 0.5
    delay_ms_max: float = 3.0
    loss: float = 0.0
    op_timeout_ms: int = 300
    poll_ms: int = 10
    lease_ms: int = 150
    down_ms: int = 1000
    session_ms: int = 200
    outbox_ms: int = 50

    @property
    def replica_names(self) -> tuple[str, ...]:
        return tuple(f"r{i}" for i in range(self.replicas))

    def validate(self) -> None:
        """Raise ChaosError naming the first bad field."""
        if self.mode not in MODES:
            raise ChaosError(f"SimConfig.mode: {self.mode!r} is not one of {MODES}")
        if self.router not in POLICIES:
            raise ChaosError(f"SimConfig.router: {self.router!r} is not one of {POLICIES}")
        for name in ("replicas", "shards", "concurrency", "op_timeout_ms", "poll_ms",
                     "session_ms"):
            if getattr(self, name) < 1:
                raise ChaosError(f"SimConfig.{name} must be >= 1")
        if not self.instances:
            raise ChaosError("SimConfig.instances must not be empty")
        if not 0 <= self.delay_ms_min <= self.delay_ms_max:
            raise ChaosError("SimConfig.delay_ms_min/max: need 0 <= min <= max")
        if not 0.0 <= self.loss < 1.0:
            raise ChaosError("SimConfig.loss must be in [0, 1)")
        if self.session_ms <= self.poll_ms:
            raise ChaosError("SimConfig.session_ms must exceed poll_ms (heartbeats are polls)")
        if self.replicas > 256:
            raise ChaosError("SimConfig.replicas must be <= 256 (event ids carry 8 bits of it)")


@dataclass(slots=True)
class SimResult:
    """What a run produced: the history, each live replica's final view, counters."""

    history: list[Op]
    final_states: dict[str, dict[str, dict[str, Any]]]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Open:
    process: Any
    req: OpRequest
    replica: str
    routed: bool


def _readonly(req: OpRequest) -> bool:
    f = req.f
    if f in ("read-rules", "probe", "final-read"):
        return True
    if f == "txn" and isinstance(req.value, list):
        return all(m[0] == "r" for m in req.value)
    return False


class Simulation:
    """One simulated run; `run_simulation` is the public entry point."""

    def __init__(self, config: SimConfig, seed: int, *, model: ModelPort | None = None) -> None:
        config.validate()
        self.cfg = config
        self.seed = seed
        self.gen_rng = random.Random(seed)
        self.net_rng = random.Random(seed * 7919 + 1)
        self.nem_rng = random.Random(seed * 104729 + 2)
        self.model = model
        self.names = config.replica_names
        self.nodes = (*self.names, LOG)
        self.rcfg = ReplicaConfig(mode=config.mode, shards=config.shards,
                                  sharded_memory=config.sharded_memory,
                                  atomic_memory=config.atomic_memory, fencing=config.fencing,
                                  lease_ms=config.lease_ms, outbox_ms=config.outbox_ms,
                                  read_wait_ms=config.op_timeout_ms)
        self.now = 0
        self.heap: list[tuple[int, int, int, str, Any, int]] = []
        self.seq = 0
        self.dmin = int(config.delay_ms_min * MS)
        self.dmax = max(self.dmin, int(config.delay_ms_max * MS))
        self.dspan = self.dmax - self.dmin + 1
        self.loss = config.loss
        self.blocked: set[tuple[str, str]] = set()
        self.incarnation: dict[str, int] = dict.fromkeys(self.names, 0)
        self.replicas: dict[str, Replica | None] = {}
        # a crashed replica's local disk: its durable outbox (eventual), until restart
        self.disks: dict[str, list[tuple[int, Event]]] = {}
        self.paused: dict[str, list[tuple[int, Any]] | None] = dict.fromkeys(self.names)
        self.skew_ns: dict[str, int] = dict.fromkeys(self.names, 0)
        self.logs: list[list[Event]] = [[] for _ in range(config.shards)]
        self.log_ids: dict[str, tuple[int, int]] = {}
        self.router = Router(self.names, config.router, down_ms=config.down_ms)
        self.coord = Coordinator(self.names, config.instances, config.shards)
        self.sequential = config.mode != "eventual"
        # interpreter
        self.history: list[Op] = []
        self.procs: list[Any] = [*range(config.concurrency), NEMESIS]
        self._procs_t: tuple[Any, ...] = tuple(self.procs)
        self.busy: set[Any] = set()
        self._pv = 0  # bumped whenever busy/procs change (invalidates the cached Context)
        self._ctx_cache: Context | None = None
        # `_procs_t` without the nemesis (for the clients' view), and the tuple it is of
        self._cprocs_of: tuple[Any, ...] | None = None
        self._cprocs: tuple[Any, ...] = ()
        self._ctx_pv = -1
        self.open: dict[int, _Open] = {}
        self.timeouts: deque[tuple[int, int]] = deque()
        self.tokens: dict[Any, Token] = {}
        self.next_req = 0
        self.scheduled_invokes = 0
        self.interesting = False
        self.gen: Generator | None = None
        self.stats: dict[str, int] = {"messages": 0, "dropped": 0, "timeouts": 0,
                                      "crashes": 0, "restarts": 0, "pauses": 0,
                                      "grants": 0, "failovers_ownership": 0}
        # the two hot counters live in attributes (stats["messages"/"dropped"] at the end)
        self.n_messages = 0
        self.n_dropped = 0
        self.dead_stats: dict[str, int] = {}
        self.timeout_ns = config.op_timeout_ms * MS
        self.poll_ns = config.poll_ms * MS
        for i, name in enumerate(self.names):
            self.replicas[name] = self._new_replica(name)
            self._push(self.poll_ns * (i + 1) // len(self.names), _TICK, name, None)
        self.last_heartbeat: dict[str, int] = dict.fromkeys(self.names, 0)
        self.session_ns = config.session_ms * MS
        if self.sequential:
            for g in self.coord.initial_grants():
                for name in self.names:
                    self._on_replica(name, _GRANT, g)
            self._push(self.session_ns // 4, _COORD, LOG, None)

    # -- plumbing ------------------------------------------------------------------

    def _new_replica(self, name: str) -> Replica:
        idx = self.names.index(name)
        inc = self.incarnation[name]
        # The UUID's version nibble overwrites bits 12-15 of the seed half (see
        # `events.event_id_from`), so those bits must carry nothing: with
        # ``idx << 10`` replicas r0 and r4 minted the same ids, the log dropped
        # one replica's events as duplicates and eventual mode never converged.
        id_seed = (((self.seed & 0xFFFFFFFFFF) << 24) | ((idx & 0xFF) << 16)
                   | (inc & 0xFFF))
        r = Replica(name, self.rcfg, self.cfg.instances, id_seed=id_seed, model=self.model)
        r.clock_offset_ns = self.skew_ns[name]
        r.log_contact = self.now
        return r

    def _push(self, t: int, kind: int, dst: str, payload: Any) -> None:
        self.seq += 1
        inc = self.incarnation.get(dst, 0)
        heapq.heappush(self.heap, (t, self.seq, kind, dst, payload, inc))

    def _send(self, src: str, dst: str, kind: int, payload: Any) -> None:
        self.n_messages += 1
        if self.blocked and (src, dst) in self.blocked:
            self.n_dropped += 1
            return
        rng = self.net_rng
        if self.loss and rng.random() < self.loss:
            self.n_dropped += 1
            return
        d = self.dmin + int(rng.random() * self.dspan)
        self.seq += 1
        heapq.heappush(self.heap, (self.now + d, self.seq, kind, dst, payload,
                                   self.incarnation.get(dst, 0)))

    def _emit(self, src: str, outs: list[Output]) -> None:
        """`_send` each output (inlined: the same checks and rng draws, in order)."""
        blocked = self.blocked
        rng = self.net_rng
        loss = self.loss
        heap = self.heap
        incarnation = self.incarnation
        for o in outs:
            t = type(o)
            payload: Any
            if t is Reply:
                dst, kind, payload = CLIENT, _REPLY, (src, o)
            elif t is Poll:
                dst, kind, payload = LOG, _POLL, (src, o)
            elif t is Append:
                dst, kind, payload = LOG, _APPEND, (src, o)
            else:
                assert isinstance(o, Forward)
                dst, kind, payload = o.to, _REQ, o.request
            self.n_messages += 1
            if blocked and (src, dst) in blocked:
                self.n_dropped += 1
                continue
            if loss and rng.random() < loss:
                self.n_dropped += 1
                continue
            d = self.dmin + int(rng.random() * self.dspan)
            self.seq += 1
            heapq.heappush(heap, (self.now + d, self.seq, kind, dst, payload,
                                  incarnation.get(dst, 0)))

    def _on_replica(self, name: str, kind: int, payload: Any) -> None:
        r = self.replicas[name]
        if r is None:
            return
        q = self.paused[name]
        if q is not None:
            if kind != _TICK:
                q.append((kind, payload))
            return
        now = self.now
        if kind == _RECS:
            outs = r.on_records(payload, now)
        elif kind == _REQ:
            outs = r.on_request(payload, now)
        elif kind == _ACK:
            outs = r.on_append_ack(payload, now)
        elif kind == _TICK:
            outs = r.on_tick(now)
        else:
            outs = r.on_grant(payload, now)
        if outs:
            self._emit(name, outs)

    # -- the log service ---------------------------------------------------------------

    def _chunks(self, from_offsets: Sequence[tuple[int, int]]
                ) -> list[tuple[int, int, list[Event]]]:
        out = []
        limit = self.rcfg.poll_limit
        for p, s in from_offsets:
            log = self.logs[p]
            if s < len(log):
                out.append((p, s, log[s:s + limit]))
        return out

    def _coordinate(self) -> None:
        """The coordinator beside the log (Kafka's group coordinator, in effect).

        A replica whose polls (heartbeats) stopped for ``session_ms`` -- it
        crashed, is paused, or is cut off from the log -- loses its partitions
        to live replicas. Current grants are re-sent every round, so a lost
        grant or claim is retried.
        """
        now = self.now
        live = [r for r in self.names if now - self.last_heartbeat[r] <= self.session_ns]
        if live:
            for r in self.names:
                if r not in live and r in self.coord.part_owner.values():
                    self.stats["failovers_ownership"] += 1
                    self.stats["grants"] += len(self.coord.fail_over(r, live))
        for inst in self.cfg.instances:
            owner = self.coord.owner_of(inst)
            g = Grant(inst, self.coord.home[inst], owner, self.coord.epoch_of(inst))
            self._send(LOG, owner, _GRANT, g)
        self._push(now + self.session_ns // 4, _COORD, LOG, None)

    def _log_append(self, src: str, a: Append) -> None:
        self.last_heartbeat[src] = self.now
        positions = []
        ids = self.log_ids
        for p, ev in a.entries:
            pos = ids.get(ev.event_id)
            if pos is None:
                log = self.logs[p]
                pos = ids[ev.event_id] = (p, len(log))
                log.append(ev)
            positions.append(pos)
        recs = Records(self._chunks(list(a.from_offsets.items())))
        self._send(LOG, src, _ACK, AppendAck(a.batch_id, positions, recs))

    def _log_poll(self, src: str, p: Poll) -> None:
        self.last_heartbeat[src] = self.now
        chunks = self._chunks(list(enumerate(p.from_offsets)))
        ends = [len(log) for log in self.logs] if p.barrier_id is not None else None
        self._send(LOG, src, _RECS, Records(chunks, ends, p.barrier_id))

    # -- clients ------------------------------------------------------------------------

    def _record(self, op: Op) -> None:
        self.history.append(op)
        if self.gen is not None:
            self.gen = self.gen.update(self._ctx(), op)
        self.interesting = True

    def _ctx(self) -> Context:
        """The generator's view; rebuilt only when time or the free processes changed."""
        c = self._ctx_cache
        if c is not None and c.time == self.now and self._ctx_pv == self._pv:
            return c
        busy = self.busy
        procs = self._procs_t
        if procs is not self._cprocs_of:
            self._cprocs_of, self._cprocs = procs, _drop_nemesis(procs)
        free = tuple(filterfalse(busy.__contains__, procs)) if busy else procs
        cprocs = self._cprocs
        if cprocs is procs:  # no nemesis: the context is its own clients' view
            c = _context(self.now, free, procs, self.gen_rng)
        else:
            c = _context_pair(self.now, free, procs, self.gen_rng,
                              _drop_nemesis(free) if busy else cprocs, cprocs)
        self._ctx_cache, self._ctx_pv = c, self._pv
        return c

    def _invoke(self, o: OpRequest) -> None:
        process = o.process
        now = self.now
        if process == NEMESIS:
            self._record(_op(len(self.history), "info", NEMESIS, o.f, o.value, now))
            value = self._nemesis(o)
            self.busy.discard(NEMESIS)
            self._pv += 1
            self._record(_op(len(self.history), "info", NEMESIS, o.f, value, self.now))
            return
        routed = o.f not in ("probe", "final-read")
        if routed:
            replica = self.router.pick(process, now)
        else:
            v = o.value
            target = v.get("replica") if isinstance(v, dict) else None
            if not isinstance(target, str) or target not in self.incarnation:
                raise ChaosError(f"{o.f} needs value {{'replica': one of {self.names}}}, "
                                 f"got {v!r}")
            replica = target
        self.next_req += 1
        rid = self.next_req
        self.open[rid] = _Open(process, o, replica, routed)
        if routed:
            self.router.started(replica)
        self._record(_op(len(self.history), "invoke", process, o.f, o.value, now, replica,
                        o.instance))
        req = Request(rid, o.f, o.value, o.instance, self.tokens.get(process),
                      now + self.timeout_ns - self.poll_ns, replica)
        self._send(CLIENT, replica, _REQ, req)
        self.timeouts.append((now + self.timeout_ns, rid))

    def _complete(self, rid: int, typ: str, value: Any, error: Any,
                  extra: dict[str, Any] | None) -> None:
        op = self.open.pop(rid)
        process = op.process
        if op.routed:
            self.router.finished(op.replica)
        self.busy.discard(process)
        self._pv += 1
        if typ == "info":
            i = self.procs.index(process)
            self.procs[i] = process + self.cfg.concurrency
            self._procs_t = tuple(self.procs)
            self.tokens.pop(process, None)
        self._record(_op(len(self.history), typ, process, op.req.f, value,
                        self.now, op.replica, op.req.instance, error, extra or {}))

    def _on_reply(self, src: str, reply: Reply) -> None:
        op = self.open.get(reply.req_id)
        if op is None:
            return  # the client already timed out
        if op.routed:
            if reply.type == "fail" and reply.error == UNAVAILABLE:
                self._failover(op.replica)
            else:
                self.router.mark_up(op.replica)
        if reply.token:
            # copy on write: requests in flight hold the old token dict
            cur = self.tokens.get(op.process)
            tok = None
            for p, o in reply.token.items():
                if (tok if tok is not None else cur or {}).get(p, 0) < o:
                    if tok is None:
                        tok = dict(cur or {})
                    tok[p] = o
            if tok is not None:
                self.tokens[op.process] = tok
            elif cur is None:
                self.tokens[op.process] = {}
        value = reply.value if reply.type == "ok" else op.req.value
        self._complete(reply.req_id, reply.type, value, reply.error, reply.extra)

    def _on_timeout(self, rid: int) -> None:
        op = self.open.get(rid)
        if op is None:
            return
        self.stats["timeouts"] += 1
        if op.routed:
            self._failover(op.replica)
        self._complete(rid, "fail" if _readonly(op.req) else "info", op.req.value, "timeout",
                       None)

    def _failover(self, replica: str) -> None:
        """Client-side failover: the router avoids the replica for a while.

        Ownership moves separately, when the coordinator misses heartbeats.
        """
        self.router.mark_down(replica, self.now)

    def _live(self) -> list[str]:
        return [r for r in self.names if self.now - self.last_heartbeat[r] <= self.session_ns]

    def _grant(self, grants: list[Grant]) -> None:
        for g in grants:
            self.stats["grants"] += 1
            self._send(LOG, g.owner, _GRANT, g)

    # -- nemesis ---------------------------------------------------------------------------

    def _replica_arg(self, o: OpRequest) -> str:
        v = o.value
        if isinstance(v, dict):
            v = v.get("replica", v.get("node"))
        if v not in self.incarnation:
            raise ChaosError(f"nemesis {o.f}: unknown replica {o.value!r}; "
                             f"replicas are {list(self.names)}")
        return str(v)

    def _nemesis(self, o: OpRequest) -> Any:
        f = o.f
        if f == "partition":
            cut = self._partition(o.value)
            self.blocked = cut
            return {**(o.value if isinstance(o.value, dict) else {}),
                    "cut": sorted([a, b] for a, b in cut if a < b)}
        if f == "heal":
            self.blocked = set()
            return o.value
        if f == "crash":
            r = self._replica_arg(o)
            old = self.replicas[r]
            if old is not None:
                self.stats["crashes"] += 1
                for k, v in old.stats.items():
                    self.dead_stats[k] = self.dead_stats.get(k, 0) + v
                # the durable outbox survives on the replica's local disk
                self.disks[r] = old.durable_outbox()
                self.replicas[r] = None
                self.paused[r] = None
                self.incarnation[r] += 1
            return o.value
        if f == "restart":
            r = self._replica_arg(o)
            if self.replicas[r] is None:
                self.stats["restarts"] += 1
                self.replicas[r] = fresh = self._new_replica(r)
                fresh.recover(self.disks.pop(r, []), self.now)
                self._push(self.now + self.poll_ns, _TICK, r, None)
                if self.sequential:
                    for inst in self.cfg.instances:
                        g = Grant(inst, self.coord.home[inst], self.coord.owner_of(inst),
                                  self.coord.epoch_of(inst))
                        self._on_replica(r, _GRANT, g)
            return o.value
        if f == "pause":
            r = self._replica_arg(o)
            if self.replicas[r] is not None and self.paused[r] is None:
                self.stats["pauses"] += 1
                self.paused[r] = []
            return o.value
        if f == "resume":
            r = self._replica_arg(o)
            q = self.paused[r]
            if q is not None:
                self.paused[r] = None
                for kind, payload in q:
                    self._on_replica(r, kind, payload)
            return o.value
        if f == "skew":
            if not isinstance(o.value, dict):
                raise ChaosError(f"nemesis skew: value must be {{replica: offset_ms}}, "
                                 f"got {o.value!r}")
            for name, ms in o.value.items():
                if name not in self.incarnation:
                    raise ChaosError(f"nemesis skew: unknown replica {name!r}")
                self.skew_ns[name] = int(ms * MS)
                rep = self.replicas[name]
                if rep is not None:
                    rep.clock_offset_ns = self.skew_ns[name]
            return o.value
        if f == "unskew":
            for name in self.names:
                self.skew_ns[name] = 0
                rep = self.replicas[name]
                if rep is not None:
                    rep.clock_offset_ns = 0
            return o.value
        if f == "rebalance":
            if self.sequential:
                self._grant(self.coord.rebalance(self._live() or list(self.names)))
            return o.value
        raise ChaosError(f"unknown nemesis op {f!r}")

    def _partition(self, value: Any) -> set[tuple[str, str]]:
        """The set of cut links (both directions) for a partition op."""
        nodes = list(self.nodes)
        if not isinstance(value, dict):
            raise ChaosError(f"nemesis partition: value must be a dict, got {value!r}")
        cut: set[tuple[str, str]] = set()
        if "groups" in value:
            # two nodes can talk iff some group holds both (groups may overlap:
            # a bridge node sits in both halves, a ring is a list of links)
            allowed: set[tuple[str, str]] = set()
            for gi, g in enumerate(value["groups"]):
                for n in g:
                    if n not in nodes:
                        raise ChaosError(f"nemesis partition: unknown node {n!r} in group {gi}")
                allowed.update((a, b) for a in g for b in g)
            return {(a, b) for a in nodes for b in nodes if a != b and (a, b) not in allowed}
        pattern = value.get("pattern")
        rng = self.nem_rng
        order = list(nodes)
        rng.shuffle(order)
        n = len(order)
        if pattern == "halves":
            a_side = set(order[: n // 2])
            sides = {x: (x in a_side) for x in nodes}

            def ok(a: str, b: str) -> bool:
                return sides[a] == sides[b]
        elif pattern == "isolate":
            lone = value.get("node") or order[0]
            if lone not in nodes:
                raise ChaosError(f"nemesis partition: unknown node {lone!r}")

            def ok(a: str, b: str) -> bool:
                return (a == lone) == (b == lone)
        elif pattern == "majority-ring":
            pos = {x: i for i, x in enumerate(order)}
            reach = (n // 2 + 1) // 2

            def ok(a: str, b: str) -> bool:
                d = abs(pos[a] - pos[b])
                return min(d, n - d) <= reach
        elif pattern == "bridge":
            half = n // 2
            left, bridge_node = set(order[:half]), order[half]

            def ok(a: str, b: str) -> bool:
                if a == bridge_node or b == bridge_node:
                    return True
                return (a in left) == (b in left)
        else:
            raise ChaosError(f"nemesis partition: unknown pattern {pattern!r}; "
                             f"expected one of {PATTERNS} or 'groups'")
        for a in nodes:
            for b in nodes:
                if a != b and not ok(a, b):
                    cut.add((a, b))
        return cut

    # -- the scheduler ---------------------------------------------------------------------

    def _dispatch(self, kind: int, payload: Any) -> None:
        """The rare kinds; `_step_until` delivers replica messages, replies and log calls."""
        if kind == _INVOKE:
            self.scheduled_invokes -= 1
            self._invoke(payload)
        elif kind == _COORD:
            self._coordinate()
        else:
            self.interesting = True  # a generator wake-up

    def _step_until(self, wake: int | None) -> None:
        """Run events until something the generator should see happens (or ``wake``)."""
        heap = self.heap
        pop = heapq.heappop
        self.interesting = False
        tq = self.timeouts
        opened = self.open
        incarnation = self.incarnation
        replicas = self.replicas
        paused = self.paused
        while heap or tq:
            t = heap[0][0] if heap else tq[-1][0] + 1
            if tq and tq[0][0] <= t:
                # op timeouts: one deadline per op, in invoke order (so a FIFO, not the heap)
                deadline, rid = tq[0]
                if rid not in opened:
                    tq.popleft()
                    continue
                if wake is not None and deadline > wake:
                    self.now = max(self.now, wake)
                    return
                tq.popleft()
                self.now = deadline
                self._on_timeout(rid)
                if self.interesting:
                    return
                continue
            if wake is not None and t > wake:
                self.now = max(self.now, wake)
                return
            _, _, kind, dst, payload, inc = pop(heap)
            self.now = t
            # the frequent kinds handled here (`_on_replica` inlined), the rest in `_dispatch`
            if kind <= _GRANT:  # to a replica
                if inc != incarnation[dst]:
                    continue  # sent to an incarnation that crashed
                r = replicas[dst]
                if r is None:
                    continue
                if kind == _TICK:
                    self._push(t + self.poll_ns, _TICK, dst, None)
                q = paused[dst]
                if q is not None:
                    if kind != _TICK:
                        q.append((kind, payload))
                    continue
                if kind == _RECS:
                    outs = r.on_records(payload, t)
                elif kind == _REQ:
                    outs = r.on_request(payload, t)
                elif kind == _ACK:
                    outs = r.on_append_ack(payload, t)
                elif kind == _TICK:
                    outs = r.on_tick(t)
                else:
                    outs = r.on_grant(payload, t)
                if outs:
                    self._emit(dst, outs)
            elif kind == _REPLY:
                self._on_reply(payload[0], payload[1])
            elif kind == _APPEND:
                self._log_append(payload[0], payload[1])
            elif kind == _POLL:
                self._log_poll(payload[0], payload[1])
            else:
                self._dispatch(kind, payload)
            if self.interesting:
                return

    def run(self, generator: Generator, *, time_limit_s: float | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> SimResult:
        self.gen = generator
        limit_ns = None if time_limit_s is None else int(time_limit_s * 1e9)
        last_progress = 0
        while True:
            if limit_ns is not None and self.now >= limit_ns:
                break
            assert self.gen is not None
            r = self.gen.op(self._ctx())
            if r is None:
                break
            o, self.gen = r
            if isinstance(o, Pending):
                wake = o.wake if o.wake is not None and o.wake > self.now else None
                if wake is None and not self.open and not self.scheduled_invokes:
                    if o.wake is None:
                        raise ChaosError("generator is pending with nothing in flight "
                                         "(deadlock)")
                    wake = self.now + 1
                self._step_until(wake)
            else:
                self.busy.add(o.process)
                self._pv += 1
                t = o.time if o.time is not None else self.now
                if t <= self.now:
                    self._invoke(o)
                else:
                    self.scheduled_invokes += 1
                    self._push(t, _INVOKE, CLIENT, o)
            if on_progress is not None and len(self.history) - last_progress >= 2000:
                last_progress = len(self.history)
                on_progress(last_progress, self.now)
        # drain: let every outstanding op complete or time out
        while self.open or self.scheduled_invokes:
            if not self.heap and not self.timeouts:
                raise ChaosError("ops still open with nothing left to run")  # pragma: no cover
            self._step_until(None)
        if on_progress is not None:
            on_progress(len(self.history), self.now)
        return SimResult(self.history, self.final_states(), self.summary_stats())

    def final_states(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name in self.names:
            r = self.replicas[name]
            if r is not None:
                out[name] = {i: r.observe(i) for i in self.cfg.instances}
        return out

    def summary_stats(self) -> dict[str, Any]:
        agg = dict(self.dead_stats)
        for r in self.replicas.values():
            if r is not None:
                for k, v in r.stats.items():
                    agg[k] = agg.get(k, 0) + v
        self.stats["messages"] = self.n_messages
        self.stats["dropped"] = self.n_dropped
        return {**self.stats, "replica": agg, "failovers": self.router.failovers,
                "virtual_ms": self.now // MS, "ops": len(self.history),
                "log_events": sum(len(x) for x in self.logs)}


def run_simulation(config: SimConfig, generator: Generator, *, seed: int,
                   time_limit_s: float | None = None,
                   on_progress: Callable[[int, int], None] | None = None,
                   model: ModelPort | None = None) -> SimResult:
    """Run ``generator`` against a simulated deployment; same inputs, same history.

    ``time_limit_s`` caps *virtual* time (no new ops after it; open ops still
    complete or time out). ``on_progress(ops_recorded, virtual_ns)`` is called
    every 2000 history entries and once at the end.
    """
    # The run allocates many small acyclic objects that all live until its end
    # (history, events, log records); the cyclic collector would rescan them
    # again and again for nothing (~10 % of a run), so it is paused meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return Simulation(config, seed, model=model).run(
            generator, time_limit_s=time_limit_s, on_progress=on_progress)
    finally:
        if enabled:
            gc.enable()
