"""The EventLog contract: one suite, run unchanged against every adapter.

Each adapter's test module subclasses `EventLogContract` and supplies
`open_log()` (a fresh, unstarted adapter on the *same* log every call, so
reopening is testable), `log_url()` (the same log as a URL, for writer
processes) and `disrupted()` (the adapter's real failure: a writer process
killed with SIGKILL for SQLite, the partition leader broker killed with
kill -9 and restarted for Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest

from selfhood.errors import (
    EventDecodeError,
    LogClosed,
    LogError,
    LogTimeout,
    LogUnavailable,
    UnknownSchemaVersion,
)
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

#: Entries per atomic group in the all-or-none tests, spread over partitions.
GROUP = 4

# A writer process: atomic groups of GROUP events over partitions 0.., each printed
# once acknowledged, until it is SIGKILLed (or `count` groups are done). A group's
# events share hlc.wall = group number; hlc.logical is the entry's index.
_ATOMIC_WRITER = textwrap.dedent("""
    import asyncio, sys
    from selfhood.eventlog.url import open_log
    from selfhood.events import Hlc, TurnAppended, make_event

    async def main(url, writer, instance, first, count, group):
        async with open_log(url, writer=writer) as log:
            parts = await log.partitions()
            for g in range(first, first + count):
                entries = [(parts[j % len(parts)],
                            make_event(instance, TurnAppended("user", f"g{g} e{j}" * 40),
                                       writer=writer, hlc=Hlc(g, j)))
                           for j in range(group)]
                await log.append_atomic(entries)
                print(g, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                     int(sys.argv[5]), int(sys.argv[6])))
