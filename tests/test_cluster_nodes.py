"""What the cluster runtime pulls on, against the real thing: tracked node processes
(kill -9, SIGSTOP/SIGCONT, restart), libfaketime clock skew on a real process, and
node namespaces with iptables partitions between groups of brokers, replicas and
a client - made by a process that then dies by SIGKILL, removed by `cluster down`.

Every test leaves nothing behind (processes, namespaces, veths, rules), also
when it fails: the cleanup is in `finally` blocks and checked at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfhood.chaos.cluster import ClusterManager, port_free
from selfhood.chaos.cluster.processes import faketime_library
from selfhood.errors import ClusterError

ECHO_PORT = 7070

# Prints "<n> <wall> <monotonic>" every 20 ms: progress, and both clocks. It waits
# with select(), not time.sleep(): under libfaketime 0.9.10 with the monotonic clock
# left real, clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) - Python's time.sleep -
# fails with EINVAL (asyncio, select, Event/Queue timeouts are unaffected).
_TICKER = textwrap.dedent("""
    import select, time
    n = 0
    while True:
        print(n, repr(time.time()), repr(time.monotonic()), flush=True)
        n += 1
        select.select([], [], [], 0.02)
""")

# Accepts TCP connections on the given address forever (proves its namespace).
_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen()
    print("listening", flush=True)
    while True:
        s.accept()[0].close()
""")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state dir under /tmp (the PostgreSQL user must be able to reach it)."""
    path = Path(tempfile.mkdtemp(prefix="selfhood-nodes-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ticks(mgr: ClusterManager, name: str) -> list[tuple[int, float, float]]:
    out = []
    for line in mgr.process_log(name).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit():
            out.append((int(parts[0]), float(parts[1]), float(parts[2])))
    return out


async def grows(mgr: ClusterManager, name: str, wait: float = 0.5) -> bool:
    before = len(ticks(mgr, name))
    await asyncio.sleep(wait)
    return len(ticks(mgr, name)) > before


def environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def test_process_kill9_pause_resume_restart(state_dir: Path) -> None:
    mgr = ClusterManager(state_dir)
    pids: list[int] = []
    try:
        pids.append(await mgr.start_process("ticker", [sys.executable, "-c", _TICKER],
                                            env={"SELFHOOD_TEST": "1"}))
        await mgr.wait_for_output("ticker", "3 ", limit=20)
        with pytest.raises(ClusterError, match="already running"):
            await mgr.start_process("ticker", [sys.executable, "-c", _TICKER])
        assert await mgr.pause_process("ticker") == pids[0]
        await asyncio.sleep(0.1)
        assert mgr.process_paused("ticker")
        assert not await grows(mgr, "ticker")  # SIGSTOP: nothing runs
        await mgr.resume_process("ticker")
        assert not mgr.process_paused("ticker")
        assert await grows(mgr, "ticker")
        await mgr.kill_process("ticker")  # kill -9, returns once it is gone
        assert mgr.process_pid("ticker") is None and pid_gone(pids[0])
        with pytest.raises(ClusterError, match="not running"):
            await mgr.pause_process("ticker")
        pids.append(await mgr.restart_process("ticker"))  # same argv and env as recorded
        assert pids[1] != pids[0] and mgr.process_pid("ticker") == pids[1]
        assert await grows(mgr, "ticker", 1.0)
        assert b"SELFHOOD_TEST=1" in environ(pids[1])
    finally:
        await mgr.stop_processes()
    assert all(pid_gone(p) for p in pids)
    assert mgr.process_names() == []


@pytest.mark.skipif(faketime_library() is None, reason="libfaketime is not installed "
                    "(scripts/install-system.sh installs it)")
async def test_skewed_clock_moves_wall_time_and_not_monotonic(state_dir: Path) -> None:
    """A real process under libfaketime: a live offset moves time.time(), not monotonic."""
    mgr = ClusterManager(state_dir)
    try:
        await mgr.start_process("skewed", [sys.executable, "-c", _TICKER], skew_clock=True)
        await mgr.wait_for_output("skewed", "5 ", limit=30)
        before = ticks(mgr, "skewed")[-1]
        assert abs(before[1] - time.time()) < 5  # offset 0 at first
        mgr.set_clock_offset("skewed", 3600.0)
        await asyncio.sleep(0.5)
        mgr.set_clock_offset("skewed", -120.5)
        await asyncio.sleep(0.5)
        seen = ticks(mgr, "skewed")
        ahead = [t for t in seen if t[1] - time.time() > 3000]
        behind = [t for t in seen if t[0] > ahead[-1][0] and t[1] - time.time() < -100]
        assert ahead and behind, seen[-5:]
        assert abs(ahead[0][1] - before[1] - 3600) < 5
        assert abs(behind[-1][1] - time.time() + 120.5) < 5
        # the monotonic clock never jumped: consecutive ticks stay ~20 ms apart
        mono_steps = [b[2] - a[2] for a, b in itertools.pairwise(seen)]
        assert all(0 <= d < 1.0 for d in mono_steps), max(mono_steps)
        with pytest.raises(ClusterError, match="skew_clock"):
            await mgr.start_process("plain", [sys.executable, "-c", "pass"])
            mgr.set_clock_offset("plain", 1.0)
    finally:
        await mgr.stop_processes()


def _netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _root_rules() -> str:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return "\n".join(ln for ln in out.splitlines() if not ln.startswith("#"))


def _ns_rules(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "iptables-save"],
                         capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "DROP" in ln and ln.startswith("-A")]


def _free_base_port() -> int:
    for base in range(43092, 60000, 89):
        if all(port_free("127.0.0.1", base + off) for off in (0, 10, 20)):
            return base
    raise RuntimeError("no free port block")


# Sets up nodes, servers and a partition through the API, then dies by SIGKILL:
# `cluster down` must still remove everything it made.
_CRASHER = textwrap.dedent("""
    import asyncio, os, signal, sys
    from selfhood.chaos.cluster import ClusterManager

    async def main(state, server):
        mgr = ClusterManager(state)
        for node in ("r1", "r2", "c1"):
            await mgr.add_node(node)
        for node in ("r2", "c1"):
            await mgr.start_process(f"srv-{node}", [sys.executable, "-c", server,
                                    mgr.node_address(node), "7070"], node=node)
            await mgr.wait_for_output(f"srv-{node}", "listening", limit=30)
        await mgr.partition_nodes([["r1", "log"], ["r2", "c1"]])
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


