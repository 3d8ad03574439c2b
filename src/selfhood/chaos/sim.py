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
- **the interpreter's world**: the simulation is a `chaos.interpreter.World`;
  the one interpreter asks the generator for ops and records the history
  (time in virtual ns), the client protocol (`chaos.client`) routes them,
  and this module delivers requests and replies, runs nemesis ops and the
  op timeouts in virtual time order.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

import msgspec

from selfhood.chaos.client import ClientSessions
from selfhood.chaos.generator import Generator, OpRequest
from selfhood.chaos.interpreter import Interpreter
from selfhood.chaos.nemesis import OWNER, cut_links, owner_target, replica_named
from selfhood.checkers.history import Op, paused_gc
from selfhood.consistency.config import DEFAULT_REPLICA
from selfhood.consistency.model import DeterministicModel, ModelPort
from selfhood.consistency.ownership import Coordinator, Grant
from selfhood.consistency.replica import (
    MODES,
    Append,
    AppendAck,
    Chunk,
    Clock,
    Forward,
    ModelCall,
    Output,
    Poll,
    Records,
    Replica,
    ReplicaConfig,
    Reply,
    Request,
    make_replica,
)
from selfhood.consistency.router import POLICIES
from selfhood.errors import ChaosError
from selfhood.events import Event, seeded_event_ids
from selfhood.spec import DEFAULT_SPEC, ExperimentSpec, NetSpec
from selfhood.spec import LOG_NODE as LOG

MS: Final = 1_000_000
CLIENT: Final = "client"

# message kinds on the heap
(_TICK, _REQ, _RECS, _ACK, _GRANT, _APPEND, _POLL, _REPLY, _INVOKE, _WAKE,
 _COORD) = range(11)
_TO_REPLICA: Final = frozenset({_TICK, _REQ, _RECS, _ACK, _GRANT})
assert max(_TO_REPLICA) == _GRANT < min(_POLL, _APPEND, _REPLY, _INVOKE, _WAKE, _COORD)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The simulated deployment: the replicas' own configuration, the network, and what
    only the simulator has (plain data; `from_spec` builds it from an experiment).

    Replica fields (mode, shards, sharded memory, fencing, lease, outbox) live in
    ``replica`` and network fields in ``net``, stated once there;
    `with_overrides` sets any of them by name.
    """

    replica: ReplicaConfig = DEFAULT_REPLICA
    net: NetSpec = DEFAULT_SPEC.net
    replicas: int = 3
    instances: tuple[str, ...] = ("i0",)
    router: str = "sticky"
    concurrency: int = 6
    op_timeout_ms: int = 300
    #: replica tick: poll the log, ship the outbox
    poll_ms: int = 10
    #: router: how long a replica that failed a client is avoided
    down_ms: int = 1000
    #: coordinator: heartbeat silence before a replica's partitions move
    session_ms: int = 200

    @classmethod
    def from_spec(cls, spec: ExperimentSpec, mode: str) -> SimConfig:
        """The simulated deployment for one mode of an experiment."""
        return cls(replica=spec.replica_config(mode), net=spec.net,
                   replicas=spec.replicas, instances=spec.instance_names, router=spec.router,
                   concurrency=spec.concurrency, op_timeout_ms=spec.op_timeout_ms)

    def with_overrides(self, **changes: Any) -> SimConfig:
        """A variant: each name is a field of SimConfig, its ReplicaConfig or its NetSpec."""
        own: dict[str, Any] = {}
        rep: dict[str, Any] = {}
        net: dict[str, Any] = {}
        for k, v in changes.items():
            if k in _SIM_FIELDS:
                own[k] = v
            elif k in _REPLICA_FIELDS:
                rep[k] = v
            elif k in NetSpec.__struct_fields__:
                net[k] = v
            else:
                raise ChaosError(f"SimConfig has no field {k!r}")
        return replace(self, replica=replace(self.replica, **rep),
                       net=msgspec.structs.replace(self.net, **net), **own)

    @property
    def mode(self) -> str:
        return self.replica.mode

    @property
    def shards(self) -> int:
        return self.replica.shards

    @property
    def replica_names(self) -> tuple[str, ...]:
        return tuple(f"r{i}" for i in range(self.replicas))

    def validate(self) -> None:
        """Raise ChaosError naming the first bad field."""
        if self.mode not in MODES:
            raise ChaosError(f"SimConfig.mode: {self.mode!r} is not one of {MODES}")
        if self.router not in POLICIES:
            raise ChaosError(f"SimConfig.router: {self.router!r} is not one of {POLICIES}")
        for name in ("replicas", "concurrency", "op_timeout_ms", "poll_ms", "session_ms"):
            if getattr(self, name) < 1:
                raise ChaosError(f"SimConfig.{name} must be >= 1")
        if self.shards < 1:
            raise ChaosError("SimConfig.shards must be >= 1")
        if not self.instances:
            raise ChaosError("SimConfig.instances must not be empty")
        if not 0 <= self.net.delay_ms_min <= self.net.delay_ms_max:
            raise ChaosError("SimConfig.delay_ms_min/max: need 0 <= min <= max")
        if not 0.0 <= self.net.loss < 1.0:
            raise ChaosError("SimConfig.loss must be in [0, 1)")
        if self.session_ms <= self.poll_ms:
            raise ChaosError("SimConfig.session_ms must exceed poll_ms (heartbeats are polls)")


_SIM_FIELDS: Final = frozenset(f.name for f in fields(SimConfig))
_REPLICA_FIELDS: Final = frozenset(f.name for f in fields(ReplicaConfig))


@dataclass(slots=True)
class SimResult:
    """What a run produced: the history, each live replica's final view, counters."""

    history: list[Op]
    final_states: dict[str, dict[str, dict[str, Any]]]
    stats: dict[str, Any] = field(default_factory=dict)


