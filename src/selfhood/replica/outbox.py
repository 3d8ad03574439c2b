"""The eventual mode's durable outbox: acknowledged writes the log may not have yet.

An eventual replica acknowledges a write before the log has it, so until
the log confirms it the outbox is the only copy. The node writes the whole
outbox (`Replica.durable_outbox()`) to one file and fsyncs it *before* the
acknowledgement leaves; after ``kill -9`` the next incarnation reads it back
and hands it to `Replica.recover`, which merges and ships it again.

The file is rewritten atomically (temp file, fsync, rename, fsync of the
directory), so a crash mid-write leaves the previous complete version. The
outbox stays small (it is shipped every few milliseconds), so rewriting it
whole is cheaper than keeping an append-only journal with compaction.
Concurrent writes share one fsync (group commit, see `node`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Final

import msgspec

from selfhood.errors import EventDecodeError, OutboxCorrupt, ReplicaError
from selfhood.events import Event, decode, encode

FILE_NAME: Final = "outbox.msgpack"
_FORMAT: Final = 1


class _File(msgspec.Struct, array_like=True):
    format: int
    entries: list[tuple[int, bytes]]


class DurableOutbox:
    """One file in the replica's data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.path = data_dir / FILE_NAME
        self.writes = 0
        self.last_size = 0

    def load(self) -> list[tuple[int, Event]]:
        """What the previous incarnation acknowledged and did not see shipped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ReplicaError(f"{self.path}: cannot read the outbox: "
                               f"{exc.strerror or exc}") from None
        try:
            f = msgspec.msgpack.decode(raw, type=_File)
        except msgspec.DecodeError as exc:
            raise OutboxCorrupt(f"{self.path}: outbox file does not decode: {exc}") from None
        if f.format != _FORMAT:
            raise OutboxCorrupt(f"{self.path}: outbox format {f.format} is not {_FORMAT}")
        out: list[tuple[int, Event]] = []
        for i, (partition, data) in enumerate(f.entries):
            try:
                out.append((partition, decode(data)))
            except EventDecodeError as exc:
                raise OutboxCorrupt(f"{self.path}: outbox entry {i}: {exc}") from None
        return out

    def _write(self, entries: list[tuple[int, Event]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = msgspec.msgpack.encode(_File(_FORMAT, [(p, encode(e)) for p, e in entries]))
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.writes += 1
        self.last_size = len(entries)

    async def save(self, entries: list[tuple[int, Event]]) -> None:
        """Durably replace the file's content (the fsync runs off the event loop)."""
        await asyncio.to_thread(self._write, entries)
