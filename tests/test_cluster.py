"""`selfhood cluster`: the real Kafka + PostgreSQL cluster, its levers and its errors.

The shared cluster (conftest) is used for status and kill/restart. Anything
that starts or stops a whole cluster uses its own state dir and ports, so it
never disturbs the shared one.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfhood.chaos.cluster import (
    ClusterManager,
    acks_all_write,
    broker_ids_in_metadata,
    kafka_uuid,
    port_free,
    postgres_ready,
    replicated_settings,
)
from selfhood.errors import PortInUse


def _selfhood(*args: str, env: dict[str, str] | None = None,
              limit: float = 240.0) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process (as a user would)."""
    return subprocess.run([sys.executable, "-m", "selfhood", *args], capture_output=True,
                          text=True, timeout=limit, env=env)


def _free_base_port() -> int:
    """A base port whose whole block (brokers, controllers, postgres) is free."""
    for base in range(41092, 60000, 97):
        if all(port_free("127.0.0.1", base + off) for off in (0, 1, 2, 10, 11, 12, 20)):
            return base
    raise RuntimeError("no free port block")


def _pids_with(marker: str) -> list[int]:
    """Pids whose command line mentions `marker` (our state dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmd and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


async def _acks_all_within(bootstrap: str, limit: float) -> str | None:
    """Retry an RF 3 acks=all write until it succeeds; the last failure reason otherwise."""
    deadline = time.monotonic() + limit
    while True:
        reason = await acks_all_write(bootstrap, 3, 2, limit=15)
        if reason is None or time.monotonic() > deadline:
            return reason
        await asyncio.sleep(1.0)


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A state dir under /tmp (the PostgreSQL user must be able to reach it)."""
    path = Path(tempfile.mkdtemp(prefix="selfhood-test-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the shared cluster -----------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.postgres
def test_status_shows_three_healthy_brokers_and_postgres(
        cluster_status: dict[str, Any], cluster_manager: ClusterManager) -> None:
    assert [b["id"] for b in cluster_status["brokers"]] == [1, 2, 3]
    assert all(b["healthy"] for b in cluster_status["brokers"])
    assert cluster_status["postgres"]["healthy"] is True
    assert cluster_status["bootstrap"] == ",".join(
        b["address"] for b in cluster_status["brokers"])
    # the CLI reports the same thing as one JSON object, exit 0 when healthy
    out = _selfhood("cluster", "status", "--json", "--state-dir", str(cluster_manager.state_dir))
    assert out.returncode == 0, out.stderr
    as_json = json.loads(out.stdout)
    assert as_json["bootstrap"] == cluster_status["bootstrap"]
    assert as_json["database_url"] == cluster_status["database_url"]
    assert {"id", "address", "healthy"} <= set(as_json["brokers"][0])


@pytest.mark.kafka
@pytest.mark.postgres
async def test_up_again_is_a_noop(cluster_status: dict[str, Any],
                                  cluster_manager: ClusterManager) -> None:
    before = [b["pid"] for b in cluster_status["brokers"]]
    out = _selfhood("cluster", "up", "--brokers", "3", "--state-dir",
                    str(cluster_manager.state_dir), limit=60)
    assert out.returncode == 0, out.stderr
    assert "already up and healthy" in out.stderr
    assert f"bootstrap: {cluster_status['bootstrap']}" in out.stdout
    after = [b.pid for b in (await cluster_manager.status()).brokers]
    assert after == before


@pytest.mark.kafka
async def test_replicated_settings_are_live(cluster_status: dict[str, Any]) -> None:
    """The brokers really run with RF 3 / min ISR 2: an acks=all write to RF 3 succeeds."""
    settings = replicated_settings(3)
    assert settings["min.insync.replicas"] == "2"
    assert await acks_all_write(cluster_status["bootstrap"], 3, 2) is None


@pytest.mark.kafka
async def test_kill_9_one_broker_then_start_it_again(
        cluster_status: dict[str, Any], cluster_manager: ClusterManager) -> None:
    victim = cluster_status["brokers"][-1]
    await cluster_manager.kill_broker(victim["id"])
    try:
        st = await cluster_manager.status()
        down = next(b for b in st.brokers if b.id == victim["id"])
        assert not down.alive and not down.healthy
        # RF 3, min ISR 2: the two survivors still take acks=all writes, once the
        # controller has fenced the dead node and moved leadership (session timeout)
        assert await _acks_all_within(cluster_status["bootstrap"], 60.0) is None
    finally:
        # never leave the shared cluster one broker short for the tests after this one
        await cluster_manager.start_broker(victim["id"], limit=120)
    st = await cluster_manager.status()
    assert st.healthy, st.to_json()
    assert next(b for b in st.brokers if b.id == victim["id"]).pid != victim["pid"]


# --- private clusters -------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_netns_one_broker_up_reachable_and_down_leaves_nothing(
        scratch_dir: Path) -> None:
    mgr = ClusterManager(scratch_dir)
    status = await mgr.up(1, netns=True, base_port=_free_base_port(), limit=120)
    cfg = mgr.load_config()
    assert cfg is not None
    try:
        assert status.healthy, status.to_json()
        broker = status.brokers[0]
        assert broker.address.startswith(f"{cfg.subnet}.")
        assert broker.namespace == cfg.namespace(1)
        # reachable from the root namespace, where this test runs
        assert await broker_ids_in_metadata(broker.address) == {1}
        assert await acks_all_write(status.bootstrap, 1, 1) is None
        assert await postgres_ready("127.0.0.1", cfg.postgres_port, "selfhood")
        assert cfg.namespace(1) in _netns_list()
    finally:
        await mgr.down()
    await mgr.down()  # safe twice
    assert cfg.namespace(1) not in _netns_list()
    assert not _link_exists(cfg.bridge)
    assert not _link_exists(cfg.veth_host(1))
    assert _pids_with(str(scratch_dir)) == []
    assert not (await mgr.status()).configured


def test_port_taken_gives_a_clear_error(scratch_dir: Path) -> None:
    base = _free_base_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base))
        squatter.listen()
        mgr = ClusterManager(scratch_dir)
        with pytest.raises(PortInUse, match=f"port {base} .*broker 1"):
            asyncio.run(mgr.up(1, base_port=base, limit=30))
        out = _selfhood("cluster", "up", "--brokers", "1", "--state-dir", str(scratch_dir),
                        "--base-port", str(base), limit=60)
    assert out.returncode == 1
    assert f"port {base} on 127.0.0.1 (for broker 1) is already in use" in out.stderr
    assert "Traceback" not in out.stderr
    assert _pids_with(str(scratch_dir)) == []
    assert not (scratch_dir / "cluster.json").exists()


