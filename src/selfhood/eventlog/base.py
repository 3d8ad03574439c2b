"""The EventLog port: what every log adapter (embedded SQLite, Kafka) provides.

The log is partitioned; an instance's events all go to one partition (keyed by
instance id), so each instance has one total order. Positions are
(partition, offset) with offsets strictly increasing within a partition.

Adapters follow aiokafka's lifecycle: constructors do no IO, `start()` and
`stop()` are explicit (stop is safe twice), and `async with` calls both.
Every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from selfhood.errors import EventDecodeError
from selfhood.events import Event


@dataclass(frozen=True, slots=True, order=True)
class LogPosition:
    """Where a record sits: its partition and offset within that partition."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class LogEntry:
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


@runtime_checkable
class EventLog(Protocol):
    """Append-only, partitioned event log."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def append(self, event: Event) -> LogPosition:
        """Append one event (key = instance id); returns once durable."""
        ...

    async def append_batch(self, events: Sequence[Event]) -> list[LogPosition]:
        """Append several events; positions are returned in input order."""
        ...

    async def read(self, partition: int, from_offset: int, *, limit: int = 1000,
                   timeout_s: float = 1.0) -> list[LogEntry]:
        """Up to `limit` entries of one partition starting at `from_offset`.

        Returns an empty list if nothing arrives within `timeout_s`.
        """
        ...

    async def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next appended record will get."""
        ...

    async def partitions(self) -> list[int]: ...


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
