"""The driver: one sans-IO replica core, carried out over Kafka and HTTP (IO, async).

The core (`selfhood.consistency.replica.Replica`) decides everything; this
module only performs its outputs and feeds it inputs, always on the event
loop thread, so the core is never entered twice at once:

output               what the node does
  Reply              resolves the waiting HTTP request (eventual: after the outbox fsync)
  Forward            POSTs the request to the owner's /v1/forward and relays its answer
  Append             appends to the log, all or none (one entry: the idempotent
                     producer; more: a Kafka transaction, group-committed with
                     the others waiting; eventual: one outbox shipment at a
                     time), then acks the core
  Poll               wakes the poller (a barrier id asks it for the log end too)
  ModelCall          asks the model port (the deterministic model by default)

inputs: `on_request` (HTTP), `on_records` (the poller: the log end, then
every partition behind it), `on_append_ack`, `on_grant` (the consumer group
assigned us a partition) and `on_tick` (a timer every ``poll_ms``).

The poller asks the brokers for the log end every round and hands the core
records only after that answer came back, with that end: the core renews its
lease only once it has applied up to it (`Records.lease`), so the lease
means "what I serve was the log's state within ``lease_ms``": a replica cut
off from the brokers stops serving sequential reads, and one healed (or
restarted) serves them again only once it has caught up, not at the first
answer (an append's acknowledgement does not renew it either). Each
partition is read up to that end (bounded): the core serves reads only
from a state where every partition reached it, one snapshot of the log.

Ownership: a partition assigned by the group becomes a `Grant` for every
known instance on it, at epoch ``max(group generation, highest epoch this
node has seen on the partition + 1)``: higher than any earlier claim, and
ordered like the generations that assigned it. The claim itself goes
through the log (the core), so a paused zombie's later writes are fenced by
every reducer. `status()` reports each claim: when the group assigned the
partition, when the claim took effect, and how many records were replayed
to get there (from the start of the log, or the tail of a warm replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from selfhood.consistency.model import DeterministicModel, ModelPort
from selfhood.consistency.ownership import Grant, home_partition
from selfhood.consistency.replica import (
    LEASE_CAUGHT_UP,
    LEASE_KEEP,
    UNAVAILABLE,
    Append,
    AppendAck,
    Chunk,
    Clock,
    EventualReplica,
    Forward,
    ModelCall,
    Output,
    Poll,
    Records,
    Reply,
    Request,
    make_replica,
)
from selfhood.errors import LogError
from selfhood.eventlog.kafka import KafkaEventLog
from selfhood.events import Event
from selfhood.replica.config import ReplicaOptions
from selfhood.replica.membership import GroupMembership
from selfhood.replica.outbox import DurableOutbox
from selfhood.replica.wire import BadRequest, OpBody, forward_body, parse_reply, read_only

log = logging.getLogger("selfhood.replica")

_MS: Final = 1_000_000
#: claims kept for /v1/status
_CLAIM_HISTORY: Final = 200


@dataclass
class ClaimRecord:
    """One partition this node was assigned, and how its takeover went."""

    partition: int
    generation: int | None
    assigned_wall_ns: int
    assigned_mono_ns: int
    offset_at_assignment: int
    from_start: bool
    epoch: int | None = None
    claimed_wall_ns: int | None = None
    claimed_mono_ns: int | None = None
    replayed: int | None = None
    revoked: bool = False
    granted_mono_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        gap = (None if self.claimed_mono_ns is None
               else (self.claimed_mono_ns - self.assigned_mono_ns) / _MS)
        return {"partition": self.partition, "epoch": self.epoch,
                "generation": self.generation, "assigned_at_ns": self.assigned_wall_ns,
                "claimed_at_ns": self.claimed_wall_ns, "claim_ms": gap,
                "replayed": self.replayed,
                "replayed_from": "start" if self.from_start else "tail",
                "revoked": self.revoked}


class ReplicaNode:
    """One replica process's moving parts; `start`/`stop` are explicit (no IO in __init__)."""

    def __init__(self, opts: ReplicaOptions) -> None:
        self.opts = opts
        self.name = opts.node
        self.eventual = opts.mode == "eventual"
        self.cfg = opts.replica
        # event ids: random UUIDs, unique across restarts of this replica
        self.core = make_replica(self.name, self.cfg, opts.instances,
                                 new_id=lambda: str(uuid.uuid4()))
        self.model: ModelPort = DeterministicModel()
        self.known: set[str] = set(opts.instances)
        self.log = KafkaEventLog(opts.bootstrap, opts.topic, partitions=self.cfg.shards,
                                 request_timeout_s=10.0, append_timeout_s=30.0,
                                 client_id=f"selfhood-replica-{self.name}",
                                 # fences this node's previous incarnation's transactions
                                 transactional_id=f"{opts.topic}.{self.name}",
                                 # a paused owner's open transaction holds back every
                                 # read_committed reader of its partitions until the
                                 # coordinator aborts it: keep that near the session timeout
                                 transaction_timeout_s=max(1.0, 2 * opts.session_timeout_ms
                                                           / 1000))
        self.membership = GroupMembership(
            bootstrap=opts.bootstrap, topic=opts.topic, group=opts.group_id, node=self.name,
            session_timeout_ms=opts.session_timeout_ms, on_assigned=self._on_assigned,
            on_revoked=self._on_revoked)
        self.outbox = DurableOutbox(opts.data_dir) if self.eventual else None
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.ops: dict[int, tuple[OpBody, int]] = {}  # with its arrival (monotonic ns)
        self._rid = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._barriers: list[int] = []
        self._session: aiohttp.ClientSession | None = None
        self.owned: dict[int, ClaimRecord] = {}
        self._revoking: dict[int, ClaimRecord] = {}
        self.claims: deque[ClaimRecord] = deque(maxlen=_CLAIM_HISTORY)
        self.caught_up: set[int] = set()
        self.ends: list[int] = [0] * self.cfg.shards
        self.contact_mono = 0
        self.started_wall_ns = time.time_ns()
        self.recovered = 0
        self.stats: dict[str, int] = {"requests": 0, "forwards_sent": 0, "forward_errors": 0,
                                      "appends": 0, "append_errors": 0, "polls": 0,
                                      "poll_errors": 0, "dead_letters": 0, "timeouts": 0,
                                      "grants": 0, "outbox_writes": 0,
                                      "shipments_skipped": 0}
        # eventual durability: replies wait until the outbox holding their writes is on disk
        self._dirty = 0
        self._durable = 0
        self._rewrite = False
        self._held: list[tuple[int, Reply]] = []
        self._flush_wake = asyncio.Event()
        self._outbox_sig: tuple[int, str, str] = (0, "", "")
        self._started = False
        self._shipping = False
        self._txn_queue: list[Append] = []
        self._txn_busy = False

    # -- clocks -------------------------------------------------------------------------

    @staticmethod
    def now() -> Clock:
        """The core's two clocks: monotonic for leases and waits, wall for the HLC
        (libfaketime skews only the wall clock)."""
        return Clock(time.monotonic_ns(), time.time_ns())

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        entries: list[tuple[int, Event]] = []
        if self.outbox is not None:
            entries = await asyncio.to_thread(self.outbox.load)
        await self.log.start()
        now = self.now()
        # no lease yet: a (re)started replica serves sequential reads only once its first
        # poll has caught it up with the log (before, its state is empty or old)
        if entries:
            self.recovered = len(entries)
            self.core.recover(entries, now)
            self._note_outbox()
            log.info("%s: recovered %d acknowledged writes from %s", self.name,
                     len(entries), self.outbox.path if self.outbox else "")
        self._session = aiohttp.ClientSession()
        self._loops = [asyncio.create_task(self._poller(), name="poller"),
                       asyncio.create_task(self._ticker(), name="ticker")]
        if self.outbox is not None:
            self._loops.append(asyncio.create_task(self._flusher(), name="outbox"))
        for t in self._loops:
            t.add_done_callback(self._done)
        await self.membership.start()

    async def stop(self) -> None:
        """Leave the group, flush the outbox, close everything; safe twice."""
        if not self._started:
            return
        self._started = False
        await self.membership.stop()
        for t in [*self._loops, *self._tasks]:
            t.cancel()
        for t in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._loops = []
        if self.outbox is not None:
            with contextlib.suppress(OSError):
                await self.outbox.save(self.core.durable_outbox())
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.log.stop()

    def _spawn(self, coro: Any, name: str) -> None:
        t = asyncio.create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[Any]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("%s: task %s failed: %r", self.name, t.get_name(), exc,
                      exc_info=exc)

    # -- requests -------------------------------------------------------------------------

    async def submit(self, op: OpBody) -> Reply:
        """Hand a client (or forwarded) operation to the core; wait for its reply."""
        self.stats["requests"] += 1
        self._rid += 1
        rid = self._rid
        now = self.now()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        self.pending[rid] = fut
        self.ops[rid] = (op, now.mono)
        timeout_ns = op.timeout_ms * _MS
        # the core gives up a poll interval early, so its own answer beats ours
        core_timeout = max(timeout_ns - self.opts.poll_ms * _MS, timeout_ns // 2)
        req = Request(rid, op.f, op.value, op.instance, op.token, core_timeout,
                      op.origin or self.name, op.hops)
        try:
            if op.instance is not None:
                self._know(op.instance)
            self._feed(self.core.on_request(req, now))
            async with asyncio.timeout(op.timeout_ms / 1000):
                return await fut
        except TimeoutError:
            self.stats["timeouts"] += 1
            return Reply(rid, "fail" if read_only(op.f, op.value) else "info", None, "timeout")
        finally:
            self.pending.pop(rid, None)
            self.ops.pop(rid, None)

    def _resolve(self, reply: Reply) -> None:
        fut = self.pending.get(reply.req_id)
        if fut is None or fut.done():
            return
        if self.outbox is not None and self._durable < self._dirty:
            self._held.append((self._dirty, reply))
            self._flush_wake.set()
            return
        fut.set_result(reply)

    def _feed(self, outs: list[Output]) -> None:
        """Carry out what the core returned (the outbox first: replies wait for it)."""
        if self.outbox is not None:
            self._note_outbox()
        for o in outs:
            if isinstance(o, Reply):
                self._resolve(o)
            elif isinstance(o, Poll):
                if o.barrier_id is not None:
                    self._barriers.append(o.barrier_id)
                self._wake.set()
            elif isinstance(o, Append):
                self._enqueue(o)
            elif isinstance(o, Forward):
                self._spawn(self._forward(o), "forward")
            elif isinstance(o, ModelCall):
                # the deterministic model answers at once; a model port doing IO
                # would copy what it needs from o.state and answer from a task
                text = self.model.reply(o.state, o.digest)
                self._feed(self.core.on_model_reply(o.call_id, text, self.now()))

    # -- the log ----------------------------------------------------------------------

    def _enqueue(self, a: Append) -> None:
        """One entry: append at once (appends run concurrently). More: a transaction.

        Transactions are group-committed: the appends waiting while one
        commits go into the next, as one transaction (each append stays
        all-or-none, inside a larger all-or-none). A Kafka transaction takes a
        few round trips; one per append capped a replica at a few dozen
        multi-event writes per second and let writes land seconds late.
        """
        if isinstance(self.core, EventualReplica):
            if self._shipping:
                # One outbox shipment at a time: the core offers its whole outbox
                # every outbox_ms, and a real log is slower than that; queued
                # shipments re-sent everything and flooded the log with
                # duplicates. Unshipped entries stay in the outbox for the next.
                self.core.outbox_batches.pop(a.batch_id, None)
                self.stats["shipments_skipped"] += 1
                return
            self._shipping = True
        if len(a.entries) <= 1:
            self._spawn(self._append([a]), "append")
            return
        self._txn_queue.append(a)
        if not self._txn_busy:
            self._txn_busy = True
            self._spawn(self._commit_queue(), "transactions")

    async def _commit_queue(self) -> None:
        try:
            while self._txn_queue:
                group: list[Append] = []
                n = 0
                # without atomic memory, a txn's per-partition appends must stay
                # separate (torn reads are that experiment's point): no grouping
                grouped = self.cfg.atomic_memory or not self.cfg.sharded_memory
                while self._txn_queue and (not group or (grouped and n + len(
                        self._txn_queue[0].entries) <= self.cfg.poll_limit)):
                    a = self._txn_queue.pop(0)
                    group.append(a)
                    n += len(a.entries)
                await self._append(group)
        finally:
            self._txn_busy = False

    async def _append(self, group: list[Append]) -> None:
        """Append the group's entries all or none; ack each append with its positions."""
        self.stats["appends"] += len(group)
        try:
            positions = await self.log.append_atomic([e for a in group for e in a.entries])
        except LogError as exc:
            self.stats["append_errors"] += len(group)
            log.warning("%s: append failed: %s", self.name, exc)
            return
        finally:
            self._shipping = False
        k = 0
        for a in group:
            got = positions[k:k + len(a.entries)]
            k += len(a.entries)
            ack = AppendAck(a.batch_id, [(pos.partition, pos.offset) for pos in got],
                            Records([], lease=LEASE_KEEP))  # contact, not currency
            self._feed(self.core.on_append_ack(ack, self.now()))
        self._wake.set()

    async def _poller(self) -> None:
        """Each round: the log end (proof of contact), then every partition behind it."""
        interval = self.opts.poll_ms / 1000
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            await self._poll_round()

    async def _poll_round(self) -> None:
        self.stats["polls"] += 1
        barriers, self._barriers = self._barriers, []
        try:
            async with asyncio.timeout(max(self.opts.lease_ms / 1000, 0.2)):
                ends = await self.log.end_offsets()
        except (LogError, TimeoutError) as exc:
            self.stats["poll_errors"] += 1
            self._barriers = barriers + self._barriers
            log.debug("%s: no contact with the log: %r", self.name, exc)
            return
        self.contact_mono = time.monotonic_ns()
        core = self.core
        shards = self.cfg.shards
        self.ends = [ends.get(p, 0) for p in range(shards)]
        chunks: list[Chunk] = []
        loop = asyncio.get_running_loop()
        for p in range(shards):
            off = nxt = core.next_offset[p]
            recs: list[tuple[int, Event]] = []
            # up to the end this round saw (the core serves reads only once every partition
            # is there): a fetch often stops short, e.g. before a commit marker; bounded
            deadline = loop.time() + 0.05
            while nxt < self.ends[p] and len(recs) < self.cfg.poll_limit:
                try:
                    batch = await self.log.read(p, nxt, limit=self.cfg.poll_limit - len(recs),
                                                timeout_s=max(0.0, deadline - loop.time()))
                except LogError as exc:
                    self.stats["poll_errors"] += 1
                    log.debug("%s: read of partition %d failed: %r", self.name, p, exc)
                    break
                for e in batch.entries:
                    if e.event is None:  # a dead letter: a gap like any other (error logged)
                        self.stats["dead_letters"] += 1
                        log.warning("%s: dead letter at %d:%d: %s", self.name, p,
                                    e.position.offset, e.error)
                        continue
                    recs.append((e.position.offset, e.event))
                if batch.next_offset <= nxt or loop.time() >= deadline:
                    nxt = max(nxt, batch.next_offset)
                    break
                nxt = batch.next_offset
            if recs or nxt > off:
                chunks.append((p, recs, nxt))
        now = self.now()
        # a fetch is bounded (poll_limit, 50 ms): the lease is renewed once the core has
        # applied up to the end this round saw, not merely because the brokers answered
        # the chunks go with the first (or only) Records; each barrier gets the end
        for k, b in enumerate(barriers or [None]):
            self._feed(core.on_records(Records(chunks if k == 0 else [], list(self.ends), b,
                                               LEASE_CAUGHT_UP), now))
        for p in range(shards):
            if core.next_offset[p] >= self.ends[p]:
                self.caught_up.add(p)

    async def _ticker(self) -> None:
        interval = self.opts.poll_ms / 1000
        while True:
            await asyncio.sleep(interval)
            self._feed(self.core.on_tick(self.now()))
            self._check_claims()

    # -- forwarding ----------------------------------------------------------------------

    async def _forward(self, fw: Forward) -> None:
        req = fw.request
        held = self.ops.get(req.req_id)
        if held is None:
            return  # the client is gone
        op, arrived = held
        self.stats["forwards_sent"] += 1
        url = self.opts.peers.get(fw.to)
        ro = read_only(op.f, op.value)
        if url is None or self._session is None:
            self._resolve(Reply(req.req_id, "fail", None, UNAVAILABLE,
                                extra={"detail": f"no address for owner {fw.to}"}))
            return
        remaining_ms = max(1, (arrived + op.timeout_ms * _MS - time.monotonic_ns()) // _MS)
        body = forward_body(op, self.name, int(remaining_ms))
        try:
            async with self._session.post(
                    f"{url}/v1/forward", json=body,
                    timeout=aiohttp.ClientTimeout(total=remaining_ms / 1000 + 0.5)) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise BadRequest(f"owner {fw.to} answered HTTP {resp.status}: {data!r}")
            reply = parse_reply(data, req.req_id)
        except aiohttp.ClientConnectorError:
            # never delivered: certainly no effect
            self.stats["forward_errors"] += 1
            reply = Reply(req.req_id, "fail", None, UNAVAILABLE,
                          extra={"detail": f"owner {fw.to} unreachable"})
        except (TimeoutError, aiohttp.ClientError, BadRequest, ValueError) as exc:
            self.stats["forward_errors"] += 1
            reply = Reply(req.req_id, "fail" if ro else "info", None, "forward-failed",
                          extra={"detail": f"owner {fw.to}: {exc!r}"})
        self._resolve(reply)

    # -- ownership ---------------------------------------------------------------------

    def _know(self, instance: str) -> None:
        """A new instance: if its partition is ours, grant it at the partition's epoch."""
        if instance in self.known:
            return
        self.known.add(instance)
        p = home_partition(instance, self.cfg.shards)
        rec = self.owned.get(p)
        if rec is not None and rec.epoch is not None:
            self._grant(instance, p, rec.epoch)

    def _instances_on(self, partition: int) -> list[str]:
        return sorted(i for i in self.known
                      if home_partition(i, self.cfg.shards) == partition)

    def _grant(self, instance: str, partition: int, epoch: int) -> None:
        self.stats["grants"] += 1
        self._feed(self.core.on_grant(Grant(instance, partition, self.name, epoch),
                                      self.now()))

    async def _on_assigned(self, partitions: list[int]) -> None:
        gen = self.membership.generation
        core = self.core
        kept, self._revoking = self._revoking, {}
        for p, rec in kept.items():
            # An eager rebalance revokes everything and hands most of it straight
            # back. Kept across consecutive generations with our claim still the
            # newest in the log, nobody else can have owned it in between: no new claim.
            if (p in partitions and gen is not None and rec.generation is not None
                    and gen == rec.generation + 1
                    and all(core.owns(i) for i in self._instances_on(p))):
                rec.generation = gen
                self.owned[p] = rec
            else:
                rec.revoked = True
                log.info("%s: partition %d revoked", self.name, p)
        for p in partitions:
            if p in self.owned or not 0 <= p < self.cfg.shards:
                continue
            rec = ClaimRecord(p, gen, time.time_ns(), time.monotonic_ns(),
                              core.next_offset[p], p not in self.caught_up)
            insts = self._instances_on(p)
            seen = max((core.states[i].epoch for i in insts if i in core.states), default=0)
            rec.epoch = max(gen or 0, seen + 1)
            self.owned[p] = rec
            self.claims.append(rec)
            rec.granted_mono_ns = time.monotonic_ns()
            for i in insts:
                self._grant(i, p, rec.epoch)
            log.info("%s: assigned partition %d (generation %s): claiming epoch %d for %s",
                     self.name, p, gen, rec.epoch, ",".join(insts) or "no instances")
        self._check_claims()

    async def _on_revoked(self, partitions: list[int], *, final: bool = False) -> None:
        """Revoked for a rebalance (kept aside: often handed back) or for good (we left)."""
        for p in partitions:
            rec = self.owned.pop(p, None)
            if rec is None:
                continue
            if final:
                rec.revoked = True
                log.info("%s: partition %d revoked", self.name, p)
            else:
                self._revoking[p] = rec
        if final:
            for rec in self._revoking.values():
                rec.revoked = True
            self._revoking = {}

    def _check_claims(self) -> None:
        """Note when each pending claim took effect (the core applied it from the log).

        A claim still pending after a while is granted again at the same epoch:
        the core re-sends the same claim event (idempotent at the log), so a
        claim whose append was lost does not leave the partition without owner.
        """
        core = self.core
        now = time.monotonic_ns()
        retry = max(500, 10 * self.opts.poll_ms) * _MS
        for p, rec in self.owned.items():
            if rec.claimed_mono_ns is not None:
                continue
            insts = self._instances_on(p)
            if not (self.eventual or all(core.owns(i) for i in insts)):
                if rec.epoch is not None and now - rec.granted_mono_ns > retry:
                    rec.granted_mono_ns = now
                    for i in insts:
                        if not core.owns(i):
                            self._grant(i, p, rec.epoch)
                continue
            rec.claimed_mono_ns = time.monotonic_ns()
            rec.claimed_wall_ns = time.time_ns()
            base = 0 if rec.from_start else rec.offset_at_assignment
            rec.replayed = max(0, core.next_offset[p] - base)
            log.info("%s: partition %d owned at epoch %s after %.1f ms (%d records "
                     "replayed from the %s)", self.name, p, rec.epoch,
                     (rec.claimed_mono_ns - rec.assigned_mono_ns) / _MS, rec.replayed,
                     "start" if rec.from_start else "tail")

    # -- eventual outbox ---------------------------------------------------------------

    def _note_outbox(self) -> None:
        """Did the core's outbox change? Growth must reach the disk before any reply."""
        core = self.core
        ob = core.outbox if isinstance(core, EventualReplica) else []
        sig = (len(ob), ob[0][1].event_id if ob else "", ob[-1][1].event_id if ob else "")
        if sig == self._outbox_sig:
            return
        grew = sig[0] > self._outbox_sig[0] or sig[2] != self._outbox_sig[2]
        self._outbox_sig = sig
        if grew and sig[0]:
            self._dirty += 1
        self._rewrite = True
        self._flush_wake.set()

    async def _flusher(self) -> None:
        assert self.outbox is not None
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            if not self._rewrite and self._durable >= self._dirty:
                self._release()
                continue
            target = self._dirty
            self._rewrite = False
            await self.outbox.save(self.core.durable_outbox())
            self.stats["outbox_writes"] += 1
            self._durable = max(self._durable, target)
            self._release()

    def _release(self) -> None:
        held, self._held = self._held, []
        for target, reply in held:
            if target <= self._durable:
                fut = self.pending.get(reply.req_id)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
            else:
                self._held.append((target, reply))

    # -- views ---------------------------------------------------------------------------

    def fingerprint(self, instance: str) -> dict[str, Any]:
        self._know(instance)
        obs = self.core.observe(instance)
        if obs["reply"] is None:
            obs["reply"] = self.model.reply(self.core.states[instance], obs["fingerprint"])
        parts = sorted({self.core.home[instance], self.core.mem[instance]})
        token = {str(p): self.core.next_offset[p] for p in parts}
        return {"instance": instance, "replica": self.name,
                "fingerprint": obs["fingerprint"], "version": obs["version"],
                "epoch": obs["epoch"], "owner": obs["owner"], "reply": obs["reply"],
                "token": token}

    def currency(self) -> dict[str, Any]:
        """How current this replica is with the log, by its own last poll round.

        The brokers answering (``log_reachable``) is not being current: a replica that
        joined but has not finished a round that reached the log end, or whose rounds
        fall short of it, refuses sequential reads (``unavailable``) while the brokers
        answer. ``caught_up`` is what decides that: a round within the lease reached the
        end it saw on every partition, so the replica holds its read lease.
        ``caught_up_ms_ago`` dates that round (None: never yet); ``behind`` counts the
        log offsets (records and transaction markers) below the end the last answered
        round saw, not applied yet (None: no
        round answered yet), per partition in ``behind_partitions``.
        """
        core = self.core
        now = time.monotonic_ns()
        lease = self.opts.lease_ms * _MS
        contact = self.contact_mono
        current = core.log_contact  # the core renews it only on a round that caught up
        behind = None
        if contact:
            behind = {str(p): max(0, e - o)
                      for p, (e, o) in enumerate(zip(self.ends, core.next_offset, strict=True))}
        return {
            "log_reachable": bool(contact) and now - contact <= lease,
            "contact_ms_ago": None if not contact else (now - contact) / _MS,
            "caught_up": bool(current) and core.at_snapshot and now - current <= lease,
            "caught_up_ms_ago": None if not current else (now - current) / _MS,
            "behind": None if behind is None else sum(behind.values()),
            "behind_partitions": behind,
        }

    def health(self) -> dict[str, Any]:
        """`GET /v1/health`: serving, and how current with the log (see `currency`)."""
        cur = self.currency()
        del cur["contact_ms_ago"]
        return {"status": "ok", "replica": self.name, "mode": self.opts.mode, **cur}

    def status(self) -> dict[str, Any]:
        core = self.core
        cur = self.currency()
        owned = []
        for p, rec in sorted(self.owned.items()):
            insts = self._instances_on(p)
            owned.append({"partition": p, "epoch": rec.epoch,
                          "active": rec.claimed_mono_ns is not None,
                          "instances": insts})
        outbox = None
        if self.outbox is not None:
            pending = len(core.outbox) if isinstance(core, EventualReplica) else 0
            outbox = {"pending": pending, "durable": self.outbox.last_size,
                      "path": str(self.outbox.path), "recovered": self.recovered,
                      "writes": self.outbox.writes}
        m = self.membership
        return {
            "replica": self.name, "mode": self.opts.mode, "pid": os.getpid(),
            "started_at_ns": self.started_wall_ns, "url": self.opts.url,
            "log": {"topic": self.opts.topic, "bootstrap": self.opts.bootstrap,
                    "next_offsets": list(core.next_offset), "ends": list(self.ends),
                    **cur},
            "group": {"id": self.opts.group_id, "generation": m.generation,
                      "assigned": list(m.assigned), "rebalances": m.rebalances,
                      "session_timeout_ms": self.opts.session_timeout_ms,
                      "error": m.error},
            "owned": owned,
            "claims": [c.to_json() for c in self.claims],
            "stats": {**{f"core_{k}": v for k, v in core.stats.items()}, **self.stats},
            "outbox": outbox,
        }
