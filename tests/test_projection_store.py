"""SQL projection store: URL mapping, idempotent versioned schema, atomic commits.

The same contract runs against embedded SQLite and the real PostgreSQL of
`selfhood cluster up`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from selfhood.errors import ProjectionError, StoreUrlError
from selfhood.eventlog.base import LogPosition
from selfhood.projections.store import (
    Changes,
    SqlProjectionStore,
    async_db_url,
    drop_postgres_database,
    fresh_postgres_database,
    projection_meta,
)


def test_url_mapping() -> None:
    assert async_db_url("postgresql://u@h:5/db") == "postgresql+asyncpg://u@h:5/db"
    assert async_db_url("postgres://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert async_db_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_db_url("sqlite:///rel/p.db") == "sqlite+aiosqlite:///rel/p.db"
    assert async_db_url("sqlite:////abs/p.db") == "sqlite+aiosqlite:////abs/p.db"
    for bad, msg in [("mysql://h/db", "unsupported backend"), ("sqlite://", "needs a file"),
                     ("postgresql+psycopg2://h/db", "not supported"), ("nonsense", "malformed")]:
        with pytest.raises(StoreUrlError, match=msg):
            async_db_url(bad)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty projection database of each backend (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/proj.db"
        return
    server = request.getfixturevalue("database_url")
    url = asyncio.run(fresh_postgres_database(server, f"proj_store_{uuid.uuid4().hex[:10]}"))
    yield url
    asyncio.run(drop_postgres_database(url))


def _changes(part: int, pos: int, n: int) -> Changes:
    ch = Changes()
    ch.tracking[part] = pos
    for i in range(n):
        ch.transcript[("i1", f"e{pos}-{i}")] = {
            "instance_id": "i1", "event_id": f"e{pos}-{i}", "seq": pos * 100 + i,
            "hlc_wall": 0, "hlc_logical": 0, "writer": "w", "role": "user", "content": "x"}
    ch.instances["i1"] = {"instance_id": "i1", "partition": part, "version": pos,
                          "epoch": 0, "owner": None, "fingerprint": "f" * 64}
    return ch


async def test_schema_is_idempotent_even_concurrently(store_url: str) -> None:
    stores = [SqlProjectionStore(store_url) for _ in range(3)]
    await asyncio.gather(*(s.start() for s in stores))
    for s in stores:
        await s.stop()
        await s.stop()  # safe twice
    async with SqlProjectionStore(store_url) as s:
        assert (await s.count_rows())["projection_meta"] == 1


async def test_other_schema_version_is_refused(store_url: str) -> None:
    async with SqlProjectionStore(store_url) as s:
        async with s.engine.begin() as conn:
            await conn.execute(update(projection_meta).where(projection_meta.c.key == "schema")
                               .values(value="0"))
    with pytest.raises(ProjectionError, match="rebuild"):
        await SqlProjectionStore(store_url).start()
    # drop then start again is the rebuild path
    await SqlProjectionStore(store_url).drop_database_tables()
    async with SqlProjectionStore(store_url) as s3:
        assert await s3.tracking_positions("r") == {}


async def test_commit_writes_rows_and_tracking_atomically(store_url: str) -> None:
    async with SqlProjectionStore(store_url) as s:
        await s.commit("r", _changes(0, 5, 3))
        assert await s.tracking_positions("r") == {0: 5}
        # a batch that fails half-way (duplicate primary key in a plain insert) leaves nothing
        bad = _changes(0, 9, 2)
        bad.dead_letters = [
            {"reader": "r", "partition": 0, "offset": 1, "instance_id": None, "raw": b"x",
             "error": "e"}] * 2
        bad.dead_letters[1] = dict(bad.dead_letters[0], raw=None)  # NOT NULL violation
        with pytest.raises(ProjectionError, match="commit failed"):
            await s.commit("r", bad)
        assert await s.tracking_positions("r") == {0: 5}
        rows = await s.count_rows()
        assert rows["transcript"] == 3 and rows["dead_letters"] == 0
        # redelivering the same rows is harmless: upserts on the unique keys
        await s.commit("r", _changes(0, 5, 3))
        assert (await s.count_rows())["transcript"] == 3
        assert await s.tracking_positions("other") == {}


async def test_wait_for_sees_other_writers(store_url: str) -> None:
    async with SqlProjectionStore(store_url) as s, SqlProjectionStore(store_url) as t:
        async def later() -> None:
            await asyncio.sleep(0.2)
            await t.commit("r", _changes(2, 8, 1))
        task = asyncio.create_task(later())
        await s.wait_for("r", LogPosition(2, 7), timeout_s=10)
        await task
        with pytest.raises(TimeoutError):
            await s.wait_for("r", LogPosition(2, 8), timeout_s=0.2)


async def test_mode_is_claimed_once(store_url: str) -> None:
    async with SqlProjectionStore(store_url) as s:
        assert await s.mode() is None
        await s.claim_mode("eventual")
        await s.claim_mode("eventual")
        with pytest.raises(ProjectionError, match="eventual projection"):
            await s.claim_mode("sequential")


async def test_snapshot_loads_see_every_commit_of_any_writer(store_url: str) -> None:
    """Snapshot reads reuse a connection (SQLite: a kept read-only one): never a stale one."""
    def snap(iid: str, version: int, data: bytes) -> Changes:
        ch = Changes()
        ch.snapshots[iid] = {"instance_id": iid, "version": version, "data": data}
        return ch

    async with SqlProjectionStore(store_url) as s, SqlProjectionStore(store_url) as other:
        assert await s.load_snapshot("i1") is None and await s.load_snapshots() == []
        big = bytes(range(256)) * 40_000  # ~10 MB: thousands of overflow pages
        await s.commit("r", snap("i1", 1, big))
        assert await s.load_snapshot("i1") == big
        await other.commit("r", snap("i1", 2, b"v2"))  # another connection, then shorter
        await other.commit("r", snap("i2", 7, b"two"))
        assert await s.load_snapshot("i1") == b"v2"
        assert sorted(await s.load_snapshots()) == [("i1", 2, b"v2"), ("i2", 7, b"two")]
        assert await s.load_snapshot("nope") is None
    with pytest.raises(ProjectionError, match="not started"):
        await SqlProjectionStore(store_url).load_snapshot("i1")
