"""KafkaEventLog: the EventLog port on Apache Kafka (aiokafka).

Why it looks like this:

- Producer: idempotent, ``acks=all``, key = instance id, and the partition is
  chosen by our own murmur2 partitioner (identical to Kafka's default), so
  each instance has one total order and lands on the same partition number
  as in the embedded log and the simulator. ``append`` returns only once the
  in-sync replicas have the record (``min.insync.replicas=2`` with 3
  brokers), so an acknowledged event survives losing one broker.
- "A retried append does not duplicate" has two layers. Transport retries
  (a lost produce response, a leader change) are deduplicated by the broker
  through the idempotent producer's sequence numbers. An application-level
  retry of the *same event* through the same adapter returns the position
  the first attempt got, from a bounded ``event_id -> position`` cache, or
  joins the first attempt while it is still in flight - also after that
  attempt's caller got `LogTimeout` or was cancelled (waits are shielded, so
  the attempt is never abandoned half way). A retry through another adapter
  or process, or after the cache evicted the id, can be written twice; that
  is why ``event_id`` is the idempotency key every reducer checks.
- `append_atomic` of more than one entry is a Kafka transaction on a second,
  transactional producer (a plain producer cannot send outside one). Its
  ``transactional_id`` is the writer's own (a replica passes its node name):
  starting with it fences the previous incarnation's producer and aborts a
  transaction it left open, so a restarted writer never waits for a zombie.
  One transaction at a time per adapter; a retry of the same entries joins
  the attempt in flight. An abort that is certain is `LogWriteAborted` (none
  written); an unknown outcome is `LogTimeout`.
- Consumer: no group, no auto-commit, manual assign + seek, and
  ``read_committed`` so records of aborted transactions never reach a
  reducer. Offsets then have gaps (commit markers, aborted records): each
  read returns the consumer's position as `LogBatch.next_offset`. Readers
  keep their own positions (projections store them with the state they
  produce).
- Every wait is bounded, and every aiokafka error is mapped to
  `selfhood.errors` (LogUnavailable, LogTimeout, LogClosed, LogError);
  driver exceptions never leak past this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Final

import aiokafka
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.errors import (
    ConsumerStoppedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerClosed,
    RequestTimedOutError,
)
from aiokafka.structs import TopicPartition

from selfhood.errors import (
    EventDecodeError,
    LogClosed,
    LogError,
    LogTimeout,
    LogUnavailable,
    LogWriteAborted,
)
from selfhood.eventlog.base import EventLogBase, LogBatch, LogEntry, LogPosition
from selfhood.eventlog.partitioning import partition_for
from selfhood.events import Event, decode, encode

DEFAULT_PARTITIONS: Final = 8
_TOPIC_ALREADY_EXISTS: Final = 36
#: A read waits in slices this long, so a fetch that only steps over a gap returns.
_GAP_POLL_S: Final = 0.05


def _raw_value(value: bytes) -> bytes:
    """Marks a consumer whose records are read as (offset, value) pairs (see below)."""
    return value


_consumer_record = PartitionRecords._consumer_record


def _offset_and_value(self: Any, tp: TopicPartition, record: Any) -> Any:
    """Replay speed bounds failover: skip aiokafka's 11-field ConsumerRecord per record.

    Only for consumers made with ``value_deserializer=_raw_value`` (ours);
    every other aiokafka consumer in the process gets its records unchanged.
    The read_committed filtering, positions and fetching stay aiokafka's.
    """
    if self._value_deserializer is _raw_value:
        return (record.offset, record.value)
    return _consumer_record(self, tp, record)


PartitionRecords._consumer_record = _offset_and_value


def _describe(exc: BaseException) -> str:
    """A driver failure in words: no repr, no nested address tuples."""
    if isinstance(exc, KafkaConnectionError):
        return "no broker reachable"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


def _mapped(exc: BaseException, what: str) -> LogError:
    """The project's error for an aiokafka (or socket) failure, as one clear line."""
    if isinstance(exc, LogError):
        return exc
    if isinstance(exc, KafkaTimeoutError | RequestTimedOutError | TimeoutError):
        return LogTimeout(f"kafka {what}: timed out; outcome unknown")
    if isinstance(exc, ProducerClosed | IllegalStateError | ConsumerStoppedError):
        return LogClosed(f"kafka {what}: {_describe(exc)}")
    return LogUnavailable(f"kafka {what}: {_describe(exc)}")