def test_missing_java_gives_a_clear_error(scratch_dir: Path) -> None:
    empty_bin = scratch_dir / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}
    out = _selfhood("cluster", "up", "--brokers", "1", "--state-dir",
                    str(scratch_dir / "state"), "--base-port", str(_free_base_port()), env=env)
    assert out.returncode == 1
    assert "`java` is not on PATH" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.kafka
def test_ctrl_c_during_up_leaves_no_orphans(scratch_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfhood", "cluster", "up", "--brokers", "1",
         "--state-dir", str(scratch_dir), "--base-port", str(_free_base_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = ""
    try:
        deadline = time.monotonic() + 150  # initdb + storage format are slow on a busy box
        broker_pid = scratch_dir / "broker-1" / "pid"
        while not broker_pid.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert broker_pid.exists(), f"up never started the broker (exit {proc.poll()})"
        assert _pids_with(str(scratch_dir)), "nothing running to interrupt"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert _pids_with(str(scratch_dir)) == [], err


def test_cluster_ids_are_kafka_uuids_that_never_look_like_options() -> None:
    """A leading "-" made StorageTool read the id as a flag (seen once in ~1 of 64 runs)."""
    import base64

    for _ in range(5000):
        cid = kafka_uuid()
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def _path_with(*tools: str, into: Path) -> str:
    """A PATH holding only links to `tools` (to hide every other program)."""
    into.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, f"test needs {tool}"
        (into / tool).symlink_to(found)
    return str(into)


def test_missing_postgres_gives_a_clear_error(scratch_dir: Path) -> None:
    env = {**os.environ, "SELFHOOD_PG_BINDIR": str(scratch_dir / "no-postgres-here")}
    out = _selfhood("cluster", "up", "--brokers", "1", "--state-dir",
                    str(scratch_dir / "state"), "--base-port", str(_free_base_port()), env=env)
    assert out.returncode == 1
    assert "PostgreSQL server binaries not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_maven_gives_a_clear_error_when_jars_are_not_cached(scratch_dir: Path) -> None:
    env = {**os.environ,
           "PATH": _path_with("java", "setpriv", "useradd", into=scratch_dir / "bin"),
           "XDG_CACHE_HOME": str(scratch_dir / "empty-cache")}
    state = scratch_dir / "state"
    out = _selfhood("cluster", "up", "--brokers", "1", "--state-dir", str(state),
                    "--base-port", str(_free_base_port()), env=env)
    assert out.returncode == 1
    assert "`mvn` is not on PATH" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (state / "cluster.json").exists()
    assert _pids_with(str(state)) == []


def _tcp_from(namespace: str, host: str, port: int) -> bool:
    """Can `namespace` open a TCP connection to host:port (1 s bound)?"""
    probe = (f"import socket; socket.create_connection(({host!r}, {port}), timeout=1)")
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", probe],
                          capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_netns_partition_cuts_brokers_apart_and_heal_restores(scratch_dir: Path) -> None:
    mgr = ClusterManager(scratch_dir)
    status = await mgr.up(3, netns=True, base_port=_free_base_port(), limit=180)
    cfg = mgr.load_config()
    assert cfg is not None and status.healthy
    try:
        assert await asyncio.to_thread(_tcp_from, cfg.namespace(1), cfg.broker_host(2),
                                       cfg.broker_port(2))
        await mgr.partition([[1], [2, 3]])
        assert not await asyncio.to_thread(_tcp_from, cfg.namespace(1), cfg.broker_host(2),
                                           cfg.broker_port(2))
        assert await asyncio.to_thread(_tcp_from, cfg.namespace(2), cfg.broker_host(3),
                                       cfg.broker_port(3))
        # the majority side still takes acks=all writes (RF 3, min ISR 2)
        majority = f"{cfg.broker_address(2)},{cfg.broker_address(3)}"
        assert await _acks_all_within(majority, 90.0) is None
        await mgr.heal()
        assert await asyncio.to_thread(_tcp_from, cfg.namespace(1), cfg.broker_host(2),
                                       cfg.broker_port(2))
    finally:
        await mgr.down()
    assert _pids_with(str(scratch_dir)) == []
    assert cfg.namespace(1) not in _netns_list()
