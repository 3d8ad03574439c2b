"""SqliteEventLog: the contract suite, plus what only the embedded log promises.

The "restart" for the embedded log is a writer process killed with SIGKILL
right after its appends were acknowledged; every acked event must be there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from eventlog_contract import EventLogContract, read_partition, turn
from selfhood.errors import LogUnavailable, LogUrlError, NotALog
from selfhood.eventlog.base import LogPosition, scan
from selfhood.eventlog.partitioning import partition_for
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.events import Event, decode

# A child process that appends events, prints them once acked, then dies by SIGKILL
# (no stop(), no close: the hardest crash a writer can have).
_CRASHING_WRITER = textwrap.dedent("""
    import asyncio, os, signal, sys
    from selfhood.eventlog.sqlite import SqliteEventLog
    from selfhood.events import Hlc, TurnAppended, encode, make_event

    async def main(path, instance, first, count, writer):
        log = SqliteEventLog(path)
        await log.start()
        for n in range(first, first + count):
            ev = make_event(instance, TurnAppended("user", f"turn {n}"), writer=writer,
                            hlc=Hlc(n, 0))
            await log.append(ev)
            sys.stdout.write(encode(ev).decode() + "\\n")
            sys.stdout.flush()
        if os.environ.get("CRASH") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        await log.stop()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