@contextlib.contextmanager
def _driver_errors(what: str) -> Iterator[None]:
    """Translate aiokafka (and socket) failures into the project's error tree."""
    try:
        yield
    except LogError:
        raise
    except (KafkaError, TimeoutError, OSError, ConsumerStoppedError) as exc:
        raise _mapped(exc, what) from None


class KafkaEventLog(EventLogBase):
    """EventLog on one Kafka topic; the topic is created on start() if missing (unless
    ``create=False``, which read-only tools use so looking never creates anything)."""

    def __init__(self, bootstrap: str, topic: str, *, partitions: int | None = None,
                 replication: int | None = None, request_timeout_s: float = 30.0,
                 append_timeout_s: float = 60.0, linger_ms: int = 0,
                 max_batch_bytes: int = 256 * 1024, dedup_cache: int = 200_000,
                 client_id: str | None = None, create: bool = True,
                 transactional_id: str | None = None,
                 transaction_timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._want_partitions = partitions
        self._want_replication = replication
        self._request_timeout_s = request_timeout_s
        self._append_timeout_s = append_timeout_s
        self._linger_ms = linger_ms
        self._max_batch_bytes = max_batch_bytes
        self._dedup_max = dedup_cache
        self._client_id = client_id or f"selfhood-{uuid.uuid4().hex[:8]}"
        self._create = create
        self._transactional_id = transactional_id
        self._transaction_timeout_s = transaction_timeout_s
        self._producer: Any = None
        self._txn_producer: Any = None
        self._txn_lock = asyncio.Lock()
        self._inflight_txn: dict[tuple[str, ...], asyncio.Task[list[LogPosition]]] = {}
        self._consumer: Any = None
        #: offset queries only, never fetches: on the reader's connection a ListOffsets
        #: request queues behind its long-poll fetch (~50 ms a call)
        self._offsets: Any = None
        self._partitions: list[int] = []
        self._tps: dict[int, TopicPartition] = {}
        self._next_read: dict[int, int] = {}
        self._read_lock = asyncio.Lock()
        self._acked: OrderedDict[str, LogPosition] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[LogPosition]] = {}
        self.brokers = 0

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._producer is not None:
            return
        try:
            with _driver_errors(f"start {self.topic} on {self.bootstrap}"):
                async with asyncio.timeout(self._request_timeout_s * 2):
                    await self._ensure_topic()
                    await self._start_clients()
        except BaseException:
            await self.stop()
            raise

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                    client_id=f"{self._client_id}-admin",
                                    request_timeout_ms=int(self._request_timeout_s * 1000))
        with _driver_errors(f"connect to {self.bootstrap}"):
            await admin.start()
        try:
            with _driver_errors(f"create topic {self.topic}"):
                cluster = await admin.describe_cluster()
                self.brokers = len(cluster["brokers"])
                if self.topic in await admin.list_topics():
                    return
                if not self._create:
                    raise LogUnavailable(f"kafka topic {self.topic} does not exist "
                                         f"on {self.bootstrap}")
                rf = self._want_replication or min(3, self.brokers)
                configs = {"min.insync.replicas": "2"} if rf >= 3 else {}
                configs["unclean.leader.election.enable"] = "false"
                resp = await admin.create_topics(
                    [NewTopic(self.topic, self._want_partitions or DEFAULT_PARTITIONS, rf,
                              topic_configs=configs)])
                for err in resp.topic_errors:
                    code = err[1]
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        detail = err[2] if len(err) > 2 else ""
                        raise LogUnavailable(
                            f"kafka: cannot create topic {self.topic}: error {code} {detail}")
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _start_clients(self) -> None:
        timeout_ms = int(self._request_timeout_s * 1000)
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=self._client_id,
            enable_idempotence=True, acks="all", linger_ms=self._linger_ms,
            max_batch_size=self._max_batch_bytes, request_timeout_ms=timeout_ms,
            retry_backoff_ms=100, metadata_max_age_ms=30_000)
        self._producer = producer
        with _driver_errors(f"start producer on {self.bootstrap}"):
            await producer.start()
            parts = None
            for _ in range(50):  # a fresh topic's metadata can lag creation briefly
                parts = await producer.partitions_for(self.topic)
                if parts:
                    break
                await asyncio.sleep(0.1)
            if not parts:
                raise LogUnavailable(f"kafka: topic {self.topic} has no partitions in metadata")
        self._partitions = sorted(parts)
        if self._want_partitions is not None and self._want_partitions != len(self._partitions):
            raise LogError(f"kafka topic {self.topic} has {len(self._partitions)} partitions, "
                           f"but partitions={self._want_partitions} was asked for")
        self._tps = {p: TopicPartition(self.topic, p) for p in self._partitions}
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, client_id=f"{self._client_id}-reader",
            group_id=None, enable_auto_commit=False, isolation_level="read_committed",
            value_deserializer=_raw_value,
            auto_offset_reset="earliest", request_timeout_ms=timeout_ms,
            fetch_max_wait_ms=100, max_partition_fetch_bytes=4 * 1024 * 1024,
            retry_backoff_ms=100, metadata_max_age_ms=30_000)
        self._consumer = consumer
        with _driver_errors(f"start consumer on {self.bootstrap}"):
            await consumer.start()
            consumer.assign(list(self._tps.values()))
            for p, tp in self._tps.items():
                consumer.seek(tp, 0)
                self._next_read[p] = 0
        # A second connection per broker for end/beginning offsets: the broker answers
        # one connection's requests in order, so on the reader's own connection a
        # ListOffsets waits out the fetch long-poll in front of it. Never assigned,
        # so it never fetches.
        offsets = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, client_id=f"{self._client_id}-offsets",
            group_id=None, enable_auto_commit=False, isolation_level="read_committed",
            request_timeout_ms=timeout_ms, retry_backoff_ms=100,
            metadata_max_age_ms=30_000)
        self._offsets = offsets
        with _driver_errors(f"start offsets client on {self.bootstrap}"):
            await offsets.start()
        if self._transactional_id is not None:
            await self._transactional()  # fence the previous incarnation now, not later

    async def _transactional(self) -> Any:
        """The transactional producer, started on first use (or by start() if named)."""
        if self._txn_producer is not None:
            return self._txn_producer
        txn_id = self._transactional_id or f"{self._client_id}-txn"
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=f"{self._client_id}-txn",
            transactional_id=txn_id, enable_idempotence=True, acks="all",
            transaction_timeout_ms=int(self._transaction_timeout_s * 1000),
            linger_ms=0, max_batch_size=self._max_batch_bytes,
            request_timeout_ms=int(self._request_timeout_s * 1000),
            retry_backoff_ms=100, metadata_max_age_ms=30_000)
        try:
            with _driver_errors(f"start transactional producer {txn_id} on {self.bootstrap}"):
                async with asyncio.timeout(self._request_timeout_s * 2):
                    await producer.start()  # InitProducerId: fences the old incarnation
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._txn_producer = producer
        return producer

    async def stop(self) -> None:
        """Flush pending appends and close every client; safe to call twice."""
        producer, consumer, txn = self._producer, self._consumer, self._txn_producer
        offsets = self._offsets
        self._producer = self._consumer = self._txn_producer = self._offsets = None
        for task in list(self._inflight_txn.values()):
            task.cancel()
        for client in (producer, txn, consumer, offsets):
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._request_timeout_s):
                        await client.stop()
        for fut in self._inflight.values():
            if not fut.done():
                fut.set_exception(LogClosed(f"kafka log {self.topic} stopped before the "
                                            f"append was acknowledged; outcome unknown"))
                fut.exception()
        self._inflight.clear()

    # -- appends ----------------------------------------------------------

    @property
    def partition_count(self) -> int:
        return len(self._partitions)

    def partition_of(self, instance_id: str) -> int:
        """Where an instance's events go in this topic."""
        return partition_for(instance_id, len(self._partitions))

    async def append(self, event: Event) -> LogPosition:
        return (await self._send_all([(None, event)]))[0]

    async def append_batch(self, events: Sequence[Event]) -> list[LogPosition]:
        """Send all, then wait for every ack; positions in input order.

        Events already acknowledged (or in flight) through this adapter are
        not sent again: their first position is returned.
        """
        return await self._send_all([(None, e) for e in events])

    async def append_atomic(self, entries: Sequence[tuple[int, Event]]) -> list[LogPosition]:
        """All-or-none across partitions: one entry is a plain append, more a transaction."""
        self._require_producer()
        for part, _event in entries:
            if part not in self._tps:
                raise LogError(f"kafka topic {self.topic} has no partition {part}")
        if len(entries) <= 1:
            return await self._send_all(list(entries))
        ids = tuple(e.event_id for _p, e in entries)
        known = [self._acked.get(eid) for eid in ids]
        if all(k is not None for k in known):
            return [k for k in known if k is not None]
        task = self._inflight_txn.get(ids)
        if task is None:
            task = asyncio.create_task(self._transaction(list(entries)),
                                       name=f"kafka-txn {self.topic}")
            self._inflight_txn[ids] = task
            task.add_done_callback(functools.partial(self._txn_done, ids))
        # Shielded like plain appends: a caller's timeout leaves the attempt running
        # (it is bounded itself), so a retry joins it rather than writing twice.
        with _driver_errors(f"atomic append to {self.topic}"):
            async with asyncio.timeout(self._append_timeout_s):
                return await asyncio.shield(task)

    def _txn_done(self, ids: tuple[str, ...], task: asyncio.Task[list[LogPosition]]) -> None:
        if self._inflight_txn.get(ids) is task:
            del self._inflight_txn[ids]
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaits it still gets it raised

    async def _transaction(self, entries: list[tuple[int, Event]]) -> list[LogPosition]:
        """Begin, send every entry, commit; on any failure abort, or drop the producer."""
        what = f"atomic append to {self.topic}"
        async with self._txn_lock:
            producer = await self._transactional()
            committing = False
            try:
                with _driver_errors(what):
                    async with asyncio.timeout(self._append_timeout_s):
                        await producer.begin_transaction()
                        sends = [await producer.send(self.topic, value=encode(e),
                                                     key=e.instance_id.encode(), partition=p)
                                 for p, e in entries]
                        mds = await asyncio.gather(*sends)
                        committing = True
                        await producer.commit_transaction()
            except BaseException as exc:
                aborted = not committing and await self._abort(producer)
                if not aborted:
                    await self._drop_transactional(producer)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if aborted:
                    raise LogWriteAborted(f"kafka {what}: transaction aborted, nothing "
                                          f"written ({_mapped(exc, what)})") from None
                if isinstance(exc, LogError) and not isinstance(exc, LogTimeout):
                    raise LogTimeout(f"{exc}; the transaction's outcome is unknown") from None
                raise
        positions = [LogPosition(md.partition, md.offset) for md in mds]
        for (_p, e), pos in zip(entries, positions, strict=True):
            self._remember(e.event_id, pos)
        await self._until_visible(positions)
        return positions

    async def _until_visible(self, positions: list[LogPosition]) -> None:
        """Wait (bounded) until read_committed readers can see `positions`.

        The commit returns once the coordinator logged it; the markers that
        make the records readable reach the partitions a moment later. Waiting
        here means a writer that reads after an atomic append sees its own
        entries, as after a plain append. The commit stands either way.
        """
        consumer = self._offsets
        if consumer is None:
            return
        need: dict[int, int] = {}
        for pos in positions:
            need[pos.partition] = max(need.get(pos.partition, -1), pos.offset)
        tps = [self._tps[p] for p in need]
        with contextlib.suppress(TimeoutError, KafkaError, OSError):
            async with asyncio.timeout(self._request_timeout_s):
                while True:
                    ends = await consumer.end_offsets(tps)
                    if all(ends[tp] > need[tp.partition] for tp in tps):
                        return
                    await asyncio.sleep(0.002)

    async def _abort(self, producer: Any) -> bool:
        """Abort the open transaction; False if that could not be done for sure."""
        try:
            async with asyncio.timeout(self._request_timeout_s):
                await producer.abort_transaction()
            return True
        except Exception:
            return False

    async def _drop_transactional(self, producer: Any) -> None:
        """Forget a producer in an unknown state; the next one (same id) fences it."""
        if self._txn_producer is producer:
            self._txn_producer = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._request_timeout_s):
                await producer.stop()

    async def _send_all(self, items: Sequence[tuple[int | None, Event]]) -> list[LogPosition]:
        """Plain (idempotent, non-transactional) sends; partition None = the instance's own."""
        producer = self._require_producer()
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[LogPosition]] = []
        for part, event in items:
            eid = event.event_id
            known = self._acked.get(eid)
            if known is not None:
                done: asyncio.Future[LogPosition] = loop.create_future()
                done.set_result(known)
                waits.append(done)
                continue
            pending = self._inflight.get(eid)
            if pending is not None:
                waits.append(pending)
                continue
            with _driver_errors(f"append to {self.topic}"):
                send = await producer.send(
                    self.topic, value=encode(event), key=event.instance_id.encode(),
                    partition=self.partition_of(event.instance_id) if part is None else part)
            fut: asyncio.Future[LogPosition] = loop.create_future()
            self._inflight[eid] = fut
            send.add_done_callback(functools.partial(self._settle, eid, fut))
            waits.append(fut)
        # Shielded: a timeout or a cancelled caller leaves the attempt in flight, so
        # a retry of the same event joins it instead of sending a second copy.
        with _driver_errors(f"append to {self.topic}"):
            async with asyncio.timeout(self._append_timeout_s):
                return [await asyncio.shield(w) for w in waits]

    def _settle(self, event_id: str, fut: asyncio.Future[LogPosition],
                send: asyncio.Future[Any]) -> None:
        """Producer ack (or failure) for one event: resolve its waiters, fill the cache."""
        if self._inflight.get(event_id) is fut:
            del self._inflight[event_id]
        if fut.done():
            return
        if send.cancelled():
            fut.set_exception(LogTimeout(f"kafka append to {self.topic} was cancelled; "
                                         f"outcome unknown"))
        elif (exc := send.exception()) is not None:
            fut.set_exception(_mapped(exc, f"append to {self.topic}"))
        else:
            md = send.result()
            pos = LogPosition(md.partition, md.offset)
            self._remember(event_id, pos)
            fut.set_result(pos)
            return
        fut.exception()  # retrieved: whoever awaits it still gets it raised

    async def append_raw(self, instance_id: str, data: bytes) -> LogPosition:
        """Append bytes as they are (tests/tools inject corrupt records this way)."""
        producer = self._require_producer()
        with _driver_errors(f"append to {self.topic}"):
            async with asyncio.timeout(self._append_timeout_s):
                md = await producer.send_and_wait(
                    self.topic, value=bytes(data), key=instance_id.encode(),
                    partition=self.partition_of(instance_id))
        return LogPosition(md.partition, md.offset)

    def _remember(self, event_id: str, pos: LogPosition) -> None:
        self._acked[event_id] = pos
        if len(self._acked) > self._dedup_max:
            self._acked.popitem(last=False)

    def _require_producer(self) -> Any:
        if self._producer is None:
            raise LogClosed(f"kafka log {self.topic} is not started")
        return self._producer

    # -- reads --------------------------------------------------------------

    async def read(self, partition: int, from_offset: int, *, limit: int = 1000,
                   timeout_s: float = 1.0) -> LogBatch:
        consumer = self._consumer
        if consumer is None:
            raise LogClosed(f"kafka log {self.topic} is not started")
        tp = self._tps.get(partition)
        if tp is None:
            raise LogError(f"kafka topic {self.topic} has no partition {partition}")
        async with self._read_lock:
            with _driver_errors(f"read {self.topic}[{partition}]"):
                if self._next_read.get(partition) != from_offset:
                    consumer.seek(tp, max(from_offset, 0))
                    self._next_read[partition] = from_offset
                # The fetch position moves past the records *and* past any markers or
                # aborted records a fetch skipped; it is known locally (set by the seek
                # or the fetch). getmany would wait out its whole timeout on a fetch
                # that held only such a gap, so wait in slices and stop on progress.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + max(timeout_s, 0.0)
                while True:
                    wait = max(0.0, min(deadline - loop.time(), _GAP_POLL_S))
                    batch = await consumer.getmany(tp, timeout_ms=int(wait * 1000),
                                                   max_records=limit)
                    position = int(await consumer.position(tp))
                    if batch or position != from_offset or loop.time() >= deadline:
                        break
        records: list[tuple[int, bytes | None]] = batch.get(tp, [])
        out: list[LogEntry] = []
        if (records and records[0][0] < from_offset) or position < from_offset:
            # Seeking past the end resets to the earliest offset (auto_offset_reset);
            # never hand back records before the asked offset, and seek again next time.
            records = [r for r in records if r[0] >= from_offset]
            position = records[-1][0] + 1 if records else from_offset
            self._next_read[partition] = -1
        append = out.append
        for off, value in records:
            raw = value if value is not None else b""
            pos = LogPosition(partition, off)
            try:
                append(LogEntry(pos, raw, decode(raw, partition=partition, offset=off)))
            except EventDecodeError as exc:
                append(LogEntry(pos, raw, None, exc.with_traceback(None)))
        if self._next_read[partition] != -1:
            self._next_read[partition] = position
        return LogBatch(out, position)

    async def end_offsets(self) -> dict[int, int]:
        consumer = self._offsets
        if consumer is None:
            raise LogClosed(f"kafka log {self.topic} is not started")
        with _driver_errors(f"end offsets of {self.topic}"):
            async with asyncio.timeout(self._request_timeout_s):
                ends = await consumer.end_offsets(list(self._tps.values()))
        return {tp.partition: int(off) for tp, off in ends.items()}

    async def beginning_offsets(self) -> dict[int, int]:
        """First offset still stored per partition (retention may have removed older ones)."""
        consumer = self._offsets
        if consumer is None:
            raise LogClosed(f"kafka log {self.topic} is not started")
        with _driver_errors(f"beginning offsets of {self.topic}"):
            async with asyncio.timeout(self._request_timeout_s):
                starts = await consumer.beginning_offsets(list(self._tps.values()))
        return {tp.partition: int(off) for tp, off in starts.items()}

    async def leader_of(self, partition: int) -> int | None:
        """Broker node id currently leading `partition` (fresh metadata); chaos tests kill it."""
        producer = self._require_producer()
        with _driver_errors(f"metadata of {self.topic}"):
            async with asyncio.timeout(self._request_timeout_s):
                await producer.client.force_metadata_update()
        leader = producer.client.cluster.leader_for_partition(self._tps[partition])
        return int(leader) if leader is not None and leader >= 0 else None

    async def partitions(self) -> list[int]:
        if self._producer is None:
            raise LogClosed(f"kafka log {self.topic} is not started")
        return list(self._partitions)


async def delete_topic(bootstrap: str, topic: str) -> None:
    """Remove a topic (a test's or a benchmark's own log) from a cluster we share."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
