"""SqliteEventLog: the embedded, zero-setup EventLog adapter (one SQLite file).

Why it looks like this:

- WAL mode, so readers (a projector in another process, `log tail`) never
  block the writer and see each commit as soon as it lands.
- One writer task per adapter does group commit: concurrent `append` calls
  from many tasks are queued and written in one `BEGIN IMMEDIATE`
  transaction, so they are safe and cheap. `BEGIN IMMEDIATE` plus SQLite's
  file lock serialises writers from other processes; offsets are computed
  inside that lock, so they stay dense and strictly increasing per partition.
- `event_id` has a unique index: a retried append returns the original
  position instead of writing a duplicate, across processes and reopens.
- `append_atomic` needs nothing more: every request's records go in one
  transaction (group commit only puts several requests in the same one).
- Reads fetch big batches on their own connection and thread and decode with
  msgspec, because replay speed bounds how fast an instance rehydrates.
- The partition count is stored in the file, so every opener agrees on where
  an instance lives (same murmur2 partitioner as Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from selfhood.errors import (
    EventDecodeError,
    LogClosed,
    LogError,
    LogTimeout,
    LogUnavailable,
    LogUrlError,
    NoSuchLog,
    NotALog,
)
from selfhood.eventlog.base import EventLogBase, LogBatch, LogEntry, LogPosition
from selfhood.eventlog.partitioning import partition_for
from selfhood.events import Event, decode, encode

DEFAULT_PARTITIONS: Final = 8

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS records ("
    " part INTEGER NOT NULL, off INTEGER NOT NULL, event_id TEXT,"
    " instance_id TEXT NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY (part, off)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX IF NOT EXISTS records_event_id ON records (event_id)"
    " WHERE event_id IS NOT NULL",
)


# One write request: (event_id or None for raw, instance_id, bytes, partition or None
# for the instance's own) per record.
_Record = tuple[str | None, str, bytes, int | None]


class _WriteRequest:
    __slots__ = ("future", "records")

    def __init__(self, records: list[_Record], future: asyncio.Future[list[LogPosition]]) -> None:
        self.records = records
        self.future = future


def read_only_uri(path: str | Path) -> tuple[str, bool]:
    """(SQLite URI, immutable?) that opens `path` for reading and never writes beside it.

    A read-only connection to a WAL database still creates the ``-wal`` and
    ``-shm`` files, and cannot remove them when it closes (that takes a
    checkpoint). Without a ``-wal`` file no writer is using the log and every
    commit is in the main file, so it is opened ``immutable`` (no lock, no
    WAL, nothing created); a caller that keeps reading reopens when that stops
    being true (`SqliteEventLog._reader`). With a ``-wal`` file a writer is
    (or was) at work and its files are already there: plain ``mode=ro``, which
    reads its uncheckpointed commits through them.
    """
    p = Path(path).absolute()
    immutable = not Path(f"{p}-wal").exists()
    return f"{p.as_uri()}?mode=ro" + ("&immutable=1" if immutable else ""), immutable


def _file_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _map_sqlite_error(exc: sqlite3.Error, path: str) -> LogError:
    """Driver errors never leak: a lock wait that ran out is a timeout, a file that is not
    a database (or a damaged one) malformed input, the rest unavailable."""
    msg = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg):
        return LogTimeout(f"sqlite log {path}: {msg}")
    code = getattr(exc, "sqlite_errorcode", None)  # extended code; the low byte is the primary
    if code is not None and code & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return NotALog(f"sqlite log {path}: {msg}")
    return LogUnavailable(f"sqlite log {path}: {msg}")


class SqliteEventLog(EventLogBase):
    """EventLog on one SQLite file; safe for concurrent tasks and processes.

    ``create=False`` opens read-only (read-only tools): it never creates the
    file or its tables and refuses a file that is not a selfhood log.
    """

    def __init__(self, path: str | Path, *, partitions: int | None = None,
                 synchronous: str = "FULL", busy_timeout_s: float = 30.0,
                 max_group: int = 512, create: bool = True) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        self._create = create
        self._want_partitions = partitions
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._max_group = max_group
        self._partitions = 0
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._wexec: ThreadPoolExecutor | None = None
        self._rexec: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_WriteRequest | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._read_lock = asyncio.Lock()
        #: read-only reader opened immutable: the file's (inode, size, mtime) then
        self._immutable_stamp: tuple[int, int, int] | None = None

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._wconn is not None:
            return
        if self._want_partitions is not None and self._want_partitions < 1:
            raise LogUrlError(f"partitions must be >= 1, got {self._want_partitions}")
        self._wexec = ThreadPoolExecutor(1, thread_name_prefix="sqlite-log-w")
        self._rexec = ThreadPoolExecutor(1, thread_name_prefix="sqlite-log-r")
        loop = asyncio.get_running_loop()
        try:
            self._wconn = await loop.run_in_executor(self._wexec, self._open_writer)
            self._rconn = await loop.run_in_executor(self._rexec, self._open_reader)
        except BaseException:
            await self._close_all()
            raise
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(),
                                           name=f"sqlite-log-writer {self.path}")

    async def stop(self) -> None:
        """Flush queued appends, then close; safe to call twice."""
        if self._writer is not None and self._queue is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)
        self._writer = None
        self._queue = None
        await self._close_all()

    async def _close_all(self) -> None:
        loop = asyncio.get_running_loop()
        for conn, ex in ((self._wconn, self._wexec), (self._rconn, self._rexec)):
            if conn is not None and ex is not None:
                with contextlib.suppress(sqlite3.Error):
                    await loop.run_in_executor(ex, conn.close)
        for ex in (self._wexec, self._rexec):
            if ex is not None:
                ex.shutdown(wait=False)
        self._wconn = self._rconn = None
        self._wexec = self._rexec = None

    def _connect(self) -> sqlite3.Connection:
        try:
            parent = Path(self.path).parent
            if not self._create and not Path(self.path).exists():
                raise NoSuchLog(f"no log at {self.path} (sqlite file does not exist)")
            if not parent.exists():
                raise LogUnavailable(f"sqlite log {self.path}: directory {parent} does not exist")
            target, uri = self.path, False
            if not self._create:  # read-only tools: no table, journal, pragma or file is written
                stamp = _file_stamp(self.path)
                target, immutable = read_only_uri(self.path)
                uri = True
                self._immutable_stamp = stamp if immutable else None
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_timeout_s, uri=uri)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            return conn
        except sqlite3.Error as exc:
            raise _map_sqlite_error(exc, self.path) from None

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        if not self._create:
            return self._open_existing(conn)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                row = conn.execute("SELECT value FROM meta WHERE key = 'partitions'").fetchone()
                if row is None:
                    n = self._want_partitions or DEFAULT_PARTITIONS
                    conn.execute("INSERT INTO meta (key, value) VALUES ('partitions', ?)",
                                 (str(n),))
                else:
                    n = int(row[0])
                    if self._want_partitions is not None and self._want_partitions != n:
                        raise LogUrlError(
                            f"sqlite log {self.path} has {n} partitions, "
                            f"but partitions={self._want_partitions} was asked for")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._partitions = n
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _map_sqlite_error(exc, self.path) from None
        except BaseException:
            conn.close()
            raise

    def _open_existing(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """A read-only open: refuse (never repair) a file that is not a selfhood log."""
        try:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = None
            if {"meta", "records"} <= tables:
                row = conn.execute("SELECT value FROM meta WHERE key = 'partitions'").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _map_sqlite_error(exc, self.path) from None
        if row is None or not str(row[0]).isdigit():
            conn.close()
            raise NotALog(f"sqlite log {self.path}: not a selfhood log "
                          f"(no selfhood meta/records tables)")
        self._partitions = int(row[0])
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = 1")
        return conn

    def _reader(self) -> sqlite3.Connection:
        """The read connection, reopened first if it was opened immutable and is stale.

        An immutable open is only right while no writer touches the file: once
        a ``-wal`` appears or the file changed, the next read reopens (plain
        ``mode=ro`` if a writer is there), so ``tail --follow`` and
        ``project --follow`` see what is appended later.
        """
        conn = self._rconn
        if conn is None:
            raise LogClosed(f"sqlite log {self.path} is closed")
        stamp = self._immutable_stamp
        if stamp is not None and (Path(f"{self.path}-wal").exists()
                                  or _file_stamp(self.path) != stamp):
            self._rconn = None
            conn.close()
            self._rconn = conn = self._open_reader()
        return conn

    # -- appends ----------------------------------------------------------

    @property
    def partition_count(self) -> int:
        """How many partitions the file was created with (known after start())."""
        return self._partitions

    def partition_of(self, instance_id: str) -> int:
        """Where an instance's events go in this log."""
        return partition_for(instance_id, self._partitions)

    async def append(self, event: Event) -> LogPosition:
        return (await self._submit([(event.event_id, event.instance_id, encode(event),
                                     None)]))[0]

    async def append_batch(self, events: Sequence[Event]) -> list[LogPosition]:
        if not events:
            return []
        return await self._submit([(e.event_id, e.instance_id, encode(e), None)
                                   for e in events])

    async def append_atomic(self, entries: Sequence[tuple[int, Event]]) -> list[LogPosition]:
        """All-or-none across partitions: the request's records share one transaction."""
        if not entries:
            return []
        if self._queue is not None:
            for part, _event in entries:
                self._check_partition(part)
        return await self._submit([(e.event_id, e.instance_id, encode(e), part)
                                   for part, e in entries])

    async def append_raw(self, instance_id: str, data: bytes) -> LogPosition:
        """Append bytes as they are (for tests and tools that need a corrupt record)."""
        return (await self._submit([(None, instance_id, bytes(data), None)]))[0]

    async def _submit(self, records: list[_Record]) -> list[LogPosition]:
        if self._queue is None or self._writer is None or self._writer.done():
            raise LogClosed(f"sqlite log {self.path} is not started")
        fut: asyncio.Future[list[LogPosition]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_WriteRequest(records, fut))
        return await fut

    async def _write_loop(self) -> None:
        """Group commit: everything queued while the last commit ran goes in the next one."""
        assert self._queue is not None and self._wexec is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        closing = False
        while not closing:
            first = await queue.get()
            if first is None:
                break
            group = [first]
            while len(group) < self._max_group and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is None:
                    closing = True
                    break
                group.append(nxt)
            try:
                results = await loop.run_in_executor(
                    self._wexec, self._write_sync, [r.records for r in group])
            except LogError as exc:
                for r in group:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            except Exception as exc:
                err = LogError(f"sqlite log {self.path}: append failed: {exc!r}")
                for r in group:
                    if not r.future.done():
                        r.future.set_exception(err)
                continue
            except BaseException as exc:  # includes CancelledError: waiters must not hang
                for r in group:
                    if not r.future.done():
                        r.future.set_exception(LogClosed(f"sqlite log writer stopped: {exc!r}"))
                raise
            for r, positions in zip(group, results, strict=True):
                if not r.future.done():
                    r.future.set_result(positions)
        # Fail anything still queued after the close sentinel.
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None and not item.future.done():
                item.future.set_exception(LogClosed(f"sqlite log {self.path} was stopped"))

    def _write_sync(self, groups: list[list[_Record]]) -> list[list[LogPosition]]:
        conn = self._wconn
        if conn is None:
            raise LogClosed(f"sqlite log {self.path} is closed")
        n = self._partitions
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _map_sqlite_error(exc, self.path) from None
        try:
            # Inside BEGIN IMMEDIATE no other writer can run, so one lookup of the
            # batch's event ids is exact; new records then go in with executemany.
            ids = [r[0] for records in groups for r in records if r[0] is not None]
            known: dict[str, LogPosition] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for eid, part, off in conn.execute(
                        f"SELECT event_id, part, off FROM records WHERE event_id IN ({marks})",
                        chunk):
                    known[eid] = LogPosition(part, off)
            ends: dict[int, int] = {}
            rows: list[tuple[int, int, str | None, str, bytes]] = []
            out: list[list[LogPosition]] = []
            for records in groups:
                positions: list[LogPosition] = []
                for event_id, instance_id, data, given in records:
                    if event_id is not None:
                        old = known.get(event_id)
                        if old is not None:  # already in the log: a retry, not a new event
                            positions.append(old)
                            continue
                    part = partition_for(instance_id, n) if given is None else given
                    end = ends.get(part)
                    if end is None:
                        row = conn.execute(
                            "SELECT max(off) FROM records WHERE part = ?", (part,)).fetchone()
                        end = -1 if row[0] is None else int(row[0])
                    ends[part] = end + 1
                    pos = LogPosition(part, end + 1)
                    rows.append((part, end + 1, event_id, instance_id, data))
                    if event_id is not None:
                        known[event_id] = pos
                    positions.append(pos)
                out.append(positions)
            conn.executemany("INSERT INTO records (part, off, event_id, instance_id, data)"
                             " VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
            return out
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise _map_sqlite_error(exc, self.path) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    # -- reads --------------------------------------------------------------

    async def read(self, partition: int, from_offset: int, *, limit: int = 1000,
                   timeout_s: float = 1.0) -> LogBatch:
        """A batch of entries; polls every 20 ms, up to `timeout_s`, while nothing is there."""
        if self._rexec is None:
            raise LogClosed(f"sqlite log {self.path} is not started")
        self._check_partition(partition)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            async with self._read_lock:
                if self._rexec is None:
                    raise LogClosed(f"sqlite log {self.path} is closed")
                entries = await loop.run_in_executor(
                    self._rexec, self._read_sync, partition, max(from_offset, 0), limit)
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                nxt = entries[-1].position.offset + 1 if entries else max(from_offset, 0)
                return LogBatch(entries, nxt)
            await asyncio.sleep(min(0.02, remaining))

    def _read_sync(self, partition: int, from_offset: int, limit: int) -> list[LogEntry]:
        conn = self._reader()
        try:
            rows = conn.execute(
                "SELECT off, data FROM records WHERE part = ? AND off >= ? ORDER BY off LIMIT ?",
                (partition, from_offset, limit)).fetchall()
        except sqlite3.Error as exc:
            raise _map_sqlite_error(exc, self.path) from None
        out: list[LogEntry] = []
        append = out.append
        for off, data in rows:
            pos = LogPosition(partition, off)
            try:
                append(LogEntry(pos, data, decode(data, partition=partition, offset=off)))
            except EventDecodeError as exc:
                append(LogEntry(pos, data, None, exc.with_traceback(None)))
        return out

    async def read_events(self, partition: int, from_offset: int, until: int, *,
                          limit: int = 10_000) -> tuple[int, list[tuple[int, Event]]]:
        """(next offset, [(offset, event)]) of up to `limit` records in [from_offset, until).

        The replay fast path (`replay_log`): no `LogEntry` per record, never
        waits, and records that do not decode are skipped (a replay has
        nowhere to dead-letter them; `read` still returns them). The next
        offset is past the last record looked at, so a caller loops until it
        reaches `until` or gets no records.
        """
        if self._rexec is None:
            raise LogClosed(f"sqlite log {self.path} is not started")
        self._check_partition(partition)
        loop = asyncio.get_running_loop()
        async with self._read_lock:
            if self._rexec is None:
                raise LogClosed(f"sqlite log {self.path} is closed")
            return await loop.run_in_executor(self._rexec, self._read_events_sync, partition,
                                              max(from_offset, 0), until, limit)

    def _read_events_sync(self, partition: int, from_offset: int, until: int,
                          limit: int) -> tuple[int, list[tuple[int, Event]]]:
        conn = self._reader()
        try:
            rows = conn.execute(
                "SELECT off, data FROM records WHERE part = ? AND off >= ? AND off < ?"
                " ORDER BY off LIMIT ?", (partition, from_offset, until, limit)).fetchall()
        except sqlite3.Error as exc:
            raise _map_sqlite_error(exc, self.path) from None
        out: list[tuple[int, Event]] = []
        append = out.append
        for off, data in rows:
            try:
                append((off, decode(data, partition=partition, offset=off)))
            except EventDecodeError:
                continue
        return (rows[-1][0] + 1 if rows else from_offset), out

    async def end_offsets(self) -> dict[int, int]:
        if self._rexec is None:
            raise LogClosed(f"sqlite log {self.path} is not started")
        loop = asyncio.get_running_loop()
        async with self._read_lock:
            return await loop.run_in_executor(self._rexec, self._end_offsets_sync)

    def _end_offsets_sync(self) -> dict[int, int]:
        conn = self._reader()
        out: dict[int, int] = {}
        try:
            conn.execute("BEGIN")  # one snapshot for all partitions
            try:
                for p in range(self._partitions):
                    row = conn.execute("SELECT max(off) FROM records WHERE part = ?",
                                       (p,)).fetchone()
                    out[p] = 0 if row[0] is None else int(row[0]) + 1
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _map_sqlite_error(exc, self.path) from None
        return out

    async def partitions(self) -> list[int]:
        if self._wconn is None:
            raise LogClosed(f"sqlite log {self.path} is not started")
        return list(range(self._partitions))

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self._partitions:
            raise LogError(f"sqlite log {self.path} has no partition {partition} "
                           f"(partitions 0..{self._partitions - 1})")