""")


def atomic_writer(url: str, writer: str, instance: str, first: int,
                  count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _ATOMIC_WRITER, url, writer, instance,
                             str(first), str(count), str(GROUP)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


async def visible_end(log: EventLog, partition: int, offset: int, limit: float = 10.0) -> int:
    """The partition's end once `offset` is readable (Kafka writes a transaction's commit
    markers just after the commit returns, so read_committed readers see it a moment later)."""
    deadline = time.monotonic() + limit
    while (end := (await log.end_offsets())[partition]) <= offset:
        assert time.monotonic() < deadline, f"offset {offset} not readable after {limit}s"
        await asyncio.sleep(0.01)
    return end


async def next_entries(log: EventLog, partition: int, offset: int) -> list[LogEntry]:
    """The first non-empty read at or after `offset`, following `next_offset` over gaps."""
    for _ in range(100):
        got = await log.read(partition, offset, limit=1, timeout_s=5.0)
        if got.entries:
            return got.entries
        assert got.next_offset > offset, f"no record after offset {offset}"
        offset = got.next_offset
    raise AssertionError(f"100 reads from offset {offset} found only gaps")


async def groups_in_log(log: EventLog, instance: str, writer: str) -> dict[int, set[int]]:
    """Per atomic group (hlc.wall) of `instance` by `writer`, the entry indexes readable."""
    groups: dict[int, set[int]] = {}
    for part in await log.partitions():
        for entry in await read_partition(log, part):
            ev = entry.event
            if ev is not None and ev.instance_id == instance and ev.writer == writer:
                assert ev.hlc.logical not in groups.get(ev.hlc.wall, set()), "duplicate"
                groups.setdefault(ev.hlc.wall, set()).add(ev.hlc.logical)
    return groups


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

    def log_url(self) -> str:
        """This test's log as a URL (`open_log` of it opens the same log)."""
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
            got = await log.read(pos.partition, pos.offset, limit=10, timeout_s=5.0)
            entries = got.entries
            assert got.next_offset == pos.offset + 1
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
            got = (await log.read(part, positions[10].offset, limit=5, timeout_s=5.0)).entries
            assert 1 <= len(got) <= 5
            assert [e.position for e in got] == positions[10:10 + len(got)]
            # reading backwards again after reading forwards works (seek)
            again = await log.read(part, positions[2].offset, limit=3, timeout_s=5.0)
            assert again.entries[0].position == positions[2]
            assert again.next_offset == again.entries[-1].position.offset + 1

    async def test_read_at_end_is_bounded(self) -> None:
        inst = self.instance()
        async with self.open_log() as log:
            pos = await log.append(turn(inst, 0))
            t0 = time.monotonic()
            empty = await log.read(pos.partition, pos.offset + 1, timeout_s=0.3)
            assert empty.entries == [] and empty.next_offset == pos.offset + 1
            assert time.monotonic() - t0 < 0.3 + self.read_slack_s
            # past the end: still nothing (never records from before the asked offset)
            for _ in range(2):
                past = await log.read(pos.partition, pos.offset + 10, timeout_s=0.3)
                assert past.entries == [] and past.next_offset == pos.offset + 10
            got = await log.read(pos.partition, pos.offset, timeout_s=5.0)
            assert [e.position for e in got.entries] == [pos]

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
            entry = (await log.read(pos.partition, pos.offset, limit=1, timeout_s=5.0)).entries[0]
        assert entry.event is not None
        assert entry.event.schema_version == 2
        assert entry.event.payload == TurnAppended("user", "hi")

    # -- atomic appends and gaps ------------------------------------------------

    async def test_atomic_append_across_partitions(self) -> None:
        inst = self.instance("a")
        async with self.open_log() as log:
            parts = await log.partitions()
            entries = [(parts[j % len(parts)], turn(inst, j)) for j in range(2 * len(parts))]
            positions = await log.append_atomic(entries)
            assert [p.partition for p in positions] == [p for p, _e in entries]
            assert await log.append_atomic(entries) == positions  # a retry writes nothing
            assert await log.append_atomic([]) == []
            lone = turn(inst, 99)
            single = await log.append_atomic([(parts[-1], lone)])
            assert single[0].partition == parts[-1]
            for part in parts:
                got = events_of(await read_partition(log, part), inst)
                want = [e for p, e in entries if p == part]
                if part == parts[-1]:
                    want.append(lone)
                assert [e.event_id for e in got] == [e.event_id for e in want], part
            with pytest.raises(LogError):
                await log.append_atomic([(10_000, turn(inst, 5)), (parts[0], turn(inst, 6))])

    async def test_reads_step_over_gaps_with_next_offset(self) -> None:
        """After atomic appends (Kafka: commit markers take offsets) readers still reach the end."""
        inst = self.instance("g")
        async with self.open_log() as log:
            part = log.partition_of(inst)
            first = await log.append_atomic([(part, turn(inst, 0)), (part, turn(inst, 1))])
            third = await log.append(turn(inst, 2))
            last = await log.append_atomic([(part, turn(inst, 3)), (part, turn(inst, 4))])
            end = await visible_end(log, part, last[-1].offset)
            got = await log.read(part, first[0].offset, limit=2, timeout_s=5.0)
            assert [e.position for e in got.entries] == first
            after = await next_entries(log, part, got.next_offset)
            assert [e.position for e in after] == [third]
            # a read may start on an offset no record has (a marker): it gets what follows
            from_gap = await next_entries(log, part, first[1].offset + 1)
            assert from_gap[0].position == third
            # every reader that follows next_offset arrives exactly at the end, promptly
            t0 = time.monotonic()
            offset, seen = first[0].offset, []
            while offset < end:
                batch = await log.read(part, offset, limit=1, timeout_s=5.0)
                assert batch.next_offset > offset
                assert all(e.position.offset >= offset for e in batch.entries)
                seen += [e.event.hlc.wall for e in batch.entries if e.event is not None]
                offset = batch.next_offset
            assert offset == end and seen == [0, 1, 2, 3, 4]
            assert [e.event.hlc.wall for e in await read_partition(log, part)
                    if e.event is not None] == [0, 1, 2, 3, 4]
            assert time.monotonic() - t0 < 4.0  # never waited out a timeout on a gap

    async def test_atomic_append_is_all_or_none_when_the_writer_is_killed(self) -> None:
        """kill -9 a writer in the middle of its atomic appends; a restarted writer of the
        same name goes on. Every group is wholly visible or not at all; acked ones are."""
        inst = self.instance("k")
        url = self.log_url()
        async with self.open_log() as log:
            await log.partitions()  # the log exists before the writer races to create it
        proc = atomic_writer(url, "crashy", inst, 0, 100_000)
        acked: list[int] = []
        try:
            assert proc.stdout is not None
            while len(acked) < 30:
                line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
                assert line, proc.stderr.read() if proc.stderr else ""
                acked.append(int(line))
            proc.send_signal(signal.SIGKILL)
            out, _err = await asyncio.to_thread(proc.communicate, timeout=30)
            acked += [int(x) for x in out.split()]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        restarted = atomic_writer(url, "crashy", inst, 1_000_000, 1)
        out, err = await asyncio.to_thread(restarted.communicate, timeout=120)
        assert restarted.returncode == 0, err
        t0 = time.monotonic()
        async with self.open_log() as log:
            groups = await groups_in_log(log, inst, "crashy")
        assert time.monotonic() - t0 < 8.0, "a dead writer's transaction blocked readers"
        full = set(range(GROUP))
        assert all(got == full for got in groups.values()), \
            {g: sorted(got) for g, got in groups.items() if got != full}
        assert set(acked) | {1_000_000} <= set(groups)

    async def test_atomic_append_is_all_or_none_through_a_disruption(self) -> None:
        """Atomic appends keep going while the backend fails (Kafka: the leader broker is
        killed with kill -9); each is wholly visible or not at all, every acked one is."""
        inst = self.instance("b")
        acked: list[int] = []
        failed: list[int] = []
        async with self.open_log() as log:
            parts = await log.partitions()
            home = log.partition_of(inst)
            await log.append(turn(inst, 0))  # the instance is in its partition before the failure
            stop = asyncio.Event()

            async def writer() -> None:
                g = 0
                while not stop.is_set():
                    entries = [(parts[(home + j) % len(parts)],
                                make_event(inst, TurnAppended("user", f"g{g} e{j}"),
                                           writer="atomic", hlc=Hlc(g, j)))
                               for j in range(GROUP)]
                    try:
                        await log.append_atomic(entries)
                        acked.append(g)
                    except (LogUnavailable, LogTimeout):
                        failed.append(g)
                    g += 1
                    await asyncio.sleep(0.01)

            async def acks(n: int) -> None:
                """Wait (bounded) until `n` more groups were acknowledged."""
                want = len(acked) + n
                async with asyncio.timeout(120):
                    while len(acked) < want:
                        assert not task.done(), task.exception()
                        await asyncio.sleep(0.05)

            task = asyncio.create_task(writer())
            try:
                await acks(3)
                async with self.disrupted(log, home):
                    await asyncio.sleep(1.0)
                await acks(3)  # and the log takes atomic appends again afterwards
            finally:
                stop.set()
                await task
        async with self.open_log() as log:
            groups = await groups_in_log(log, inst, "atomic")
        full = set(range(GROUP))
        assert all(got == full for got in groups.values()), \
            {g: sorted(got) for g, got in groups.items() if got != full}
        assert set(acked) <= set(groups)
        assert len(acked) >= 6, (acked, failed)
