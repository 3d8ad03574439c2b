"""Projector on the embedded log and SQLite store: exactly once, resume, dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfhood.eventlog.base import LogPosition, scan
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.events import (
    MemoryWritten,
    OwnershipClaimed,
    TurnAppended,
    make_event,
)
from selfhood.projections import snapshot as snap
from selfhood.projections.projector import Projector, replay_log
from selfhood.projections.reducer import fold_all
from selfhood.projections.snapshot import SnapshotPolicy
from selfhood.projections.state import Mode, fingerprint
from selfhood.projections.store import Changes, SqlProjectionStore
from selfhood.projections.strategies import scenario_events as mixed_events


async def _reference(log: SqliteEventLog, mode: Mode) -> dict[str, str]:
    events = []
    for part in await log.partitions():
        async for entry in scan(log, part):
            if entry.event is not None:
                events.append(entry.event)
    return {iid: fingerprint(st) for iid, st in fold_all(events, mode=mode).items()}


async def _projected(store: SqlProjectionStore) -> dict[str, str]:
    out = {}
    for iid in await store.instance_ids():
        got = await store.load_instance(iid)
        assert got is not None
        st, stored = got
        assert fingerprint(st) == stored, iid
        out[iid] = stored
    return out


@pytest.mark.parametrize("mode", ["sequential", "eventual"])
async def test_projection_equals_reference_fold(tmp_path: Path, mode: Mode) -> None:
    async with SqliteEventLog(tmp_path / "log.db", partitions=3) as log, \
            SqlProjectionStore(f"sqlite:///{tmp_path}/p.db") as store:
        await log.append_batch(mixed_events(1500, 12))
        proj = Projector(log, store, mode=mode, batch=200, snapshots=SnapshotPolicy(50))
        prog = await proj.catch_up()
        ref = await _reference(log, mode)
        assert await _projected(store) == ref
        assert {i: fingerprint(s) for i, s in proj.states.items()} == ref
        if mode == "sequential":
            assert prog.rejected > 0  # fenced zombies and aborted stale reads happened
        assert (await store.count_rows())["snapshots"] == len(ref)


async def test_resume_after_crash_between_batches(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/p.db"
    async with SqliteEventLog(tmp_path / "log.db", partitions=2) as log:
        await log.append_batch(mixed_events(800, 6, seed=2))
        async with SqlProjectionStore(db) as store:
            p1 = Projector(log, store, batch=50, snapshots=SnapshotPolicy(40))
            await p1.rehydrate()
            for _ in range(5):
                for part in await log.partitions():
                    await p1.step(part)
            # crash: the next commit fails half-way, nothing of it lands
            original = store.commit

            async def broken(reader: str, changes: Changes) -> None:
                raise RuntimeError("power cut")

            store.commit = broken  # type: ignore[method-assign]
            with pytest.raises(RuntimeError):
                await p1.step(0)
            store.commit = original  # type: ignore[method-assign]
            assert not p1.states  # forgotten: it may be ahead of the database
            await p1.step(0)      # rehydrates from the store and redoes the batch
            assert p1.states
        # more events arrive while no projector runs
        await log.append_batch(mixed_events(300, 6, seed=3))
        async with SqlProjectionStore(db) as store:
            p2 = Projector(log, store, batch=50)
            await p2.catch_up()
            assert p2.progress.rehydrated_instances > 0
            assert await _projected(store) == await _reference(log, "sequential")
            before = await store.count_rows()
            # a third run is a no-op: nothing is applied twice
            p3 = Projector(log, store)
            prog = await p3.catch_up()
            assert prog.events == 0 and prog.replayed_on_start == 0
            assert await store.count_rows() == before


async def test_dead_letters_and_keep_going(tmp_path: Path) -> None:
    async with SqliteEventLog(tmp_path / "log.db", partitions=1) as log, \
            SqlProjectionStore(f"sqlite:///{tmp_path}/p.db") as store:
        await log.append(make_event("a", TurnAppended("user", "one"), writer="w"))
        bad_pos = await log.append_raw("a", b"\xffnot json")
        poison = await log.append(make_event("a", MemoryWritten("case_bank", "c"), writer="w"))
        await log.append(make_event("a", TurnAppended("user", "two"), writer="w"))
        proj = Projector(log, store)
        prog = await proj.catch_up()
        assert prog.dead_letters == 2 and prog.applied == 2
        rows = await store.dead_letter_rows("projector")
        assert [(r["partition"], r["offset"]) for r in rows] == [
            (bad_pos.partition, bad_pos.offset), (poison.partition, poison.offset)]
        assert rows[0]["raw"] == b"\xffnot json" and "offset 1" in rows[0]["error"]
        assert "without a case" in rows[1]["error"] and rows[1]["instance_id"] == "a"
        got = await store.load_instance("a")
        assert got is not None
        assert [t.content for t in got[0].transcript] == ["one", "two"]
        # a replay from the log alone skips the poison and agrees with the projection
        replayed = await replay_log(log, instance_id="a")
        assert fingerprint(replayed["a"]) == fingerprint(got[0])


async def test_wait_for_gives_read_your_writes(tmp_path: Path) -> None:
    import asyncio

    async with SqliteEventLog(tmp_path / "log.db", partitions=2) as log, \
            SqlProjectionStore(f"sqlite:///{tmp_path}/p.db") as store:
        proj = Projector(log, store)
        task = asyncio.create_task(proj.run(follow=True, idle_s=0.02))
        try:
            pos = await log.append(make_event("x", TurnAppended("user", "hi"), writer="w"))
            await proj.wait_for(pos, timeout_s=10)
            got = await store.load_instance("x")
            assert got is not None and got[0].transcript[0].content == "hi"
            await store.wait_for("projector", pos, timeout_s=1)
            with pytest.raises(TimeoutError):
                await proj.wait_for(LogPosition(pos.partition, pos.offset + 5), timeout_s=0.2)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_old_snapshot_schema_is_ignored_and_replayed(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    db = f"sqlite:///{tmp_path}/p.db"
    async with SqliteEventLog(tmp_path / "log.db", partitions=2) as log:
        await log.append_batch(mixed_events(400, 4, seed=5))
        async with SqlProjectionStore(db) as store:
            await Projector(log, store, snapshots=SnapshotPolicy(10)).catch_up()
        await log.append_batch(mixed_events(100, 4, seed=6))
        # the snapshots on disk are now "from an older version"
        monkeypatch.setattr(snap, "SNAPSHOT_SCHEMA", snap.SNAPSHOT_SCHEMA + 1)
        async with SqlProjectionStore(db) as store:
            p = Projector(log, store)
            await p.catch_up()
            assert p.progress.from_snapshots == 0   # nothing decoded from old snapshots
            assert p.progress.rehydrated_instances == 4
            assert p.progress.replayed_on_start >= 400    # replayed instead
            assert await _projected(store) == await _reference(log, "sequential")


async def test_snapshots_count_rejected_events_too(tmp_path: Path) -> None:
    """A flood of fenced zombie writes still gets snapshotted, so the tail stays short."""
    async with SqliteEventLog(tmp_path / "log.db", partitions=1) as log, \
            SqlProjectionStore(f"sqlite:///{tmp_path}/p.db") as store:
        await log.append(make_event("z", OwnershipClaimed("r2"), writer="r2", epoch=2))
        await log.append_batch([make_event("z", TurnAppended("user", f"zombie {i}"),
                                           writer="r1", epoch=1) for i in range(24)])
        proj = Projector(log, store, batch=5, snapshots=SnapshotPolicy(10))
        for _ in range(4):
            await proj.step(0)
        data = await store.load_snapshot("z")
        assert data is not None
        st = snap.decode_snapshot(data)
        assert st.version == 1 and len(st.rejected) >= 9
        assert set(st.rejected.values()) == {"fenced"}


class _GenericLog:
    """The same log seen only through the EventLog port (replay_log's generic path)."""

    def __init__(self, log: SqliteEventLog) -> None:
        self.read = log.read
        self.end_offsets = log.end_offsets
        self.partitions = log.partitions


@pytest.mark.parametrize("mode", ["sequential", "eventual"])
async def test_replay_fast_path_equals_generic_path(tmp_path: Path, mode: Mode) -> None:
    """The SQLite read-ahead path folds exactly what `log.read` gives, corrupt records skipped."""
    async with SqliteEventLog(tmp_path / "log.db", partitions=3) as log:
        events = mixed_events(400, 5, seed=3)
        await log.append_batch(events[:150])
        for iid in ("inst-0", "inst-1", "inst-2", "inst-3"):
            await log.append_raw(iid, b"\xffnot json")
        await log.append_batch(events[150:])
        await log.append_batch(events[100:120])  # retried appends: same positions
        fast = await replay_log(log, mode=mode, batch=7)
        slow = await replay_log(_GenericLog(log), mode=mode, batch=7)  # type: ignore[arg-type]
        assert fast.keys() == slow.keys() == fold_all(events, mode=mode).keys()
        for iid, st in fast.items():
            assert fingerprint(st) == fingerprint(slow[iid])
            assert st.positions == slow[iid].positions and st.seen == slow[iid].seen
        one = await replay_log(log, instance_id="inst-2", mode=mode, batch=7)
        assert list(one) == ["inst-2"]
        assert fingerprint(one["inst-2"]) == fingerprint(fast["inst-2"])


@pytest.mark.parametrize("mode", ["sequential", "eventual"])
async def test_rehydrate_fast_path_equals_generic_path(tmp_path: Path, mode: Mode) -> None:
    """A restart replays the tails after the snapshots the same way on both read paths."""
    async with SqliteEventLog(tmp_path / "log.db", partitions=2) as log, \
            SqlProjectionStore(f"sqlite:///{tmp_path}/p.db") as store:
        await log.append_batch(mixed_events(300, 4, seed=5))
        await log.append_raw("inst-1", b"\xffnot json")
        await log.append_batch(mixed_events(60, 4, seed=6))
        proj = Projector(log, store, mode=mode, snapshots=SnapshotPolicy(every=15), batch=40)
        for part in await log.partitions():
            while await proj.step(part, timeout_s=0):
                pass
        # no catch_up: the snapshots lag the tracking position, so a restart replays tails
        fast = Projector(log, store, mode=mode, batch=40)
        await fast.rehydrate()
        slow = Projector(_GenericLog(log), store, mode=mode, batch=40)  # type: ignore[arg-type]
        await slow.rehydrate()
        assert fast.progress.replayed_on_start == slow.progress.replayed_on_start > 0
        assert fast.progress.from_snapshots == slow.progress.from_snapshots > 0
        assert fast.states.keys() == slow.states.keys() == proj.states.keys()
        for iid, st in fast.states.items():
            assert fingerprint(st) == fingerprint(slow.states[iid]) == fingerprint(proj.states[iid])
            assert st.positions == slow.states[iid].positions == proj.states[iid].positions