""")


def run_writer(path: Path, instance: str, first: int, count: int, writer: str,
               crash: bool) -> subprocess.Popen[str]:
    env = dict(os.environ, CRASH="1" if crash else "0")
    return subprocess.Popen([sys.executable, "-c", _CRASHING_WRITER, str(path), instance,
                             str(first), str(count), writer],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def acked_events(proc: subprocess.Popen[str], timeout: float = 60.0) -> list[Event]:
    out, _err = proc.communicate(timeout=timeout)
    return [decode(line.encode()) for line in out.splitlines() if line.strip()]


class TestSqliteEventLog(EventLogContract):
    @pytest.fixture(autouse=True)
    def _log_path(self, tmp_path: Path) -> None:
        self.path = tmp_path / "log.db"

    def open_log(self) -> SqliteEventLog:
        return SqliteEventLog(self.path)

    def log_url(self) -> str:
        return f"sqlite:///{self.path}"

    @contextlib.asynccontextmanager
    async def disrupted(self, log: SqliteEventLog, partition: int) -> AsyncIterator[list[Event]]:
        """Another writer process appends to the same instance and is SIGKILLed after its acks."""
        entries = await read_partition(log, partition)
        last = entries[-1].event
        assert last is not None
        proc = run_writer(self.path, last.instance_id, last.hlc.wall + 1, 15, "crasher", True)
        others = await asyncio.to_thread(acked_events, proc)
        assert proc.returncode == -signal.SIGKILL
        assert len(others) == 15
        yield others


async def test_partition_count_is_stored_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    async with SqliteEventLog(path, partitions=3) as log:
        assert await log.partitions() == [0, 1, 2]
    async with SqliteEventLog(path) as log:  # reopen without saying: the file decides
        assert await log.partitions() == [0, 1, 2]
        assert log.partition_of("abc") == partition_for("abc", 3)
    with pytest.raises(LogUrlError, match="has 3 partitions"):
        async with SqliteEventLog(path, partitions=8):
            pass


async def test_default_is_eight_partitions_like_the_kafka_topic(tmp_path: Path) -> None:
    async with SqliteEventLog(tmp_path / "d.db") as log:
        assert await log.partitions() == list(range(8))
        pos = await log.append(turn("instance-42", 0))
        assert pos.partition == partition_for("instance-42", 8)


async def test_missing_directory_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(LogUnavailable, match="does not exist"):
        async with SqliteEventLog(tmp_path / "nope" / "log.db"):
            pass


async def test_not_a_database_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    for create in (True, False):  # malformed input (the CLI's exit 65), not an outage
        with pytest.raises(NotALog, match=f"sqlite log {path}: file is not a database"):
            async with SqliteEventLog(path, create=create):
                pass


async def test_appends_from_several_processes_stay_dense_and_unique(tmp_path: Path) -> None:
    """Three writer processes plus this one append at once; offsets stay dense, none lost."""
    path = tmp_path / "mp.db"
    async with SqliteEventLog(path) as log:
        procs = [run_writer(path, f"proc-{k}", 0, 150, f"w{k}", False) for k in range(3)]
        mine = [turn("local", n) for n in range(150)]
        for ev in mine:
            await log.append(ev)
        results = [await asyncio.to_thread(acked_events, p) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        ends = await log.end_offsets()
        total = 0
        seen: set[str] = set()
        for part in await log.partitions():
            offs = []
            async for entry in scan(log, part):
                assert entry.event is not None
                assert entry.event.event_id not in seen
                seen.add(entry.event.event_id)
                offs.append(entry.position.offset)
            assert offs == list(range(ends[part]))  # dense: 0..end-1, no gaps
            total += len(offs)
    assert total == 600
    for k, evs in enumerate(results):
        assert len(evs) == 150 and {e.event_id for e in evs} <= seen, k


async def test_reader_in_another_process_sees_commits(tmp_path: Path) -> None:
    """A tailing reader (another adapter, as a projector process would have) sees new appends."""
    path = tmp_path / "tail.db"
    async with SqliteEventLog(path) as writer, SqliteEventLog(path) as reader:
        part = writer.partition_of("t")
        waiting = asyncio.create_task(reader.read(part, 0, timeout_s=10.0))
        await asyncio.sleep(0.1)
        pos = await writer.append(turn("t", 0))
        got = await asyncio.wait_for(waiting, 10.0)
        assert [e.position for e in got.entries] == [pos]


async def test_many_concurrent_tasks_group_commit(tmp_path: Path) -> None:
    async with SqliteEventLog(tmp_path / "g.db", synchronous="NORMAL") as log:
        evs = [turn(f"g{n % 7}", n // 7) for n in range(700)]
        positions = await asyncio.gather(*(log.append(e) for e in evs))
        assert len(set(positions)) == 700
        assert sum((await log.end_offsets()).values()) == 700


async def test_stop_flushes_queued_appends(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    log = SqliteEventLog(path)
    await log.start()
    tasks = [asyncio.create_task(log.append(turn("f", n))) for n in range(50)]
    await asyncio.sleep(0)
    await log.stop()
    done = [t.result() for t in tasks]
    assert len(set(done)) == 50
    async with SqliteEventLog(path) as again:
        assert sum((await again.end_offsets()).values()) == 50


def test_dump_positions_json_roundtrip() -> None:
    """LogPosition is a plain value: comparable, hashable, JSON-encodable (session tokens)."""
    a, b = LogPosition(1, 5), LogPosition(partition=1, offset=6)
    assert a < b and len({a, LogPosition(1, 5)}) == 1
    assert json.loads(msgspec.json.encode(a)) == {"partition": 1, "offset": 5}


# -- the replay fast path: read_events ------------------------------------------

async def test_read_events_skips_corrupt_records_and_honours_bounds(tmp_path: Path) -> None:
    async with SqliteEventLog(tmp_path / "log.db", partitions=1) as log:
        evs = [turn("a", n) for n in range(10)]
        await log.append_batch(evs[:4])
        await log.append_raw("a", b"\xffnot json")  # offset 4
        await log.append_raw("a", b"\xffnot json")  # offset 5
        await log.append_batch(evs[4:])
        got: list[tuple[int, Event]] = []
        offset = 1
        while True:
            offset, batch = await log.read_events(0, offset, 11, limit=2)
            got += batch
            if offset >= 11:
                break
        assert offset == 11
        assert got == [(o, e) for o, e in zip([1, 2, 3, 6, 7, 8, 9, 10], evs[1:9], strict=True)]
        assert await log.read_events(0, 11, 11) == (11, [])
        # a batch of only corrupt records still moves the offset on
        assert await log.read_events(0, 4, 12, limit=2) == (6, [])
