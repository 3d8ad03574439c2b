"""The projector: consume an EventLog, fold, write the projection exactly once.

Loop, per partition: read a batch from the tracking position, apply every
entry to the in-memory `InstanceState` of its instance (sequential reducer or
eventual merge), turn the outcomes into row changes, and commit those rows,
any due snapshots, dead letters and the new tracking position in ONE
transaction. So after a crash (even ``kill -9`` mid-batch) the database is
exactly at some batch boundary, and the projector resumes from there.

On startup (and so on failover to a fresh process) the in-memory states are
rehydrated: the latest snapshot of each instance plus the tail of the log
from the snapshot's position up to the tracking position. At catch-up the
projector snapshots every instance that changed since its last snapshot, so
a clean restart replays almost nothing.

Poison records (undecodable bytes, or events the reducer refuses) go to the
dead-letter table with their position and the projector keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from selfhood.errors import PoisonEvent, SnapshotVersionMismatch
from selfhood.eventlog.base import EventLog, LogBatch, LogEntry, LogPosition
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.events import Event, MemoryWritten, RuleAdded, RuleRevoked
from selfhood.projections.crdt import merge_eventual
from selfhood.projections.reducer import apply_sequential
from selfhood.projections.snapshot import SnapshotPolicy, decode_snapshot, encode_snapshot
from selfhood.projections.state import InstanceState, Mode, Outcome, fingerprint
from selfhood.projections.store import Changes, SqlProjectionStore, instance_row, record_changes


@dataclass
class Progress:
    """What the projector has done so far (for the CLI's progress line)."""

    events: int = 0
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    rehydrated_instances: int = 0
    from_snapshots: int = 0
    replayed_on_start: int = 0
    lag: int = 0
    started: float = 0.0

    def rate(self) -> float:
        dt = time.monotonic() - self.started
        return self.events / dt if dt > 0 else 0.0


class Projector:
    """Reads `log`, keeps the instance states, writes them into `store`."""

    def __init__(self, log: EventLog, store: SqlProjectionStore, *,
                 reader: str = "projector", mode: Mode = "sequential", fencing: bool = True,
                 snapshots: SnapshotPolicy | None = None, batch: int = 2000,
                 read_timeout_s: float = 0.5) -> None:
        self.log = log
        self.store = store
        self.reader = reader
        self.mode: Mode = mode
        self.fencing = fencing
        self.snapshots = snapshots if snapshots is not None else SnapshotPolicy()
        self.batch = batch
        self.read_timeout_s = read_timeout_s
        self.states: dict[str, InstanceState] = {}
        self.partition_of: dict[str, int] = {}
        self.positions: dict[int, int] = {}
        self.progress = Progress(started=time.monotonic())
        #: events seen (applied or rejected) when each instance was last snapshotted:
        #: counting rejected ones too keeps a flood of fenced zombie writes from
        #: growing the replay tail without bound
        self._snap_seen: dict[str, int] = {}
        #: log positions each instance's latest snapshot covers (catch-up snapshots
        #: whatever moved since, even if only rejected or duplicate events)
        self._snap_pos: dict[str, dict[int, int]] = {}
        self._advanced = asyncio.Condition()
        self._ready = False

    # -- startup ------------------------------------------------------------

    async def rehydrate(self) -> None:
        """Rebuild every instance from its snapshot plus the log tail up to tracking."""
        await self.store.claim_mode(self.mode)
        self.positions = await self.store.tracking_positions(self.reader)
        self.partition_of = await self.store.instance_partitions()
        for iid, _version, data in await self.store.load_snapshots():
            try:
                st = decode_snapshot(data, mode=self.mode)
            except SnapshotVersionMismatch:
                continue  # older layout: never misread, replay this instance instead
            self.states[iid] = st
            self._snap_seen[iid] = len(st.seen)
            self._snap_pos[iid] = dict(st.positions)
            self.progress.from_snapshots += 1
        # replay each partition from the oldest point some instance still needs
        for part, upto in self.positions.items():
            start = upto
            for iid, p in self.partition_of.items():
                if p != part:
                    continue
                st_ = self.states.get(iid)
                start = min(start, st_.positions.get(part, 0) if st_ is not None else 0)
            if isinstance(self.log, SqliteEventLog):
                await self._replay_tail_sqlite(self.log, part, start, upto)
                continue
            offset = start
            while offset < upto:
                got = await self.log.read(part, offset, limit=self.batch,
                                          timeout_s=max(self.read_timeout_s, 2.0))
                for entry in got.entries:
                    if entry.position.offset >= upto:
                        break
                    ev = entry.event
                    if ev is None:
                        continue
                    st_ = self.states.get(ev.instance_id)
                    if st_ is not None and entry.position.offset < st_.positions.get(part, 0):
                        continue
                    self.progress.replayed_on_start += 1
                    try:
                        self._apply(entry)
                    except PoisonEvent:
                        continue
                if got.next_offset <= offset:
                    break  # nothing readable in time below `upto`
                offset = got.next_offset
        self.progress.rehydrated_instances = len(self.states)
        self._ready = True

    async def _replay_tail_sqlite(self, log: SqliteEventLog, part: int, start: int,
                                  upto: int) -> None:
        """The loop above on the embedded log's fast path (no `LogEntry` per record)."""
        offset = start
        while offset < upto:
            following, events = await log.read_events(part, offset, upto,
                                                      limit=max(self.batch, 10_000))
            if following <= offset:
                break
            for off, ev in events:
                st_ = self.states.get(ev.instance_id)
                if st_ is not None and off < st_.positions.get(part, 0):
                    continue
                self.progress.replayed_on_start += 1
                try:
                    self._fold(self._state_for(ev.instance_id, part), ev, LogPosition(part, off))
                except PoisonEvent:
                    continue
            offset = following

    # -- folding ------------------------------------------------------------

    def _state_for(self, instance_id: str, partition: int) -> InstanceState:
        st = self.states.get(instance_id)
        if st is None:
            st = self.states[instance_id] = InstanceState.empty(instance_id)
            self.partition_of[instance_id] = partition
        return st

    def _fold(self, st: InstanceState, ev: Event, position: LogPosition) -> Outcome:
        """The mode's reducer: the sequential apply or the eventual merge."""
        if self.mode == "sequential":
            return apply_sequential(st, ev, position, fencing=self.fencing)
        return merge_eventual(st, ev, position)

    def _apply(self, entry: LogEntry) -> tuple[InstanceState, Outcome]:
        ev = entry.event
        assert ev is not None
        st = self._state_for(ev.instance_id, entry.position.partition)
        return st, self._fold(st, ev, entry.position)

    def _fold_batch(self, part: int, entries: list[LogEntry], changes: Changes) -> set[str]:
        dirty: set[str] = set()
        prog = self.progress
        for entry in entries:
            prog.events += 1
            ev = entry.event
            if ev is None:
                err = entry.error
                changes.dead_letters.append({
                    "reader": self.reader, "partition": part, "offset": entry.position.offset,
                    "instance_id": None, "raw": entry.raw,
                    "error": str(err) if err is not None else "undecodable record"})
                prog.dead_letters += 1
                continue
            try:
                st, out = self._apply(entry)
            except PoisonEvent as exc:
                changes.dead_letters.append({
                    "reader": self.reader, "partition": part, "offset": entry.position.offset,
                    "instance_id": ev.instance_id, "raw": entry.raw,
                    "error": f"{exc} at partition {part} offset {entry.position.offset}"})
                prog.dead_letters += 1
                continue
            if out == "duplicate":
                prog.duplicates += 1
                continue
            if out == "applied":
                prog.applied += 1
            else:
                prog.rejected += 1
            p = ev.payload
            key = (p.key if isinstance(p, MemoryWritten)
                   else p.rule_id if isinstance(p, RuleAdded | RuleRevoked) else None)
            record_changes(changes, st, ev.kind, ev.event_id, key, out)
            dirty.add(ev.instance_id)
        return dirty

    def _finish(self, dirty: set[str], changes: Changes, *, snapshot_all: bool) -> None:
        for iid in dirty:
            st = self.states[iid]
            changes.instances[iid] = instance_row(st, self.partition_of[iid], fingerprint(st))
        for iid in (self.states if snapshot_all else dirty):
            st = self.states[iid]
            if snapshot_all:
                due = st.positions != self._snap_pos.get(iid)
            else:
                due = self.snapshots.due(len(st.seen), self._snap_seen.get(iid, 0))
            if due:
                changes.snapshots[iid] = {"instance_id": iid, "version": st.version,
                                          "data": encode_snapshot(st, self.mode)}

    def _forget(self) -> None:
        """Drop the in-memory states: they may be ahead of the database now."""
        self.states.clear()
        self._snap_seen.clear()
        self._snap_pos.clear()
        self.positions.clear()
        self._ready = False

    async def _commit(self, changes: Changes) -> None:
        try:
            await self.store.commit(self.reader, changes)
        except BaseException:
            # unknown whether it landed: rehydrate from the store before going on
            self._forget()
            raise
        for iid in changes.snapshots:
            self._snap_seen[iid] = len(self.states[iid].seen)
            self._snap_pos[iid] = dict(self.states[iid].positions)
        self.positions.update(changes.tracking)
        self.progress.batches += 1
        async with self._advanced:
            self._advanced.notify_all()

    # -- the loop -------------------------------------------------------------

    async def step(self, part: int, *, timeout_s: float | None = None) -> int:
        """Project one batch of one partition; returns how many records it consumed.

        If the commit fails the in-memory states are dropped and the next call
        rehydrates from the store, so a failed batch is redone, never skipped.
        """
        if not self._ready:
            await self.rehydrate()
        got = await self.log.read(part, self.positions.get(part, 0), limit=self.batch,
                                  timeout_s=self.read_timeout_s if timeout_s is None
                                  else timeout_s)
        if got.entries:
            await self._project_batch(part, got)
        elif got.next_offset > self.positions.get(part, 0):
            self.positions[part] = got.next_offset  # stepped over a gap; nothing to commit
        return len(got.entries)

    async def _project_batch(self, part: int, got: LogBatch) -> None:
        changes = Changes()
        dirty = self._fold_batch(part, got.entries, changes)
        changes.tracking[part] = got.next_offset
        self._finish(dirty, changes, snapshot_all=False)
        await self._commit(changes)

    async def _drain(self, part: int, end: int,
                     on_progress: Callable[[Progress], None] | None) -> None:
        """Project one partition up to `end`, reading the next batch while committing.

        The read of batch k+1 overlaps the commit of batch k (both wait on
        other threads or the network), which is most of a batch's wall time.
        """
        offset = self.positions.get(part, 0)
        loop = asyncio.get_running_loop()
        nxt: asyncio.Task[LogBatch] | None = loop.create_task(
            self.log.read(part, offset, limit=self.batch, timeout_s=self.read_timeout_s))
        try:
            while nxt is not None:
                got = await nxt
                nxt = None
                following = got.next_offset
                if following <= offset:
                    return  # nothing readable within the timeout
                if following < end:
                    nxt = loop.create_task(self.log.read(part, following, limit=self.batch,
                                                         timeout_s=self.read_timeout_s))
                if got.entries:
                    await self._project_batch(part, got)
                else:
                    self.positions[part] = following  # a gap only: nothing to commit
                self.progress.lag -= following - offset
                offset = following
                if on_progress is not None:
                    on_progress(self.progress)
        finally:
            if nxt is not None:
                nxt.cancel()
                await asyncio.wait([nxt])  # our own cancellation still propagates
                if not nxt.cancelled():
                    nxt.exception()  # retrieved: no "never retrieved" warning

    async def catch_up(self, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        """Project everything that was in the log when this call started, then snapshot."""
        if not self._ready:
            await self.rehydrate()
        ends = await self.log.end_offsets()
        self.progress.lag = sum(max(0, e - self.positions.get(p, 0)) for p, e in ends.items())
        for part, end in sorted(ends.items()):
            if self.positions.get(part, 0) < end:
                await self._drain(part, end, on_progress)
        self.progress.lag = sum(max(0, e - self.positions.get(p, 0)) for p, e in ends.items())
        await self.snapshot_all()
        return self.progress

    async def snapshot_all(self) -> None:
        """Snapshot every instance that changed since its last snapshot (one transaction)."""
        changes = Changes()
        self._finish(set(), changes, snapshot_all=True)
        if changes.snapshots:
            await self._commit(changes)

    async def run(self, *, follow: bool = False, idle_s: float = 0.2,
                  on_progress: Callable[[Progress], None] | None = None,
                  stop: asyncio.Event | None = None) -> Progress:
        """Catch up; with `follow`, keep projecting new events until cancelled or `stop`.

        Setting `stop` ends the loop at a batch boundary and snapshots what
        moved, so the next start replays nothing (the graceful SIGTERM path).
        """
        await self.catch_up(on_progress)
        while follow and not (stop is not None and stop.is_set()):
            moved = 0
            for part in await self.log.partitions():
                moved += await self.step(part, timeout_s=0.05)
                if stop is not None and stop.is_set():
                    break
            if moved and on_progress is not None:
                on_progress(self.progress)
            if not moved:
                if stop is None:
                    await asyncio.sleep(idle_s)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(idle_s):
                            await stop.wait()
        if follow:
            await self.snapshot_all()
        return self.progress

    async def wait_for(self, position: LogPosition, *, timeout_s: float = 10.0) -> None:
        """Return once `position` is projected (read-your-writes for this process)."""
        async with asyncio.timeout(timeout_s):
            async with self._advanced:
                await self._advanced.wait_for(
                    lambda: self.positions.get(position.partition, 0) > position.offset)


async def replay_log(log: EventLog, *, instance_id: str | None = None,
                     mode: Mode = "sequential", fencing: bool = True,
                     batch: int = 10_000, timeout_s: float = 2.0) -> dict[str, InstanceState]:
    """Full replay from the log alone (no database): the reference rehydration.

    With `instance_id`, only that instance's partition is read (when the log
    can say which one it is). Reads go straight to `log.read` in big batches,
    since replay speed is what bounds failover. Poison records are skipped
    (the projector dead-letters them; a replay has nowhere to put them).
    """
    part_of = getattr(log, "partition_of", None)
    if instance_id is not None and callable(part_of):
        parts = [int(part_of(instance_id))]
    else:
        parts = await log.partitions()
    ends = await log.end_offsets()
    states: dict[str, InstanceState] = {}
    eventual = mode == "eventual"

    if isinstance(log, SqliteEventLog):
        async with contextlib.aclosing(_sqlite_batches(
                log, [(p, ends.get(p, 0)) for p in parts], batch)) as batches:
            async for part, events in batches:
                for off, ev in events:
                    iid = ev.instance_id
                    if instance_id is not None and iid != instance_id:
                        continue
                    st = states.get(iid)
                    if st is None:
                        st = states[iid] = InstanceState.empty(iid)
                    # what passing LogPosition(part, off) would note, without the object
                    positions = st.positions
                    if positions.get(part, 0) <= off:
                        positions[part] = off + 1
                    try:
                        if eventual:
                            merge_eventual(st, ev)
                        else:
                            apply_sequential(st, ev, fencing=fencing)
                    except PoisonEvent:
                        continue
        return states
    for part in parts:
        offset, end = 0, ends.get(part, 0)
        while offset < end:
            got = await log.read(part, offset, limit=batch, timeout_s=timeout_s)
            for entry in got.entries:
                ev_ = entry.event
                if ev_ is None or entry.position.offset >= end:
                    continue
                iid = ev_.instance_id
                if instance_id is not None and iid != instance_id:
                    continue
                st = states.get(iid)
                if st is None:
                    st = states[iid] = InstanceState.empty(iid)
                try:
                    if eventual:
                        merge_eventual(st, ev_, entry.position)
                    else:
                        apply_sequential(st, ev_, entry.position, fencing=fencing)
                except PoisonEvent:
                    continue
            if got.next_offset <= offset:
                break  # nothing readable in time below `end`
            offset = got.next_offset
    return states


async def _sqlite_batches(log: SqliteEventLog, ranges: list[tuple[int, int]],
                          batch: int) -> AsyncGenerator[tuple[int, list[tuple[int, Event]]]]:
    """(partition, [(offset, event)]) batches of `ranges` [(partition, end)], read ahead.

    The next batch is fetched and decoded on the log's reader thread while
    the caller folds this one (SQLite releases the GIL while it reads pages),
    and `read_events` makes no `LogEntry` per record.
    """
    loop = asyncio.get_running_loop()
    todo = [(p, end) for p, end in ranges if end > 0]
    if not todo:
        return
    part, end = todo.pop(0)
    offset = 0
    nxt: asyncio.Task[tuple[int, list[tuple[int, Event]]]] | None = loop.create_task(
        log.read_events(part, 0, end, limit=batch))
    try:
        while nxt is not None:
            cur = part
            following, events = await nxt
            nxt = None
            if offset < following < end:  # read something, and there is more
                offset = following
                nxt = loop.create_task(log.read_events(part, offset, end, limit=batch))
            elif todo:
                part, end = todo.pop(0)
                offset = 0
                nxt = loop.create_task(log.read_events(part, 0, end, limit=batch))
            yield cur, events
    finally:
        if nxt is not None:
            nxt.cancel()
            await asyncio.wait([nxt])
            if not nxt.cancelled():
                nxt.exception()  # retrieved: no "never retrieved" warning
