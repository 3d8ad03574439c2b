"""SQL projection store (SQLAlchemy 2 async): read models, snapshots, tracking.

Why it looks like this:

- One store serves PostgreSQL (asyncpg) for real runs and SQLite (aiosqlite)
  as the embedded default; URLs as printed by ``selfhood cluster status``
  (``postgresql://...``) and plain ``sqlite:///path`` are mapped to the async
  drivers here so users never type a driver name.
- Exactly once: every batch the projector writes (row changes, snapshots,
  dead letters) goes in ONE transaction together with the tracking row
  (reader, partition, position). A crash before commit loses the whole batch
  and the projector redoes it from the old tracking position; a crash after
  commit never redoes it. Unique keys (instance, event id) make a duplicate
  row impossible even if something else went wrong.
- Schema creation is idempotent (``CREATE ... IF NOT EXISTS`` via
  ``checkfirst``) and versioned in ``projection_meta``; a database written by
  another schema version is refused with a typed error that says to rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    event,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from selfhood.errors import ProjectionError, StoreUrlError
from selfhood.eventlog.base import LogPosition
from selfhood.events import Hlc
from selfhood.projections.state import (
    CaseEntry,
    InstanceState,
    MemoryRecord,
    Mode,
    Outcome,
    OwnerEntry,
    RuleEntry,
    Turn,
)

#: Bump when a table changes; old databases are refused (rebuild them).
STORE_SCHEMA: Final = 2  # 2: HLC wall times are 64-bit (real clocks exceed int32)

metadata = MetaData()

projection_meta = Table(
    "projection_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
instances = Table(
    "instances", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("partition", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("owner", Text),
    Column("fingerprint", String(64), nullable=False),
)
transcript = Table(
    "transcript", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hlc_wall", BigInteger, nullable=False),
    Column("hlc_logical", Integer, nullable=False),
    Column("writer", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
)
memory = Table(
    "memory", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("module", String(32), primary_key=True),
    # subtask/tool: the record key; case_bank: the event id (cases only grow)
    Column("record_id", String(255), primary_key=True),
    Column("key", Text, nullable=False),
    Column("value", Text),
    Column("situation", Text),
    Column("plan", Text),
    Column("reward", Float),
    Column("seq", Integer, nullable=False),
    Column("hlc_wall", BigInteger, nullable=False),
    Column("hlc_logical", Integer, nullable=False),
    Column("writer", Text, nullable=False),
    Column("event_id", String(64), nullable=False),
)
rules = Table(
    "rules", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("rule_id", String(255), primary_key=True),
    Column("text", Text),
    Column("added_event_id", String(64)),
    Column("added_hlc_wall", BigInteger),
    Column("added_hlc_logical", Integer),
    Column("added_writer", Text),
    Column("revoked", Boolean, nullable=False),
    Column("reason", Text),
    Column("revoked_event_id", String(64)),
    Column("revoked_hlc_wall", BigInteger),
    Column("revoked_hlc_logical", Integer),
    Column("revoked_writer", Text),
)
rejected = Table(
    "rejected", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("outcome", String(16), nullable=False),
)
snapshots = Table(
    "snapshots", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)
dead_letters = Table(
    "dead_letters", metadata,
    Column("reader", String(128), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", Integer, primary_key=True),
    Column("instance_id", Text),
    Column("error", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
)
tracking = Table(
    "tracking", metadata,
    Column("reader", String(128), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("position", Integer, nullable=False),
)

ALL_TABLES: Final = (instances, transcript, memory, rules, rejected, snapshots, dead_letters,
                     tracking, projection_meta)


def async_db_url(url: str) -> str:
    """Map a user-facing DB URL to its async driver; raise `StoreUrlError` otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreUrlError(f"database URL {url!r} is malformed; use sqlite:///path.db or "
                            f"postgresql://user@host:port/db") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg"):
            raise StoreUrlError(f"database URL {url!r}: driver {driver!r} is not supported "
                                f"(use postgresql:// or postgresql+asyncpg://)")
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise StoreUrlError(f"database URL {url!r}: driver {driver!r} is not supported "
                                f"(use sqlite:///path.db)")
        if not parsed.database or parsed.database == ":memory:":
            raise StoreUrlError(f"database URL {url!r}: needs a file (sqlite:///path.db)")
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise StoreUrlError(f"database URL {url!r}: unsupported backend {backend!r} "
                        f"(use sqlite or postgresql)")


