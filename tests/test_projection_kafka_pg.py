"""Real cluster: project from Kafka into PostgreSQL while the projector is `kill -9`ed.

Runs `selfhood project` as a child process against the Kafka and PostgreSQL
of `selfhood cluster up`, kills it with SIGKILL at random points several
times, restarts it, and checks every instance's projected fingerprint against
the reference fold of the log, plus that no row was written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from selfhood.eventlog.base import EventLog, scan
from selfhood.eventlog.url import open_log
from selfhood.events import Event, MemoryWritten, RuleAdded, RuleRevoked, TurnAppended
from selfhood.projections.reducer import fold_all
from selfhood.projections.state import InstanceState, fingerprint
from selfhood.projections.store import (
    SqlProjectionStore,
    drop_postgres_database,
    fresh_postgres_database,
)
from selfhood.projections.strategies import scenario_events

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]


def selfhood(*args: str) -> list[str]:
    return [sys.executable, "-m", "selfhood", *args]


async def read_all(log_url: str) -> list[Event]:
    out: list[Event] = []
    async with open_log(log_url) as log:
        lg: EventLog = log
        for part in await lg.partitions():
            async for entry in scan(lg, part):
                if entry.event is not None:
                    out.append(entry.event)
    return out


async def append_all(log_url: str, events: list[Event]) -> None:
    async with open_log(log_url) as log:
        for i in range(0, len(events), 500):
            await log.append_batch(events[i:i + 500])


def expected_rows(ref: dict[str, InstanceState]) -> dict[str, int]:
    return {
        "instances": len(ref),
        "transcript": sum(len(s.transcript) for s in ref.values()),
        "memory": sum(len(s.case_bank) + sum(len(r) for r in s.memory.values())
                      for s in ref.values()),
        "rules": sum(len(set(s.rule_adds) | set(s.revoked)) for s in ref.values()),
        "rejected": sum(len(s.rejected) for s in ref.values()),
    }


async def check_projection(db_url: str, events: list[Event]) -> None:
    ref = fold_all(events)
    async with SqlProjectionStore(db_url) as store:
        assert await store.instance_ids() == sorted(ref)
        for iid, st in ref.items():
            got = await store.load_instance(iid)
            assert got is not None
            rows_state, stored_fp = got
            assert stored_fp == fingerprint(st), iid
            assert fingerprint(rows_state) == fingerprint(st), iid
        counts = await store.count_rows()
    exp = expected_rows(ref)
    assert {k: counts[k] for k in exp} == exp


def kill_and_restart(cmd: list[str], db_url: str, kills: int, rng: random.Random) -> int:
    """Run `cmd`, SIGKILL it `kills` times at random points after it made progress."""
    return asyncio.run(_kill_and_restart(cmd, db_url, kills, rng))


async def _kill_and_restart(cmd: list[str], db_url: str, kills: int,
                            rng: random.Random) -> int:
    done = 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    async with SqlProjectionStore(db_url) as store:  # creates the schema; idempotent
        while done < kills:
            before = sum((await store.tracking_positions("projector")).values())
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                env=env)
            try:
                # wait until this run committed a batch, then kill it a random moment later
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and proc.returncode is None:
                    if sum((await store.tracking_positions("projector")).values()) > before:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.15))
                if proc.returncode is not None:
                    return done  # it finished before it could be killed
                proc.kill()  # SIGKILL, by pid
                done += 1
            finally:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                await proc.wait()
    return done


def test_kafka_into_postgres_survives_kill_9(kafka_bootstrap: str, database_url: str) -> None:
    from selfhood.eventlog.kafka import delete_topic

    rng = random.Random(7)
    topic = f"proj-it-{uuid.uuid4().hex[:8]}"
    log_url = f"kafka://{kafka_bootstrap}/{topic}?partitions=4"
    events = scenario_events(10_000, 24, seed=11)
    asyncio.run(append_all(log_url, events))
    db = asyncio.run(fresh_postgres_database(database_url, f"proj_it_{uuid.uuid4().hex[:8]}"))
    try:
        _kill_test_body(log_url, db, events, rng)
    finally:
        asyncio.run(drop_postgres_database(db))
        asyncio.run(delete_topic(kafka_bootstrap, topic))


def _kill_test_body(log_url: str, db: str, events: list[Event], rng: random.Random) -> None:
    cmd = selfhood("project", log_url, "--into", db, "--batch", "50", "--snapshot-every",
                   "50", "-q")
    kills = kill_and_restart(cmd, db, 4, rng)
    assert kills >= 3, "the projector finished before it could be killed mid-run"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "rehydrated" in res.stdout
    logged = asyncio.run(read_all(log_url))
    assert len(logged) == len({e.event_id for e in events})  # the log deduplicated retries
    asyncio.run(check_projection(db, logged))
    # and the CLI agrees: rebuilt from Kafka == read from PostgreSQL
    some = sorted({e.instance_id for e in events})[:2]
    for iid in some:
        from_log = json.loads(subprocess.run(
            selfhood("instance", "show", iid, "--from", log_url, "--json"),
            capture_output=True, text=True, timeout=60, check=True).stdout)
        from_db = json.loads(subprocess.run(
            selfhood("instance", "show", iid, "--from", db, "--json"),
            capture_output=True, text=True, timeout=60, check=True).stdout)
        assert from_log["fingerprint"] == from_db["fingerprint"]
        assert from_log["version"] == from_db["version"] > 0


def _bench_log(tmp_path: Path, n: int) -> str:
    url = f"sqlite:///{tmp_path}/bench.db"
    subprocess.run(selfhood("log", "bench", url, "--events", str(n), "--instances", "100"),
                   check=True, capture_output=True, timeout=300)
    return url


def _acceptance(tmp_path: Path, database_url: str, n: int, kills: int) -> None:
    log_url = _bench_log(tmp_path, n)
    events = asyncio.run(read_all(log_url))
    assert len(events) == n
    kinds = {type(e.payload) for e in events}
    assert {TurnAppended, MemoryWritten, RuleAdded, RuleRevoked} <= kinds
    pg = asyncio.run(fresh_postgres_database(database_url, f"proj_acc_{uuid.uuid4().hex[:8]}"))
    try:
        for db in (f"sqlite:///{tmp_path}/proj.db", pg):
            cmd = selfhood("project", log_url, "--into", db, "--batch", "500", "-q")
            kill_and_restart(cmd, db, kills, random.Random(3))
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            asyncio.run(check_projection(db, events))
    finally:
        asyncio.run(drop_postgres_database(pg))
    # `instance show --from LOG_URL` is the reference the issue names
    iid = events[0].instance_id
    shown = json.loads(subprocess.run(
        selfhood("instance", "show", iid, "--from", log_url, "--json"),
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert shown["fingerprint"] == fingerprint(fold_all(events)[iid])


def test_log_bench_acceptance_small(tmp_path: Path, database_url: str) -> None:
    _acceptance(tmp_path, database_url, 8000, kills=2)


@pytest.mark.slow
def test_log_bench_acceptance_full(tmp_path: Path, database_url: str) -> None:
    _acceptance(tmp_path, database_url, 50_000, kills=4)
