"""The EventLog port: what every log adapter (embedded SQLite, Kafka) provides.

The log is partitioned; an instance's events all go to one partition (keyed by
instance id), so each instance has one total order. Positions are
(partition, offset) with offsets strictly increasing within a partition, but
not necessarily contiguous: Kafka's transaction markers and the records of
aborted transactions take offsets no reader ever sees. So every read returns
the records with their own offsets plus `LogBatch.next_offset`, the position
to resume from, and no reader computes "last offset + 1" itself.

`append_atomic` writes entries to several partitions all-or-none (a Kafka
transaction read ``read_committed``; one SQLite transaction): a reader sees
every entry of the call or none of them.

Adapters follow aiokafka's lifecycle: constructors do no IO, `start()` and
`stop()` are explicit (stop is safe twice), and `async with` calls both.
Every wait is bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import msgspec

from selfhood.errors import EventDecodeError
from selfhood.events import Event


class LogPosition(msgspec.Struct, frozen=True, order=True, gc=False):
    """Where a record sits: its partition and offset within that partition.

    A msgspec Struct rather than a dataclass: replay builds one per record,
    and Struct construction is several times cheaper; ``gc=False`` because
    these never form reference cycles and replay keeps millions alive.
    """

    partition: int
    offset: int


class LogEntry(msgspec.Struct, frozen=True, gc=False):
    """One record read back from the log.

    Exactly one of `event` / `error` is set. A record that does not decode is
    still returned (with its raw bytes and the typed error) so the reader can
    dead-letter it and go on; nothing is silently dropped.
    """

    position: LogPosition
    raw: bytes
    event: Event | None
    error: EventDecodeError | None = None

    @property
    def is_dead_letter(self) -> bool:
        return self.event is None


class LogBatch(msgspec.Struct, frozen=True, gc=False):
    """What one `EventLog.read` returns: entries in offset order, and where to go on.

    ``next_offset`` is past every entry *and* every offset the log skipped
    (transaction markers, aborted records), so a reader resumes there. A batch
    with no entries but ``next_offset`` beyond the asked offset is progress
    over a gap; one that did not move means nothing arrived in time.
    """

    entries: list[LogEntry]
    next_offset: int


@runtime_checkable
class EventLog(Protocol):
    """Append-only, partitioned event log."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def append(self, event: Event) -> LogPosition:
        """Append one event (key = instance id); returns once durable."""
        ...

    async def append_batch(self, events: Sequence[Event]) -> list[LogPosition]:
        """Append several events; positions are returned in input order.

        Not atomic: after a failure some of them may be in the log.
        """
        ...

    async def append_atomic(self, entries: Sequence[tuple[int, Event]]) -> list[LogPosition]:
        """Append (partition, event) pairs all-or-none; positions in input order.

        The partition is the caller's (sharded memory puts an instance's
        memory events on another partition than its transcript). Readers see
        all entries or none, also across a crash of the writer or a broker.
        A retry of the same entries through the same adapter does not write
        them twice. `LogTimeout` means the outcome is unknown.
        """
        ...

    async def read(self, partition: int, from_offset: int, *, limit: int = 1000,
                   timeout_s: float = 1.0) -> LogBatch:
        """Up to `limit` entries of one partition at or after `from_offset`.

        Waits up to `timeout_s` for something to arrive; the batch is then
        empty and its ``next_offset`` says where to resume (see `LogBatch`).
        """
        ...

    async def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next appended record will get."""
        ...

    async def partitions(self) -> list[int]: ...


@runtime_checkable
class RawEventLog(EventLog, Protocol):
    """An EventLog that can also take raw bytes (tests and tools inject corrupt records)."""

    async def append_raw(self, instance_id: str, data: bytes) -> LogPosition:
        """Append `data` unvalidated under key `instance_id`; no idempotency applies."""
        ...


async def scan(log: EventLog, partition: int, from_offset: int = 0, *,
               until: int | None = None, batch: int = 5000,
               timeout_s: float = 2.0) -> AsyncIterator[LogEntry]:
    """Every entry of one partition from `from_offset` up to `until` (exclusive).

    `until` defaults to the partition's end when the scan starts, so a replay
    terminates even while writers keep appending. Gaps (transaction markers,
    aborted records) are stepped over through `LogBatch.next_offset`; a read
    that makes no progress for `timeout_s` ends the scan early (a record
    below `until` that never becomes readable). Used by replay/rehydrate,
    `log tail` and `log bench`.
    """
    if until is None:
        until = (await log.end_offsets()).get(partition, 0)
    offset = from_offset
    while offset < until:
        got = await log.read(partition, offset, limit=batch, timeout_s=timeout_s)
        for entry in got.entries:
            if entry.position.offset >= until:
                return
            yield entry
        if got.next_offset <= offset:
            return
        offset = got.next_offset


class EventLogBase:
    """Shared `async with` support for adapters."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