def is_db_url(url: str) -> bool:
    """True for URLs only a projection store can mean (postgres, explicit aiosqlite)."""
    head = url.split("://", 1)[0]
    return head.startswith(("postgresql", "postgres")) or head == "sqlite+aiosqlite"


@dataclass
class Changes:
    """Row changes of one batch, keyed by primary key so the last write wins."""

    transcript: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    memory: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    rules: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rejected: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    tracking: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return (len(self.transcript) + len(self.memory) + len(self.rules) + len(self.rejected)
                + len(self.instances) + len(self.snapshots) + len(self.dead_letters))


def _rule_row(state: InstanceState, rule_id: str) -> dict[str, Any]:
    add = state.rule_adds.get(rule_id)
    rev = state.revoked.get(rule_id)
    return {
        "instance_id": state.instance_id, "rule_id": rule_id,
        "text": add.text if add else None,
        "added_event_id": add.event_id if add else None,
        "added_hlc_wall": add.hlc.wall if add else None,
        "added_hlc_logical": add.hlc.logical if add else None,
        "added_writer": add.writer if add else None,
        "revoked": rev is not None,
        "reason": rev.text if rev else None,
        "revoked_event_id": rev.event_id if rev else None,
        "revoked_hlc_wall": rev.hlc.wall if rev else None,
        "revoked_hlc_logical": rev.hlc.logical if rev else None,
        "revoked_writer": rev.writer if rev else None,
    }


def record_changes(changes: Changes, state: InstanceState, kind: str, event_id: str,
                   key: str | None, outcome: Outcome) -> None:
    """Turn one reducer outcome into row changes (reads the state *after* the apply).

    `key` is the memory key or rule id the event names (None for other kinds).
    """
    iid = state.instance_id
    if outcome == "duplicate":
        return
    if outcome != "applied":
        changes.rejected[(iid, event_id)] = {"instance_id": iid, "event_id": event_id,
                                             "outcome": outcome}
        return
    if kind == "turn_appended":
        # sequential: the new turn is last; eventual: found by id near the end
        for seq in range(len(state.transcript) - 1, -1, -1):
            t = state.transcript[seq]
            if t.event_id == event_id:
                changes.transcript[(iid, event_id)] = {
                    "instance_id": iid, "event_id": event_id, "seq": state.version,
                    "hlc_wall": t.hlc.wall, "hlc_logical": t.hlc.logical, "writer": t.writer,
                    "role": t.role, "content": t.content}
                break
    elif kind == "memory_written":
        assert key is not None
        for module, recs in state.memory.items():
            rec = recs.get(key)
            if rec is not None and rec.event_id == event_id:
                changes.memory[(iid, module, key)] = {
                    "instance_id": iid, "module": module, "record_id": key, "key": key,
                    "value": rec.value, "situation": None, "plan": None, "reward": None,
                    "seq": state.version, "hlc_wall": rec.hlc.wall,
                    "hlc_logical": rec.hlc.logical, "writer": rec.writer,
                    "event_id": event_id}
                return
        for i in range(len(state.case_bank) - 1, -1, -1):
            c = state.case_bank[i]
            if c.event_id == event_id:
                changes.memory[(iid, "case_bank", event_id)] = {
                    "instance_id": iid, "module": "case_bank", "record_id": event_id,
                    "key": c.key, "value": None, "situation": c.situation, "plan": c.plan,
                    "reward": c.reward, "seq": state.version, "hlc_wall": c.hlc.wall,
                    "hlc_logical": c.hlc.logical, "writer": c.writer, "event_id": event_id}
                return
    elif kind in ("rule_added", "rule_revoked"):
        assert key is not None
        changes.rules[(iid, key)] = _rule_row(state, key)


