"""KafkaEventLog on the real 3-broker cluster: the contract suite, topic settings, and the
acceptance test (kill -9 a broker while `selfhood log bench` runs; no acked event lost).

The "restart" for Kafka is the real thing: the leader of the partition under test
is killed with SIGKILL through the cluster manager, appends continue against the
two survivors, then the broker is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from eventlog_contract import EventLogContract, turn
from selfhood.chaos.cluster import ClusterManager
from selfhood.errors import LogTimeout, LogUnavailable
from selfhood.eventlog.base import scan
from selfhood.eventlog.kafka import KafkaEventLog
from selfhood.eventlog.partitioning import murmur2
from selfhood.events import Event

pytestmark = pytest.mark.kafka


def topic_name(tag: str) -> str:
    return f"test-{tag}-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def broker_down(manager: ClusterManager, node: int) -> AsyncIterator[None]:
    """kill -9 one broker; always restart it and wait until it is back in the metadata."""
    await manager.kill_broker(node)
    try:
        yield
    finally:
        await manager.start_broker(node, limit=180.0)


class TestKafkaEventLog(EventLogContract):
    read_slack_s = 5.0

    @pytest.fixture(autouse=True)
    def _topic(self, kafka_bootstrap: str, cluster_manager: ClusterManager) -> None:
        self.bootstrap = kafka_bootstrap
        self.manager = cluster_manager
        self.topic = topic_name("contract")

    def open_log(self) -> KafkaEventLog:
        return KafkaEventLog(self.bootstrap, self.topic, request_timeout_s=20.0)

    def log_url(self) -> str:
        return f"kafka://{self.bootstrap}/{self.topic}"

    @contextlib.asynccontextmanager
    async def disrupted(self, log: KafkaEventLog, partition: int) -> AsyncIterator[list[Event]]:
        leader = await log.leader_of(partition)
        assert leader is not None
        async with broker_down(self.manager, leader):
            yield []


async def _topic_settings(bootstrap: str, topic: str) -> tuple[int, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        desc = (await admin.describe_topics([topic]))[0]
        rf = {len(p["replicas"]) for p in desc["partitions"]}
        resp = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = resp[0].to_object()["resources"][0]["config_entries"]
        configs = {e["config_names"]: e["config_value"] for e in entries}
    finally:
        await admin.close()
    assert len(rf) == 1
    return rf.pop(), configs


async def test_topic_is_replicated_three_ways_with_min_isr_two(kafka_bootstrap: str) -> None:
    topic = topic_name("settings")
    async with KafkaEventLog(kafka_bootstrap, topic) as log:
        assert log.brokers == 3
        assert len(await log.partitions()) == 8
    rf, configs = await _topic_settings(kafka_bootstrap, topic)
    assert rf == 3
    assert configs["min.insync.replicas"] == "2"
    assert configs["unclean.leader.election.enable"] == "false"


async def test_partition_matches_kafkas_default_partitioner(kafka_bootstrap: str) -> None:
    """Java's DefaultPartitioner: toPositive(murmur2(key)) % n, and aiokafka's agrees."""
    from aiokafka.partitioner import DefaultPartitioner

    async with KafkaEventLog(kafka_bootstrap, topic_name("part"), partitions=5) as log:
        parts = await log.partitions()
        assert parts == [0, 1, 2, 3, 4]
        for k in range(40):
            inst = f"inst-{k}"
            pos = await log.append(turn(inst, 0))
            java = (murmur2(inst.encode()) & 0x7FFFFFFF) % 5
            assert pos.partition == java == DefaultPartitioner()(inst.encode(), parts, parts)


async def test_unreachable_bootstrap_is_a_typed_bounded_error() -> None:
    t0 = time.monotonic()
    with pytest.raises((LogUnavailable, LogTimeout)):
        async with KafkaEventLog("127.0.0.1:1", "x", request_timeout_s=3.0):
            pass
    assert time.monotonic() - t0 < 30


async def test_cache_is_bounded(kafka_bootstrap: str) -> None:
    async with KafkaEventLog(kafka_bootstrap, topic_name("cache"), dedup_cache=10) as log:
        await log.append_batch([turn("c", n) for n in range(25)])
        assert len(log._acked) == 10


def _run_bench(url: str, events: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "selfhood", "log", "bench", url, "--events", str(events),
         "--instances", "40", "--batch", "200", "--progress", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_kill9_broker_during_bench_loses_no_acked_event(
        kafka_bootstrap: str, cluster_manager: ClusterManager) -> None:
    """Acceptance: SIGKILL 1 of 3 brokers mid-bench; every acked event comes back once, in order."""
    topic = topic_name("kill9")
    url = f"kafka://{kafka_bootstrap}/{topic}"
    events = 80_000  # long enough that the kill lands mid-append even on a quiet box
    proc = _run_bench(url, events)
    victim = 2
    try:
        # wait for the bench to be appending for real, then kill a broker under it
        assert proc.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 120)
        assert line.startswith("append"), line
        assert proc.poll() is None, "bench finished before the broker was killed"
        async with broker_down(cluster_manager, victim):
            await asyncio.sleep(2.0)  # appends run against the two survivors meanwhile
        out, err = await asyncio.to_thread(proc.communicate, timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    print("bench under kill -9:", result)
    assert result["acked"] == events
    assert result["missing"] == 0 and result["duplicates"] == 0
    assert result["out_of_order"] == 0 and result["misplaced"] == 0
    assert result["order_verified"] is True
    # an independent reader agrees: exactly `events` records, each event id once
    seen: set[str] = set()
    async with KafkaEventLog(kafka_bootstrap, topic) as log:
        for part in await log.partitions():
            async for entry in scan(log, part, batch=5000):
                assert entry.event is not None
                assert entry.event.event_id not in seen
                seen.add(entry.event.event_id)
    assert len(seen) == events


async def test_retry_after_timeout_joins_the_first_attempt(kafka_bootstrap: str) -> None:
    """The first append times out (outcome unknown); retrying the same event writes it once."""
    async with KafkaEventLog(kafka_bootstrap, topic_name("retry"), append_timeout_s=1e-6) as log:
        ev = turn("retry-me", 0)
        with pytest.raises(LogTimeout):
            await log.append(ev)
        log._append_timeout_s = 30.0
        pos = await log.append(ev)
        assert await log.append(ev) == pos
        got = [e async for e in scan(log, pos.partition)]
        assert [e.event.event_id for e in got if e.event is not None] == [ev.event_id]
