"""Stateful property: the projector against a reference fold, crashes between any two steps.

A hypothesis `RuleBasedStateMachine` appends events (fresh, retried and
corrupt) to an embedded log, lets the projector take single batches, and
injects crashes: a plain kill between batches, or a commit that dies
half-way. After every step the projection in the database must equal the
reference fold of exactly the log prefix its tracking position covers, so
nothing is applied twice and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from selfhood.eventlog.base import LogPosition
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.events import Event
from selfhood.projections.projector import Projector
from selfhood.projections.reducer import fold_all
from selfhood.projections.snapshot import SnapshotPolicy
from selfhood.projections.state import Mode, fingerprint
from selfhood.projections.store import SqlProjectionStore
from selfhood.projections.strategies import event_lists

INSTANCES = ("i1", "i2", "i3")
PARTITIONS = 2


class ProjectorMachine(RuleBasedStateMachine):
    mode: Mode = "sequential"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="projm-"))
        self.loop = asyncio.new_event_loop()
        self.log = SqliteEventLog(self.dir / "log.db", partitions=PARTITIONS)
        self.store = SqlProjectionStore(f"sqlite:///{self.dir}/p.db")
        self.run(self.log.start())
        self.run(self.store.start())
        self.appended: list[tuple[LogPosition, Event]] = []
        self.ids: set[str] = set()
        self.projector = self.new_projector()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def new_projector(self) -> Projector:
        return Projector(self.log, self.store, mode=self.mode, batch=4,
                         snapshots=SnapshotPolicy(3))

    # -- rules ----------------------------------------------------------------

    @rule(events=event_lists(INSTANCES, min_size=1, max_size=8))
    def append(self, events: list[Event]) -> None:
        positions = self.run(self.log.append_batch(events))
        for pos, ev in zip(positions, events, strict=True):
            if ev.event_id not in self.ids:
                self.ids.add(ev.event_id)
                self.appended.append((pos, ev))

    @rule(data=st.data())
    def append_retry(self, data: st.DataObject) -> None:
        if self.appended:
            _, ev = data.draw(st.sampled_from(self.appended))
            self.run(self.log.append(ev))  # the log answers with the original position

    @rule(instance=st.sampled_from(INSTANCES), junk=st.binary(max_size=20))
    def append_corrupt(self, instance: str, junk: bytes) -> None:
        self.run(self.log.append_raw(instance, b"\x00" + junk))

    @rule(part=st.integers(0, PARTITIONS - 1))
    def step(self, part: int) -> None:
        self.run(self.projector.step(part, timeout_s=0.01))

    @rule()
    def catch_up(self) -> None:
        self.run(self.projector.catch_up())

    @rule()
    def crash_between_batches(self) -> None:
        self.projector = self.new_projector()  # kill -9: memory gone, database kept

    @rule(part=st.integers(0, PARTITIONS - 1), after=st.integers(0, 6))
    def crash_mid_commit(self, part: int, after: int) -> None:
        """The commit dies after `after` statements: the transaction must roll back."""
        store = self.store
        original = store._write
        calls = {"n": 0}

        async def dying(conn: Any, reader: str, changes: Any) -> None:
            real_execute = conn.execute

            async def execute(*a: Any, **kw: Any) -> Any:
                if calls["n"] >= after:
                    raise OSError("killed mid-commit")
                calls["n"] += 1
                return await real_execute(*a, **kw)

            conn.execute = execute
            await original(conn, reader, changes)

        store._write = dying  # type: ignore[method-assign, assignment]
        try:
            self.run(self.projector.step(part, timeout_s=0.01))
        except Exception:
            pass
        finally:
            store._write = original  # type: ignore[method-assign]
        self.projector = self.new_projector()

    # -- the property ----------------------------------------------------------

    def reference(self, upto: dict[int, int]) -> dict[str, str]:
        prefix = [ev for pos, ev in self.appended if pos.offset < upto.get(pos.partition, 0)]
        return {i: fingerprint(s) for i, s in fold_all(prefix, mode=self.mode).items()
                if s.seen}

    @invariant()
    def projection_is_the_fold_of_the_tracked_prefix(self) -> None:
        upto = self.run(self.store.tracking_positions("projector"))
        ref = self.reference(upto)
        got: dict[str, str] = {}
        for iid in self.run(self.store.instance_ids()):
            loaded = self.run(self.store.load_instance(iid))
            assert loaded is not None
            rows, stored = loaded
            assert fingerprint(rows) == stored
            got[iid] = stored
        assert got == ref

    def teardown(self) -> None:
        try:
            self.run(self.new_projector().catch_up())
            upto = self.run(self.log.end_offsets())
            ref = self.reference(upto)
            got = {i: self.run(self.store.load_instance(i)) for i in ref}
            assert {i: g[1] for i, g in got.items() if g is not None} == ref
        finally:
            self.run(self.store.stop())
            self.run(self.log.stop())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


class EventualProjectorMachine(ProjectorMachine):
    mode: Mode = "eventual"


TestProjectorMachine = ProjectorMachine.TestCase
TestProjectorMachine.settings = settings(max_examples=20, stateful_step_count=12, deadline=None)
TestEventualProjectorMachine = EventualProjectorMachine.TestCase
TestEventualProjectorMachine.settings = settings(max_examples=15, stateful_step_count=12,
                                                 deadline=None)