def instance_row(state: InstanceState, partition: int, fp: str) -> dict[str, Any]:
    return {"instance_id": state.instance_id, "partition": partition, "version": state.version,
            "epoch": state.epoch, "owner": state.owner, "fingerprint": fp}


class SqlProjectionStore:
    """The projection's tables in one database (`SqlProjectionStore(url)`, then `start()`)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.async_url = async_db_url(url)
        self.backend = "sqlite" if self.async_url.startswith("sqlite") else "postgresql"
        self._echo = echo
        self._engine: AsyncEngine | None = None
        self._sql_cache: dict[tuple[str, tuple[str, ...], bool], str] = {}
        #: SQLite: snapshot loads reuse one read-only connection in one thread
        self._snap_conn: sqlite3.Connection | None = None
        self._snap_exec: ThreadPoolExecutor | None = None

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Connect and create the schema (idempotent); refuses another schema version."""
        if self._engine is not None:
            return
        if self.backend == "sqlite":
            path = Path(make_url(self.async_url).database or "")
            if not path.parent.is_dir():
                raise ProjectionError(f"projection store {self.url}: directory "
                                      f"{path.parent} does not exist")
            # pooled, not a connection per call: opening an aiosqlite connection (its
            # thread, the file, the pragmas) cost as much as reading a 100k-event
            # snapshot, and failover rehydration reads one per instance
            engine = create_async_engine(self.async_url, echo=self._echo, pool_size=2,
                                         max_overflow=2)

            @event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                # snapshots are megabytes of overflow pages: read them through a map
                # instead of a read() per 4 KiB page (halves a 100k-event snapshot load)
                cur.execute("PRAGMA mmap_size=268435456")
                cur.close()
        else:
            engine = create_async_engine(self.async_url, echo=self._echo, pool_size=2,
                                         max_overflow=2)
        self._engine = engine
        try:
            await self._create_schema()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Dispose the engine; safe to call twice."""
        if self._snap_exec is not None:
            ex, self._snap_exec = self._snap_exec, None
            if self._snap_conn is not None:
                conn, self._snap_conn = self._snap_conn, None
                with contextlib.suppress(sqlite3.Error):
                    await asyncio.get_running_loop().run_in_executor(ex, conn.close)
            ex.shutdown(wait=False)
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def __aenter__(self) -> SqlProjectionStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise ProjectionError(f"projection store {self.url} is not started")
        return self._engine

    def _wrap(self, exc: Exception, what: str) -> ProjectionError:
        return ProjectionError(f"projection store {self.url}: {what} failed: "
                               f"{str(exc).splitlines()[0] if str(exc) else exc!r}")

    async def _create_schema(self) -> None:
        for attempt in range(5):
            try:
                async with self.engine.begin() as conn:
                    await conn.run_sync(metadata.create_all, checkfirst=True)
                    row = (await conn.execute(select(projection_meta.c.value).where(
                        projection_meta.c.key == "schema"))).first()
                    if row is None:
                        await conn.execute(projection_meta.insert().values(
                            key="schema", value=str(STORE_SCHEMA)))
                    elif row[0] != str(STORE_SCHEMA):
                        raise ProjectionError(
                            f"projection store {self.url} has schema v{row[0]}, this code "
                            f"writes v{STORE_SCHEMA}; run `selfhood projections rebuild`")
                return
            except (DBAPIError, OSError) as exc:
                # two processes creating the schema at once: one loses a race, retry
                if attempt == 4:
                    raise self._wrap(exc, "schema creation") from None
                await asyncio.sleep(0.2 * (attempt + 1))

    async def drop_database_tables(self) -> None:
        """Drop every projection table without starting (works on any schema version)."""
        engine = create_async_engine(self.async_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.drop_all, checkfirst=True)
        except (SQLAlchemyError, OSError) as exc:
            raise self._wrap(exc, "drop") from None
        finally:
            await engine.dispose()

    # -- meta ---------------------------------------------------------------

    async def claim_mode(self, mode: Mode) -> None:
        """Bind the projection to one consistency mode; a mismatch is a typed error."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(projection_meta.c.value).where(
                projection_meta.c.key == "mode"))).first()
            if row is None:
                await conn.execute(projection_meta.insert().values(key="mode", value=mode))
            elif row[0] != mode:
                raise ProjectionError(f"projection store {self.url} holds a {row[0]} "
                                      f"projection, not {mode}; rebuild it to switch modes")

    async def mode(self) -> Mode | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(projection_meta.c.value).where(
                projection_meta.c.key == "mode"))).first()
        if row is None:
            return None
        return "eventual" if row[0] == "eventual" else "sequential"

    # -- writes -------------------------------------------------------------

    def _upsert_sql(self, table: Table, keys: tuple[str, ...], update: bool) -> str:
        """``INSERT ... ON CONFLICT`` in the driver's own placeholder style (cached).

        Batches go to the driver's executemany as tuples: SQLAlchemy's per-row
        parameter processing was most of a batch's CPU time. The statement is
        the same on SQLite and PostgreSQL apart from the placeholders.
        """
        ck = (table.name, keys, update)
        sql = self._sql_cache.get(ck)
        if sql is None:
            cols = [c.name for c in table.columns]
            marks = (["?"] * len(cols) if self.backend == "sqlite"
                     else [f"${i + 1}" for i in range(len(cols))])
            quoted = ", ".join(f'"{c}"' for c in cols)
            conflict = ", ".join(f'"{k}"' for k in keys)
            rest = [c for c in cols if c not in keys]
            action = ("DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in rest)
                      if update and rest else "DO NOTHING")
            sql = (f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join(marks)}) '
                   f"ON CONFLICT ({conflict}) {action}")
            self._sql_cache[ck] = sql
        return sql

    async def commit(self, reader: str, changes: Changes) -> None:
        """Write one batch of row changes and the tracking positions atomically."""
        try:
            async with self.engine.begin() as conn:
                await self._write(conn, reader, changes)
        except (SQLAlchemyError, OSError) as exc:
            raise self._wrap(exc, "commit") from None

    async def _write(self, conn: AsyncConnection, reader: str, ch: Changes) -> None:
        plan: list[tuple[Table, Sequence[dict[str, Any]], tuple[str, ...], bool]] = [
            (transcript, list(ch.transcript.values()), ("instance_id", "event_id"), True),
            (memory, list(ch.memory.values()), ("instance_id", "module", "record_id"), True),
            (rules, list(ch.rules.values()), ("instance_id", "rule_id"), True),
            (rejected, list(ch.rejected.values()), ("instance_id", "event_id"), False),
            (instances, list(ch.instances.values()), ("instance_id",), True),
            (snapshots, list(ch.snapshots.values()), ("instance_id",), True),
            (dead_letters, ch.dead_letters, ("reader", "partition", "offset"), False),
            (tracking, [{"reader": reader, "partition": p, "position": pos}
                        for p, pos in sorted(ch.tracking.items())],
             ("reader", "partition"), True),
        ]
        for table, rows, keys, update in plan:
            if rows:
                cols = [c.name for c in table.columns]
                params = [tuple(r[c] for c in cols) for r in rows]
                await conn.exec_driver_sql(self._upsert_sql(table, keys, update), params)

    # -- reads --------------------------------------------------------------

    async def tracking_positions(self, reader: str) -> dict[int, int]:
        """Per partition, the next offset `reader` has to project."""
        async with self.engine.connect() as conn:
            res = await conn.execute(select(tracking.c.partition, tracking.c.position)
                                     .where(tracking.c.reader == reader))
            return {int(p): int(pos) for p, pos in res}

    async def wait_for(self, reader: str, position: LogPosition, *, timeout_s: float = 10.0,
                       poll_s: float = 0.05) -> None:
        """Return once `reader` has projected `position` (read-your-writes across processes)."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = (await self.tracking_positions(reader)).get(position.partition, 0)
            if done > position.offset:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"projection {reader} did not reach {position} within "
                                   f"{timeout_s}s (at offset {done})")
            await asyncio.sleep(poll_s)

    async def load_snapshots(self) -> list[tuple[str, int, bytes]]:
        """(instance id, version, snapshot bytes) of every instance that has one."""
        if self.backend == "sqlite":
            return await self._sqlite_snapshots(None)
        async with self.engine.connect() as conn:
            res = await conn.execute(select(snapshots.c.instance_id, snapshots.c.version,
                                            snapshots.c.data))
            return [(str(i), int(v), bytes(d)) for i, v, d in res]

    async def load_snapshot(self, instance_id: str) -> bytes | None:
        if self.backend == "sqlite":
            got = await self._sqlite_snapshots(instance_id)
            return got[0][2] if got else None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(snapshots.c.data).where(
                snapshots.c.instance_id == instance_id))).first()
        return None if row is None else bytes(row[0])

    async def _sqlite_snapshots(self, instance_id: str | None) -> list[tuple[str, int, bytes]]:
        """Snapshots straight out of the file: the failover path, so the fast one.

        A snapshot is megabytes of overflow pages. A SELECT copies it twice
        (SQLite's buffer, then the bytes object) and the connection-per-call
        of the engine reopened the file each time; one kept read-only
        connection with the file memory-mapped and incremental blob I/O
        copies it once, straight into the bytes object (a 100k-event
        snapshot: ~1.5 ms instead of ~15 ms CPU).
        """
        if self._engine is None:
            raise ProjectionError(f"projection store {self.url} is not started")
        if self._snap_exec is None:
            self._snap_exec = ThreadPoolExecutor(1, thread_name_prefix="projection-snapshots")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._snap_exec, self._sqlite_snapshots_sync, instance_id)
        except sqlite3.Error as exc:
            raise self._wrap(exc, "snapshot load") from None

    def _sqlite_snapshots_sync(self, instance_id: str | None) -> list[tuple[str, int, bytes]]:
        conn = self._snap_conn
        if conn is None:
            path = Path(make_url(self.async_url).database or "").absolute()
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA mmap_size=268435456")
            self._snap_conn = conn
        query = "SELECT rowid, instance_id, version FROM snapshots"
        args: tuple[str, ...] = ()
        if instance_id is not None:
            query, args = query + " WHERE instance_id = ?", (instance_id,)
        conn.execute("BEGIN")  # one read snapshot: the rowids stay those of these rows
        try:
            out = []
            for rowid, iid, version in conn.execute(query, args).fetchall():
                with conn.blobopen("snapshots", "data", rowid, readonly=True) as blob:
                    out.append((str(iid), int(version), blob.read()))
            return out
        finally:
            conn.execute("COMMIT")

    async def instance_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            res = await conn.execute(select(instances.c.instance_id)
                                     .order_by(instances.c.instance_id))
            return [str(r[0]) for r in res]

    async def instance_partitions(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            res = await conn.execute(select(instances.c.instance_id, instances.c.partition))
            return {str(i): int(p) for i, p in res}

    async def dead_letter_rows(self, reader: str | None = None) -> list[dict[str, Any]]:
        q = select(dead_letters).order_by(dead_letters.c.partition, dead_letters.c.offset)
        if reader is not None:
            q = q.where(dead_letters.c.reader == reader)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def count_rows(self) -> dict[str, int]:
        """Rows per table (tests check there are no duplicates)."""
        from sqlalchemy import func

        out: dict[str, int] = {}
        async with self.engine.connect() as conn:
            for t in ALL_TABLES:
                out[t.name] = int((await conn.execute(select(func.count()).select_from(t)))
                                  .scalar_one())
        return out

    async def load_instance(self, instance_id: str) -> tuple[InstanceState, str] | None:
        """Rebuild an instance's state from its rows; returns (state, stored fingerprint).

        The state's fingerprint is recomputed from the rows by the caller, so a
        read model that drifted from what was projected is caught.
        """
        mode = await self.mode() or "sequential"
        async with self.engine.connect() as conn:
            head = (await conn.execute(select(instances).where(
                instances.c.instance_id == instance_id))).first()
            if head is None:
                return None
            st = InstanceState(instance_id)
            st.version = int(head.version)
            if head.owner is not None:
                st.owner_entry = OwnerEntry(int(head.epoch), Hlc(0, 0), "", "", str(head.owner))
            order = ((transcript.c.seq,) if mode == "sequential" else
                     (transcript.c.hlc_wall, transcript.c.hlc_logical, transcript.c.writer,
                      transcript.c.event_id))
            for r in await conn.execute(select(transcript).where(
                    transcript.c.instance_id == instance_id).order_by(*order)):
                st.transcript.append(Turn(Hlc(r.hlc_wall, r.hlc_logical), r.writer, r.event_id,
                                          r.role, r.content))
            morder = ((memory.c.seq,) if mode == "sequential" else
                      (memory.c.hlc_wall, memory.c.hlc_logical, memory.c.writer,
                       memory.c.event_id))
            for r in await conn.execute(select(memory).where(
                    memory.c.instance_id == instance_id).order_by(*morder)):
                hlc = Hlc(r.hlc_wall, r.hlc_logical)
                if r.module == "case_bank":
                    st.case_bank.append(CaseEntry(hlc, r.writer, r.event_id, r.key,
                                                  r.situation or "", r.plan or "",
                                                  float(r.reward or 0.0)))
                else:
                    st.memory.setdefault(r.module, {})[r.key] = MemoryRecord(
                        hlc, r.writer, r.event_id, r.value)
            for r in await conn.execute(select(rules).where(rules.c.instance_id == instance_id)):
                if r.added_event_id is not None:
                    st.rule_adds[r.rule_id] = RuleEntry(
                        Hlc(r.added_hlc_wall, r.added_hlc_logical), r.added_writer,
                        r.added_event_id, r.text or "")
                if r.revoked:
                    st.revoked[r.rule_id] = RuleEntry(
                        Hlc(r.revoked_hlc_wall, r.revoked_hlc_logical), r.revoked_writer,
                        r.revoked_event_id, r.reason or "")
            for r in await conn.execute(select(rejected).where(
                    rejected.c.instance_id == instance_id)):
                st.rejected[r.event_id] = "aborted" if r.outcome == "aborted" else "fenced"
        return st, str(head.fingerprint)


async def fresh_postgres_database(server_url: str, name: str) -> str:
    """(Re)create database `name` on the server of `server_url`; returns its URL.

    Tests and benchmarks use a database of their own so they never touch
    tables other parts keep in the shared cluster database.
    """
    import asyncpg

    if not name.replace("_", "").isalnum():
        raise StoreUrlError(f"database name {name!r}: letters, digits and '_' only")
    url = make_url(async_db_url(server_url))
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(
        hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)


async def drop_postgres_database(database_url: str) -> None:
    """Drop the database `database_url` names (the inverse of `fresh_postgres_database`)."""
    import asyncpg

    url = make_url(async_db_url(database_url))
    name = url.database or ""
    if not name.replace("_", "").isalnum():
        raise StoreUrlError(f"database name {name!r}: letters, digits and '_' only")
    conn = await asyncpg.connect(url.set(drivername="postgresql", database="postgres")
                                 .render_as_string(hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