def _tcp(mgr: ClusterManager, src: str, dst: str, port: int) -> bool:
    """Can node `src` open a TCP connection to node `dst` (1 s bound)?"""
    probe = (f"import socket; socket.create_connection(({mgr.node_address(dst)!r}, {port}),"
             f" timeout=1)")
    done = subprocess.run(["ip", "netns", "exec", mgr.node_namespace(src), sys.executable,
                           "-c", probe], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.kafka
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_node_namespaces_partitions_and_down_after_a_crash(state_dir: Path) -> None:
    namespaces, links, rules = _netns_list(), _links(), _root_rules()
    mgr = ClusterManager(state_dir)
    tags: list[str] = []
    try:
        status = await mgr.up(1, netns=True, base_port=_free_base_port(), limit=120)
        assert status.healthy, status.to_json()
        cfg = mgr.load_config()
        assert cfg is not None
        tags.append(cfg.tag)
        broker_port = cfg.broker_port(1)
        crasher = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", _CRASHER, str(state_dir), _SERVER],
            capture_output=True, text=True, timeout=120)
        assert crasher.returncode == -signal.SIGKILL, crasher.stderr
        assert "ready" in crasher.stdout
        # what the dead process made is there, and this process can drive it
        assert set(mgr.nodes()) == {"r1", "r2", "c1"}
        assert len(set(mgr.nodes().values())) == 3
        assert {mgr.node_namespace(n) for n in ("r1", "r2", "c1")} <= _netns_list()
        assert mgr.process_pid("srv-r2") is not None and mgr.process_pid("srv-c1") is not None
        # [[r1, log], [r2, c1]]: r1 reaches the broker, r2 does not; r2 and c1 talk
        assert _tcp(mgr, "r1", "b1", broker_port)
        assert not _tcp(mgr, "r2", "b1", broker_port)
        assert not _tcp(mgr, "r1", "r2", ECHO_PORT)
        assert _tcp(mgr, "c1", "r2", ECHO_PORT)
        assert _ns_rules(mgr.node_namespace("r2"))
        await mgr.heal()
        assert _tcp(mgr, "r2", "b1", broker_port) and _tcp(mgr, "r1", "r2", ECHO_PORT)
        assert all(_ns_rules(mgr.node_namespace(n)) == [] for n in ("r1", "r2", "c1", "b1"))
        # overlapping groups (r2 bridges); the broker, in no group, is cut from everyone
        cut = await mgr.partition_nodes([["r1", "r2"], ["r2", "c1"]])
        assert ("c1", "r1") in cut and ("b1", "r1") in cut and ("r1", "r2") not in cut
        assert _tcp(mgr, "r1", "r2", ECHO_PORT) and _tcp(mgr, "c1", "r2", ECHO_PORT)
        assert not _tcp(mgr, "r1", "c1", ECHO_PORT)
        assert not _tcp(mgr, "r1", "b1", broker_port)
        with pytest.raises(ClusterError, match="unknown node 'r9'"):
            await mgr.partition_nodes([["r9"]])
        with pytest.raises(ClusterError, match="node name"):
            await mgr.add_node("b1")
        # a broker in netns mode: kill -9 and restart still work
        pid = mgr.broker_pid(1)
        await mgr.kill_broker(1)
        assert not mgr.broker_alive(1)
        await mgr.start_broker(1, limit=120)
        assert mgr.broker_alive(1) and mgr.broker_pid(1) != pid
        assert mgr.process_pid("srv-r2") is not None
        # remove_nodes heals and removes the node namespaces, not the brokers'
        made = {mgr.node_namespace(n) for n in ("r1", "r2", "c1")}
        await mgr.remove_nodes()
        assert mgr.nodes() == {} and not made & _netns_list()
        assert cfg.namespace(1) in _netns_list() and _ns_rules(cfg.namespace(1)) == []
        await mgr.add_node("r1")  # again, so that `down` below has a node to remove
    finally:
        down = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "selfhood", "cluster", "down",
                             "--state-dir", str(state_dir)],
            capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    # what this test's cluster made (its tag) is gone; other checkouts on the machine
    # may add or remove their own namespaces, links and rules meanwhile
    assert tags, "the cluster never came up"
    tag = tags[0]
    assert {n for n in _netns_list() - namespaces if tag in n} == set()
    assert {n for n in _links() - links if tag in n} == set()
    assert [ln for ln in _root_rules().splitlines()
            if tag in ln and ln not in rules.splitlines()] == []
    assert mgr.process_pid("srv-r2") is None and mgr.process_names() == []