class Simulation:
    """One simulated run; `run_simulation` is the public entry point."""

    #: `run_simulation` deletes ``interp`` at the end (the compiled build needs it declared)
    __deletable__ = ("interp",)

    def __init__(self, config: SimConfig, seed: int, *, model: ModelPort | None = None) -> None:
        config.validate()
        self.cfg = config
        self.seed = seed
        self.gen_rng = random.Random(seed)
        self.net_rng = random.Random(seed * 7919 + 1)
        self.nem_rng = random.Random(seed * 104729 + 2)
        self.model: ModelPort = model if model is not None else DeterministicModel()
        self.names = config.replica_names
        self.nodes = (*self.names, LOG)
        self.rcfg = config.replica
        self.now = 0
        self.heap: list[tuple[int, int, int, str, Any, int]] = []
        #: the heap's tie-breaker: the next sequence number (a C-level counter)
        self._next_seq = itertools.count(1).__next__
        self.dmin = int(config.net.delay_ms_min * MS)
        self.dmax = max(self.dmin, int(config.net.delay_ms_max * MS))
        self.dspan = self.dmax - self.dmin + 1
        self.loss = config.net.loss
        self.blocked: set[tuple[str, str]] = set()
        self.incarnation: dict[str, int] = dict.fromkeys(self.names, 0)
        self.owner_targets: dict[str, str] = {}  # an "owner" fault's replica, until healed
        self.replicas: dict[str, Replica | None] = {}
        # a crashed replica's local disk: its durable outbox (eventual), until restart
        self.disks: dict[str, list[tuple[int, Event]]] = {}
        self.paused: dict[str, list[tuple[int, Any]] | None] = dict.fromkeys(self.names)
        self.skew_ns: dict[str, int] = dict.fromkeys(self.names, 0)
        # per partition, the records (offset, event); the simulated log has no gaps
        self.logs: list[list[tuple[int, Event]]] = [[] for _ in range(config.shards)]
        self.log_ids: dict[str, tuple[int, int]] = {}
        self.coord = Coordinator(self.names, config.instances, config.shards)
        self.sequential = config.mode != "eventual"
        self.timeout_ns = config.op_timeout_ms * MS
        self.poll_ns = config.poll_ms * MS
        # the client protocol and the interpreter; the router is the clients'
        self.clients = ClientSessions(self.names, config.router, down_ms=config.down_ms,
                                      timeout_ns=self.timeout_ns, margin_ns=self.poll_ns)
        self.router = self.clients.router
        self.interp = Interpreter(self, self.clients, concurrency=config.concurrency,
                                  rng=self.gen_rng)
        self.stats: dict[str, int] = {"messages": 0, "dropped": 0, "timeouts": 0,
                                      "crashes": 0, "restarts": 0, "pauses": 0,
                                      "grants": 0, "failovers_ownership": 0}
        # the two hot counters live in attributes (stats["messages"/"dropped"] at the end)
        self.n_messages = 0
        self.n_dropped = 0
        self.dead_stats: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self.replicas[name] = self._new_replica(name)
            self._push(self.poll_ns * (i + 1) // len(self.names), _TICK, name, None)
        self.last_heartbeat: dict[str, int] = dict.fromkeys(self.names, 0)
        self.session_ns = config.session_ms * MS
        if self.sequential:
            # grants go to the new owner only; the others learn it from its claim
            for g in self.coord.initial_grants():
                self._on_replica(g.owner, _GRANT, g)
            self._push(self.session_ns // 4, _COORD, LOG, None)

    # -- plumbing ------------------------------------------------------------------

    def _new_replica(self, name: str) -> Replica:
        """A fresh incarnation; its event ids are UUIDv4s seeded by (seed, name, incarnation)."""
        ids = seeded_event_ids(f"{self.seed}/{name}/{self.incarnation[name]}")
        r = make_replica(name, self.rcfg, self.cfg.instances, new_id=ids)
        # At the start every state is the (empty) log's; a restarted replica has no
        # lease until its first poll has caught it up, as a real node (`Records.lease`)
        r.log_contact = self.now if self.incarnation[name] == 0 else self.now - r.lease_ns - 1
        return r

    def _clock(self, name: str) -> Clock:
        """The replica's two clocks: virtual time, and virtual time plus its skew."""
        now = self.now
        return Clock(now, now + self.skew_ns[name])

    def _push(self, t: int, kind: int, dst: str, payload: Any) -> None:
        inc = self.incarnation.get(dst, 0)
        heapq.heappush(self.heap, (t, self._next_seq(), kind, dst, payload, inc))

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
        heapq.heappush(self.heap, (self.now + d, self._next_seq(), kind, dst, payload,
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
                dst, kind, payload = CLIENT, _REPLY, o
            elif t is Poll:
                dst, kind, payload = LOG, _POLL, (src, o)
            elif t is Append:
                dst, kind, payload = LOG, _APPEND, (src, o)
            elif t is ModelCall:
                self._model_call(src, o)  # type: ignore[arg-type]
                continue
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
            heapq.heappush(heap, (self.now + d, self._next_seq(), kind, dst, payload,
                                  incarnation.get(dst, 0)))

    def _model_call(self, name: str, call: ModelCall) -> None:
        """The deterministic model answers at once (a model port doing IO lives in a process)."""
        r = self.replicas[name]
        if r is None:
            return
        text = self.model.reply(call.state, call.digest)
        outs = r.on_model_reply(call.call_id, text, self._clock(name))
        if outs:
            self._emit(name, outs)

    def _on_replica(self, name: str, kind: int, payload: Any) -> None:
        r = self.replicas[name]
        if r is None:
            return
        q = self.paused[name]
        if q is not None:
            if kind != _TICK:
                q.append((kind, payload))
            return
        now = self._clock(name)
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

    def _chunks(self, from_offsets: Iterable[tuple[int, int]]) -> list[Chunk]:
        """Up to ``poll_limit`` records per partition from each offset (offset = list index)."""
        out: list[Chunk] = []
        limit = self.rcfg.poll_limit
        logs = self.logs
        for p, s in from_offsets:
            log = logs[p]
            if s < len(log):
                recs = log[s:s + limit]
                out.append((p, recs, s + len(recs)))
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
                off = len(log)
                pos = ids[ev.event_id] = (p, off)
                log.append((off, ev))
            positions.append(pos)
        recs = Records(self._chunks(a.from_offsets.items()))
        self._send(LOG, src, _ACK, AppendAck(a.batch_id, positions, recs))

    def _log_poll(self, src: str, p: Poll) -> None:
        self.last_heartbeat[src] = self.now
        chunks = self._chunks(enumerate(p.from_offsets))
        ends = [len(log) for log in self.logs] if p.barrier_id is not None else None
        self._send(LOG, src, _RECS, Records(chunks, ends, p.barrier_id))

    # -- the World the interpreter sees --------------------------------------------------

    def send(self, replica: str, request: Request) -> None:
        self._send(CLIENT, replica, _REQ, request)

    def call_at(self, t: int, op: OpRequest) -> None:
        self._push(t, _INVOKE, CLIENT, op)

    def nemesis(self, op: OpRequest) -> None:
        self.interp.nemesis_done(op, self._nemesis(op))

    def _live(self) -> list[str]:
        return [r for r in self.names if self.now - self.last_heartbeat[r] <= self.session_ns]

    def _grant(self, grants: list[Grant]) -> None:
        for g in grants:
            self.stats["grants"] += 1
            self._send(LOG, g.owner, _GRANT, g)

    # -- nemesis ---------------------------------------------------------------------------

    def _replica_arg(self, o: OpRequest) -> str:
        return replica_named(o.f, o.value, self.names)

    def _nemesis(self, o: OpRequest) -> Any:
        f = o.f
        if o.value == OWNER:
            target = owner_target(f, o.value, self.coord.part_owner.get(0), self.owner_targets)
            if target is None:
                return {"replica": None}  # no owner (or nothing to heal): nothing to do
            o = replace(o, value=target)
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
                fresh.recover(self.disks.pop(r, []), self._clock(r))
                self._push(self.now + self.poll_ns, _TICK, r, None)
                if self.sequential:
                    for inst in self.cfg.instances:
                        if self.coord.owner_of(inst) == r:
                            g = Grant(inst, self.coord.home[inst], r, self.coord.epoch_of(inst))
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
                self.skew_ns[name] = int(ms * MS)  # the replica's wall clock, from now on
            return o.value
        if f == "unskew":
            for name in self.names:
                self.skew_ns[name] = 0
            return o.value
        if f in ("kill-broker", "restart-broker"):
            # the simulated log is one service standing for the replicated brokers: losing
            # one of three is invisible to it (the cluster runtime kills a real one)
            self.stats["broker_kills"] = self.stats.get("broker_kills", 0) + (f == "kill-broker")
            return o.value
        if f == "rebalance":
            if self.sequential:
                self._grant(self.coord.rebalance(self._live() or list(self.names)))
            return o.value
        raise ChaosError(f"unknown nemesis op {f!r}")

    def _partition(self, value: Any) -> set[tuple[str, str]]:
        """The set of cut links (both directions) for a partition op."""
        return cut_links(value, self.nodes, self.nem_rng)

    # -- the scheduler ---------------------------------------------------------------------

    def _dispatch(self, kind: int, payload: Any) -> None:
        """The rare kinds; `_step_until` delivers replica messages, replies and log calls."""
        if kind == _INVOKE:
            self.interp.invoke_scheduled(payload)
        elif kind == _COORD:
            self._coordinate()
        else:
            self.interp.interesting = True  # a generator wake-up

    def step_until(self, wake: int | None) -> None:
        """Run events until something the generator should see happens (or ``wake``)."""
        heap = self.heap
        pop = heapq.heappop
        push = heapq.heappush
        interp = self.interp
        tq = interp.timeouts
        opened = self.clients.open
        incarnation = self.incarnation
        inc_of = incarnation.get
        replicas = self.replicas
        paused = self.paused
        if wake is None and not heap and not tq:
            raise ChaosError("ops still open with nothing left to run")  # pragma: no cover
        skew = self.skew_ns
        new_clock = tuple.__new__  # Clock(t, w) without the namedtuple's Python-level __new__
        next_seq = self._next_seq
        draw = self.net_rng.random
        loss = self.loss
        dmin, dspan = self.dmin, self.dspan
        poll_ns = self.poll_ns
        on_reply = interp.on_reply
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
                interp.on_timeout(rid)
                if interp.interesting:
                    return
                continue
            if wake is not None and t > wake:
                self.now = max(self.now, wake)
                return
            _, _, kind, dst, payload, inc = pop(heap)
            self.now = t
            # the frequent kinds handled here (`_on_replica` and `_emit` inlined), the rest
            # in `_dispatch`
            if kind <= _GRANT:  # to a replica
                if inc != incarnation[dst]:
                    continue  # sent to an incarnation that crashed
                r = replicas[dst]
                if r is None:
                    continue
                if kind == _TICK:  # the next tick (`_push`, inlined)
                    push(heap, (t + poll_ns, next_seq(), _TICK, dst, None, inc))
                q = paused[dst]
                if q is not None:
                    if kind != _TICK:
                        q.append((kind, payload))
                    continue
                now = new_clock(Clock, (t, t + skew[dst]))
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
                if not outs:
                    continue
                # `_emit(dst, outs)`: the same checks and rng draws, in order
                blocked = self.blocked
                msg: Any
                for o in outs:
                    typ = type(o)
                    if typ is Reply:
                        to, k, msg = CLIENT, _REPLY, o
                    elif typ is Append:
                        to, k, msg = LOG, _APPEND, (dst, o)
                    elif typ is Poll:
                        to, k, msg = LOG, _POLL, (dst, o)
                    elif typ is ModelCall:
                        self._model_call(dst, o)  # type: ignore[arg-type]
                        continue
                    else:
                        assert isinstance(o, Forward)
                        to, k, msg = o.to, _REQ, o.request
                    self.n_messages += 1
                    if blocked and (dst, to) in blocked:
                        self.n_dropped += 1
                        continue
                    if loss and draw() < loss:
                        self.n_dropped += 1
                        continue
                    push(heap, (t + dmin + int(draw() * dspan), next_seq(), k, to, msg,
                                inc_of(to, 0)))
            elif kind == _REPLY:
                on_reply(payload)
                if interp.interesting:
                    return
            elif kind == _APPEND:
                self._log_append(payload[0], payload[1])
            elif kind == _POLL:
                self._log_poll(payload[0], payload[1])
            else:
                self._dispatch(kind, payload)
                if interp.interesting:
                    return
        # nothing left to run (every replica down, no op open): time still passes
        # until the generator's wake-up, else it would ask again at the same time forever
        if wake is not None:
            self.now = max(self.now, wake)

    def run(self, generator: Generator, *, time_limit_s: float | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> SimResult:
        limit_ns = None if time_limit_s is None else int(time_limit_s * 1e9)
        history = self.interp.run(generator, time_limit_ns=limit_ns, on_progress=on_progress)
        return SimResult(history, self.final_states(), self.summary_stats())

    def final_states(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name in self.names:
            r = self.replicas[name]
            if r is not None:
                views = out[name] = {i: r.observe(i) for i in self.cfg.instances}
                for i, v in views.items():
                    if v["reply"] is None:  # the model was not asked about this context
                        v["reply"] = self.model.reply(r.states[i], v["fingerprint"])
        return out

    def summary_stats(self) -> dict[str, Any]:
        agg = dict(self.dead_stats)
        for r in self.replicas.values():
            if r is not None:
                for k, v in r.stats.items():
                    agg[k] = agg.get(k, 0) + v
        self.stats["messages"] = self.n_messages
        self.stats["timeouts"] = self.clients.timeouts
        self.stats["dropped"] = self.n_dropped
        return {**self.stats, "replica": agg, "failovers": self.router.failovers,
                "virtual_ms": self.now // MS, "ops": len(self.interp.history),
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
    # again and again for nothing (~10 % of a run), so it is paused meanwhile, and
    # what survives the run (its history) joins the oldest generation untraced.
    with paused_gc(promote=True):
        sim = Simulation(config, seed, model=model)
        try:
            result = sim.run(generator, time_limit_s=time_limit_s, on_progress=on_progress)
        finally:
            # the world and its interpreter refer to each other: cut that cycle, so the
            # whole simulated deployment is freed by reference counting as the run ends
            # (before the collector resumes), not left as cyclic garbage for a later
            # collection to trace (and, kept until then, slowing the next runs of a hunt)
            del sim.interp
            del sim
    return result
