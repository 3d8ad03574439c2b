"""The EventLog contract: one suite, run unchanged against every adapter.

Each adapter's test module subclasses `EventLogContract` and supplies
`open_log()` (a fresh, unstarted adapter on the *same* log every call, so
reopening is testable) and `disrupted()` (the adapter's real failure: a
writer process killed with SIGKILL for SQLite, the partition leader broker
killed with kill -9 and restarted for Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest

from selfhood.errors import EventDecodeError, LogClosed, LogError, UnknownSchemaVersion
from selfhood.eventlog.base import EventLog, LogEntry, LogPosition, RawEventLog, scan
from selfhood.eventlog.kafka import KafkaEventLog
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.events import (
    Event,
    Hlc,
    MemoryWritten,
    RuleAdded,
    TurnAppended,
    make_event,
)

AnyLog = SqliteEventLog | KafkaEventLog


def turn(instance: str, n: int, writer: str = "w1") -> Event:
    """The n-th event of an instance; hlc.wall carries n so order is checkable."""
    payload = (TurnAppended("user" if n % 2 == 0 else "assistant", f"turn {n} of {instance}")
               if n % 3 else MemoryWritten("tool", f"k{n}", value=f"v{n}"))
    return make_event(instance, payload, writer=writer, hlc=Hlc(n, 0))


async def read_partition(log: EventLog, partition: int, from_offset: int = 0) -> list[LogEntry]:
    """Everything in one partition up to its current end."""
    return [e async for e in scan(log, partition, from_offset, batch=500)]


def events_of(entries: Sequence[LogEntry], instance: str) -> list[Event]:
    return [e.event for e in entries if e.event is not None and e.event.instance_id == instance]


class EventLogContract:
    """Behaviour every EventLog adapter promises (see selfhood.eventlog.base)."""

    #: How long a read of an empty partition may take beyond its timeout.
    read_slack_s: float = 3.0

    def open_log(self) -> AnyLog:
        """A new, unstarted adapter on this test's log."""
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def disrupted(self, log: AnyLog, partition: int) -> AsyncIterator[list[Event]]:
        """Inflict the adapter's real failure; yield events some *other* writer got acked."""
        raise NotImplementedError
        yield []  # pragma: no cover

    def instance(self, tag: str = "i") -> str:
        return f"{tag}-{uuid.uuid4().hex[:10]}"

    # -- the port's basic promises ------------------------------------------

    async def test_partitions_and_empty_ends(self) -> None:
        async with self.open_log() as log:
            parts = await log.partitions()
            assert parts == list(range(len(parts))) and len(parts) >= 1
            ends = await log.end_offsets()
            assert set(ends) == set(parts)
            assert all(v == 0 for v in ends.values())
            assert isinstance(log, RawEventLog)

    async def test_append_then_read_back_equal(self) -> None:
        inst = self.instance()
        ev = make_event(inst, RuleAdded("r1", "be kind"), writer="w1", epoch=3,
                        hlc=Hlc(17, 2), deps=("x",), read_version=4)
        async with self.open_log() as log:
            pos = await log.append(ev)
            assert pos.partition == log.partition_of(inst)
            entries = await log.read(pos.partition, pos.offset, limit=10, timeout_s=5.0)
            assert entries[0].position == pos
            assert entries[0].event == ev and entries[0].error is None
            assert not entries[0].is_dead_letter
            assert (await log.end_offsets())[pos.partition] == pos.offset + 1

    async def test_order_per_instance_with_concurrent_writers(self) -> None:
        instances = [self.instance(f"o{k}") for k in range(6)]
        per = 25
        async with self.open_log() as log:
            acked: dict[str, list[LogPosition]] = {}

            async def write(inst: str) -> None:
                acked[inst] = [await log.append(turn(inst, n)) for n in range(per)]

            async with asyncio.TaskGroup() as tg:
                for inst in instances:
                    tg.create_task(write(inst))
            for inst in instances:
                part = log.partition_of(inst)
                got = events_of(await read_partition(log, part), inst)
                assert [e.hlc.wall for e in got] == list(range(per)), inst
                assert all(p.partition == part for p in acked[inst])
                assert [p.offset for p in acked[inst]] == sorted(p.offset for p in acked[inst])

    async def test_offsets_strictly_increasing(self) -> None:
        insts = [self.instance(f"s{k}") for k in range(4)]
        evs = [turn(insts[n % 4], n // 4) for n in range(80)]
        async with self.open_log() as log:
            positions = await log.append_batch(evs)
            assert len(positions) == len(evs)
            assert len(set(positions)) == len(positions)
            by_part: dict[int, list[int]] = {}
            for ev, pos in zip(evs, positions, strict=True):
                assert pos.partition == log.partition_of(ev.instance_id)
                by_part.setdefault(pos.partition, []).append(pos.offset)
            ends = await log.end_offsets()
            for part, offs in by_part.items():
                assert all(a < b for a, b in itertools.pairwise(offs)), offs
                read_offs = [e.position.offset for e in await read_partition(log, part)]
                assert all(a < b for a, b in itertools.pairwise(read_offs))
                assert ends[part] == offs[-1] + 1

    async def test_read_from_offset_and_limit(self) -> None:
        inst = self.instance()
        async with self.open_log() as log:
            positions = await log.append_batch([turn(inst, n) for n in range(30)])
            part = positions[0].partition
            got = await log.read(part, positions[10].offset, limit=5, timeout_s=5.0)
            assert 1 <= len(got) <= 5
            assert [e.position for e in got] == positions[10:10 + len(got)]
            # reading backwards again after reading forwards works (seek)
            again = await log.read(part, positions[2].offset, limit=3, timeout_s=5.0)
            assert again[0].position == positions[2]

    async def test_read_at_end_is_bounded(self) -> None:
        inst = self.instance()
        async with self.open_log() as log:
            pos = await log.append(turn(inst, 0))
            t0 = time.monotonic()
            assert await log.read(pos.partition, pos.offset + 1, timeout_s=0.3) == []
            assert time.monotonic() - t0 < 0.3 + self.read_slack_s
            # past the end: still nothing (never records from before the asked offset)
            for _ in range(2):
                assert await log.read(pos.partition, pos.offset + 10, timeout_s=0.3) == []
            got = await log.read(pos.partition, pos.offset, timeout_s=5.0)
            assert [e.position for e in got] == [pos]

    async def test_unknown_partition_is_a_typed_error(self) -> None:
        async with self.open_log() as log:
            with pytest.raises(LogError):
                await log.read(10_000, 0, timeout_s=0.1)

    async def test_lifecycle(self) -> None:
        log = self.open_log()
        with pytest.raises(LogClosed):
            await log.append(turn(self.instance(), 0))
        await log.start()
        await log.start()  # idempotent
        await log.append(turn(self.instance(), 0))
        await log.stop()
        await log.stop()  # safe twice
        with pytest.raises(LogClosed):
            await log.end_offsets()

    # -- durability ------------------------------------------------------------

    async def test_data_survives_reopen(self) -> None:
        inst = self.instance()
        evs = [turn(inst, n) for n in range(40)]
        async with self.open_log() as log:
            positions = await log.append_batch(evs)
        async with self.open_log() as log:
            got = await read_partition(log, positions[0].partition)
            assert events_of(got, inst) == evs
            assert [e.position for e in got if e.event in evs] == positions

    async def test_survives_backend_restart(self) -> None:
        inst = self.instance("r")
        async with self.open_log() as log:
            part = log.partition_of(inst)
            before = [turn(inst, n) for n in range(20)]
            await log.append_batch(before)
            async with self.disrupted(log, part) as others:
                during = [turn(inst, n) for n in range(20 + len(others), 40 + len(others))]
                for ev in during:  # acked while the failure is in effect
                    await log.append(ev)
            after = [turn(inst, n) for n in range(40 + len(others), 50 + len(others))]
            await log.append_batch(after)
        async with self.open_log() as log:
            got = events_of(await read_partition(log, part), inst)
        expected = before + others + during + after
        assert [e.event_id for e in got] == [e.event_id for e in expected]
        assert [e.hlc.wall for e in got] == list(range(len(expected)))

    # -- idempotency ---------------------------------------------------------

    async def test_retried_append_does_not_duplicate(self) -> None:
        inst = self.instance("d")
        e1, e2, e3, e4 = (turn(inst, n) for n in range(4))
        async with self.open_log() as log:
            p1 = await log.append(e1)
            assert await log.append(e1) == p1  # plain retry
            p2, p1_again = await log.append_batch([e2, e1])  # retry inside a batch
            assert p1_again == p1
            # a retry racing the first attempt
            p3a, p3b = await asyncio.gather(log.append(e3), log.append(e3))
            assert p3a == p3b
            # the same event twice in one batch
            p4a, p4b = await log.append_batch([e4, e4])
            assert p4a == p4b
            got = events_of(await read_partition(log, p1.partition), inst)
            assert [e.event_id for e in got] == [e1.event_id, e2.event_id, e3.event_id,
                                                e4.event_id]
            assert len({p1, p2, p3a, p4a}) == 4
            assert p1 < p2 < p3a < p4a

    # -- corrupt records -----------------------------------------------------

    async def test_corrupt_record_is_dead_lettered_and_reader_goes_on(self) -> None:
        inst = self.instance("c")
        good1, good2 = turn(inst, 0), turn(inst, 1)
        garbage = b"\xff\x00 not an event"
        future = msgspec.json.encode({
            "event_id": str(uuid.uuid4()), "instance_id": inst, "kind": "turn_appended",
            "schema_version": 99, "payload": {"role": "user", "content": "x"}, "writer": "w"})
        unknown_kind = msgspec.json.encode({
            "event_id": str(uuid.uuid4()), "instance_id": inst, "kind": "teleported",
            "schema_version": 1, "payload": {}, "writer": "w"})
        async with self.open_log() as log:
            p_good1 = await log.append(good1)
            p_bad = await log.append_raw(inst, garbage)
            p_future = await log.append_raw(inst, future)
            p_kind = await log.append_raw(inst, unknown_kind)
            p_good2 = await log.append(good2)
            assert p_bad.partition == p_good1.partition == p_good2.partition
            got = await read_partition(log, p_good1.partition, p_good1.offset)
        assert [e.position for e in got] == [p_good1, p_bad, p_future, p_kind, p_good2]
        assert got[0].event == good1 and got[-1].event == good2
        for entry, raw in zip(got[1:4], (garbage, future, unknown_kind), strict=True):
            assert entry.is_dead_letter and entry.event is None
            assert entry.raw == raw  # kept, not dropped
            assert isinstance(entry.error, EventDecodeError)
            assert entry.error.partition == entry.position.partition
            assert entry.error.offset == entry.position.offset
            assert entry.error.raw == raw
            assert f"offset {entry.position.offset}" in str(entry.error)
        assert isinstance(got[2].error, UnknownSchemaVersion)

    async def test_old_schema_version_is_upcast_on_read(self) -> None:
        inst = self.instance("u")
        v1 = msgspec.json.encode({
            "event_id": str(uuid.uuid4()), "instance_id": inst, "kind": "turn_appended",
            "schema_version": 1, "payload": {"speaker": "user", "text": "hi"}, "writer": "w"})
        async with self.open_log() as log:
            pos = await log.append_raw(inst, v1)
            entry = (await log.read(pos.partition, pos.offset, limit=1, timeout_s=5.0))[0]
        assert entry.event is not None
        assert entry.event.schema_version == 2
        assert entry.event.payload == TurnAppended("user", "hi")
