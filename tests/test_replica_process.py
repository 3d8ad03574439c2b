"""Replica OS processes on the real 3-broker cluster: `selfhood replica serve`.

Each test spawns real replica processes (the CLI, as the cluster world
does), talks to them over the documented HTTP API (every response is
validated against selfhood/replica/replica-api.yaml) and injects real
faults: kill -9, SIGSTOP/SIGCONT, leaving the consumer group. Every process is stopped by
its pid in a fixture finalizer, also when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from replica_api import ApiClient
from selfhood.eventlog.partitioning import partition_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

SHARDS = 2
INSTANCES = 4
#: the replicas' --lease-ms (the default): sequential reads need a poll round this recent
LEASE_MS = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Replicas:
    """Replica processes of one test: one topic, one group, one port each."""

    def __init__(self, tmp: Path, bootstrap: str, *, mode: str = "sequential",
                 names: tuple[str, ...] = ("r0", "r1", "r2"), session_timeout_ms: int = 1000,
                 extra: tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        self.bootstrap = bootstrap
        self.topic = f"test-replica-{uuid.uuid4().hex[:10]}"
        self.mode = mode
        self.names = names
        self.ports = {n: free_port() for n in names}
        self.session_timeout_ms = session_timeout_ms
        self.extra = extra
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.session: aiohttp.ClientSession | None = None
        self.incarnation: dict[str, int] = dict.fromkeys(names, 0)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def argv(self, name: str, extra: tuple[str, ...] = ()) -> list[str]:
        argv = [sys.executable, "-m", "selfhood", "replica", "serve", "--node", name,
                "--listen", f"127.0.0.1:{self.ports[name]}", "--bootstrap", self.bootstrap,
                "--topic", self.topic, "--mode", self.mode, "--shards", str(SHARDS),
                "--instances", str(INSTANCES), "--data-dir", str(self.tmp / name),
                "--session-timeout-ms", str(self.session_timeout_ms), *self.extra, *extra]
        for peer in self.names:
            if peer != name:
                argv += ["--peer", f"{peer}={self.url(peer)}"]
        return argv

    def start(self, name: str, extra: tuple[str, ...] = ()) -> None:
        self.incarnation[name] += 1
        log = self.tmp / f"{name}.{self.incarnation[name]}.log"
        with log.open("wb") as out:
            self.procs[name] = subprocess.Popen(self.argv(name, extra), stdout=out,
                                                stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)

    def api(self, name: str) -> ApiClient:
        assert self.session is not None
        return ApiClient(self.session, self.url(name))

    async def wait_serving(self, name: str, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n"
                                     f"{self.output(name)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                status, _ = await self.api(name).call("GET", "/v1/health", timeout_s=2)
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name} did not serve within {limit} s:\n{self.output(name)}")

    def output(self, name: str) -> str:
        logs = sorted(self.tmp.glob(f"{name}.*.log"))
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)

    def signal(self, name: str, sig: signal.Signals) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, sig)
        if sig == signal.SIGSTOP:
            self.paused.add(name)
        elif sig == signal.SIGCONT:
            self.paused.discard(name)
        elif sig == signal.SIGKILL:
            proc.wait(10)

    def stop_all(self) -> None:
        """SIGCONT what is paused, SIGTERM, then SIGKILL what is left (by pid)."""
        for name, proc in self.procs.items():
            if proc.poll() is None:
                if name in self.paused:
                    os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    async def explain(self) -> str:
        """What a failed assertion shows: every replica's /v1/status and its log's tail
        (a rare failure leaves nothing else behind: the fixture's files are temporary)."""
        parts = []
        for name in self.names:
            try:
                st: Any = await self.api(name).status()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                st = repr(exc)
            parts.append(f"--- {name} status: {st}\n--- {name} log:\n{self.output(name)}")
        return "\n".join(parts)

    async def settled(self, names: tuple[str, ...], limit: float = 30.0) -> None:
        """Wait until the group is stable: one generation, every partition owned once, active."""
        deadline = time.monotonic() + limit
        seen: Any = None
        while time.monotonic() < deadline:
            sts = [await self.api(n).status() for n in names]
            gens = {st["group"]["generation"] for st in sts}
            owned = sorted(o["partition"] for st in sts for o in st["owned"] if o["active"])
            seen = (gens, owned)
            if len(gens) == 1 and None not in gens and owned == list(range(SHARDS)):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the group of {names} did not settle within {limit} s: {seen}")

    async def current(self, names: tuple[str, ...], limit: float = 30.0) -> None:
        """Wait until every replica is current with the log (`/v1/health` ``caught_up``: a
        poll round within the lease reached the log end it saw), so it serves sequential
        reads.

        Serving HTTP and holding a group generation do not mean that: a replica refuses
        sequential reads (``unavailable``) until its first poll has caught it up (see
        `ReplicaNode.start`). A replica that joined last, with no partition, was sent a
        read while its first round was still in flight (1 run in ~35 on a warm cluster).
        """
        deadline = time.monotonic() + limit
        behind: Any = None
        while time.monotonic() < deadline:
            behind = {}
            for n in names:
                health = await self.api(n).health()
                if not health["caught_up"]:
                    behind[n] = health
            if not behind:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"not current with the log within {limit} s: {behind}")

    async def owner_of(self, instance: str, among: tuple[str, ...] | None = None,
                       limit: float = 20.0) -> tuple[str, int]:
        """The replica whose claim on the instance's partition is active, and its epoch."""
        p = partition_for(instance, SHARDS)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for name in among or self.names:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    st = await self.api(name).status()
                    for o in st["owned"]:
                        if o["partition"] == p and o["active"]:
                            return name, int(o["epoch"])
            await asyncio.sleep(0.1)
        raise AssertionError(f"no replica among {among or self.names} owns {instance} "
                             f"(partition {p}) within {limit} s")


@pytest.fixture
def replicas_factory(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Any]:
    made: list[Replicas] = []

    def make(**kw: Any) -> Replicas:
        r = Replicas(tmp_path / f"set{len(made)}", kafka_bootstrap, **kw)
        r.tmp.mkdir(parents=True)
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.stop_all()


@contextlib.asynccontextmanager
async def running(r: Replicas, names: tuple[str, ...] | None = None) -> AsyncIterator[Replicas]:
    async with aiohttp.ClientSession() as session:
        r.session = session
        for name in names or r.names:
            r.start(name)
        await asyncio.gather(*(r.wait_serving(n) for n in names or r.names))
        if r.mode != "eventual":
            await r.settled(names or r.names)
            await r.current(names or r.names)
        try:
            yield r
        finally:
            r.session = None


def _append(inst: str, value: int) -> list[list[Any]]:
    return [["append", f"{inst}/transcript", value], ["r", f"{inst}/transcript", None]]


async def test_writes_are_acknowledged_and_readable_from_another_replica(
        replicas_factory: Any) -> None:
    r = replicas_factory()
    async with running(r):
        owners = {i: await r.owner_of(i) for i in ("i0", "i1", "i2", "i3")}
        assert len({o for o, _ in owners.values()}) >= 2, owners  # spread over members
        for k, inst in enumerate(("i0", "i1", "i2", "i3")):
            owner = owners[inst][0]
            other = next(n for n in r.names if n != owner)
            third = next(n for n in r.names if n not in (owner, other))
            # a write sent to a non-owner is forwarded to the owner and acknowledged
            res = await r.api(other).op("txn", _append(inst, 100 + k), inst, req_id=k)
            assert res["type"] == "ok", res
            assert res["req_id"] == k
            assert res["value"][1][2][-1] == 100 + k
            # the session token makes the third replica wait until it has the write
            read = await r.api(third).op("txn", [["r", f"{inst}/transcript", None]], inst,
                                         token=res["token"])
            assert read["type"] == "ok", f"{read}\nwrite: {res}\n{await r.explain()}"
            assert read["value"][0][2] == [100 + k], f"{read}\nwrite: {res}\n{await r.explain()}"
            # governance through the owner, read back elsewhere
            res = await r.api(owner).op("add-rule", k, inst)
            assert res["type"] == "ok", res
            rules = await r.api(third).op("read-rules", None, inst, token=res["token"])
            assert rules["value"] == [k], f"{rules}\nwrite: {res}\n{await r.explain()}"
        # the replica-to-replica endpoint, called as a peer would
        owner = owners["i1"][0]
        other = next(n for n in r.names if n != owner)
        status, res = await r.api(owner).call("POST", "/v1/forward", {
            "f": "txn", "instance": "i1", "value": _append("i1", 55), "from": other,
            "hops": 1, "timeout_ms": 2000})
        assert status == 200 and res["type"] == "ok", res
        # an instance nobody declared is claimed by its partition's owner on first use
        p = partition_for("zz", SHARDS)
        zz_owner = next(o for i, (o, _) in owners.items() if partition_for(i, SHARDS) == p)
        res = await r.api(zz_owner).op("txn", _append("zz", 1), "zz")
        assert res["type"] == "ok", res
        # after catching up, every replica holds the same instance
        fps = []
        for name in r.names:
            final = await r.api(name).op("final-read", {"replica": name}, "i0")
            assert final["type"] == "ok" and final["value"]["transcript"] == [100]
            status, fp = await r.api(name).call("GET", "/v1/instances/i0/fingerprint")
            assert status == 200
            fps.append(fp["fingerprint"])
        assert len(set(fps)) == 1, fps
        # malformed requests get a 400 naming the field; unknown paths a JSON 404
        status, err = await r.api("r0").call("POST", "/v1/ops", {"f": "txn", "value": 3},
                                             check_request=False)
        assert status == 400 and err["detail"].startswith("value"), err
        status, err = await r.api("r0").call("POST", "/v1/ops",
                                             {"f": "txn", "value": [], "timeout_ms": 0},
                                             check_request=False)
        assert status == 400, err
        st = await r.api("r0").status()
        assert st["mode"] == "sequential" and st["group"]["generation"] is not None


async def test_health_says_when_the_replica_is_current_and_a_waiting_read_is_refused_at_the_lease(
        replicas_factory: Any, cluster_manager: Any) -> None:
    """`/v1/health` tells serving from current (`caught_up`, `behind`), and a token read
    waiting on a replica cut off from the log (every broker SIGSTOPped) is refused
    `unavailable` once the lease runs out, not held to its deadline as `read-timeout`
    (which the client does not take for a down replica)."""
    lease_ms = 1000  # the read surely arrives within it, and waits; the brokers are paused
    # for about as long, well below their 3 s broker session (no broker is fenced)
    r = replicas_factory(names=("r0",), extra=("--lease-ms", str(lease_ms)))
    async with running(r):
        api = r.api("r0")
        res = await api.op("txn", _append("i0", 1), "i0")
        assert res["type"] == "ok", res
        await r.current(("r0",))
        health = await api.health()
        assert health["log_reachable"] and health["behind"] == 0, health
        assert health["caught_up_ms_ago"] < lease_ms, health
        assert set(health["behind_partitions"]) == {str(p) for p in range(SHARDS)}, health
        p = partition_for("i0", SHARDS)
        applied = (await api.status())["log"]["next_offsets"][p]
        token = {str(p): applied + 1}  # a write r0 has not applied (the log it loses may)
        brokers = [b.id for b in (await cluster_manager.status()).brokers]
        paused: list[int] = []
        try:
            for b in brokers:
                await cluster_manager.pause_broker(b)
                paused.append(b)
            t0 = time.monotonic()
            read = await api.op("txn", [["r", "i0/transcript", None]], "i0", token=token,
                                timeout_ms=8000)
            waited = time.monotonic() - t0
            cut_off = await api.health()
        finally:
            for b in paused:
                await cluster_manager.resume_broker(b)
        assert read["type"] == "fail" and read["error"] == "unavailable", (read, waited)
        # it waited (it arrived within the lease) and was refused at the lease's end
        assert 0.3 < waited < 4.0, (waited, await r.explain())
        assert not cut_off["caught_up"] and not cut_off["log_reachable"], cut_off
        assert cut_off["caught_up_ms_ago"] > lease_ms, cut_off
        # in touch again: caught up once a poll round reaches the end it sees
        await r.current(("r0",))
        back = await api.health()
        assert back["caught_up"] and back["behind"] == 0, back


async def test_kill_9_of_the_owner_moves_ownership_and_loses_no_acknowledged_write(
        replicas_factory: Any) -> None:
    r = replicas_factory(session_timeout_ms=1000)
    async with running(r):
        owner, epoch = await r.owner_of("i0")
        survivors = tuple(n for n in r.names if n != owner)
        acked: list[int] = []
        for v in range(1, 21):
            res = await r.api(survivors[v % 2]).op("txn", _append("i0", v), "i0")
            assert res["type"] == "ok", res
            acked.append(v)
        r.signal(owner, signal.SIGKILL)
        killed = time.monotonic()
        first_ok = None
        v = 100
        while time.monotonic() - killed < 30:
            v += 1
            res = await r.api(survivors[0]).op("txn", _append("i0", v), "i0",
                                               timeout_ms=1000)
            if res["type"] == "ok":
                acked.append(v)
                first_ok = time.monotonic() - killed
                break
            # before the takeover: refused (owner unreachable) or unknown, never ok
            assert res["type"] in ("fail", "info"), res
            if res["type"] == "info":
                acked.append(-v)  # may or may not be in the log
            await asyncio.sleep(0.05)
        assert first_ok is not None, "no write was acknowledged after the owner died"
        new_owner, new_epoch = await r.owner_of("i0", survivors)
        assert new_epoch > epoch
        # every acknowledged write is there, once, in acknowledgement order, on both survivors
        views = []
        for name in survivors:
            final = await r.api(name).op("final-read", {"replica": name}, "i0")
            assert final["type"] == "ok", final
            views.append(final["value"]["transcript"])
        assert views[0] == views[1]
        sure = [a for a in acked if a > 0]
        assert [x for x in views[0] if x in sure] == sure
        st = await r.api(new_owner).status()
        p = partition_for("i0", SHARDS)
        claim = [c for c in st["claims"] if c["partition"] == p and c["epoch"] == new_epoch]
        assert claim and claim[0]["claim_ms"] is not None and claim[0]["replayed"] is not None
        # the takeover waited for the group to notice (session timeout), not much longer
        assert first_ok < r.session_timeout_ms / 1000 + 10, first_ok


async def _zombie_writes(fencing: bool, replicas_factory: Any) -> dict[str, Any]:
    """Pause the owner past the session timeout, let another take over, resume it."""
    extra = () if fencing else ("--no-fencing",)
    r = replicas_factory(session_timeout_ms=1000, extra=extra)
    async with running(r):
        zombie, epoch = await r.owner_of("i0")
        others = tuple(n for n in r.names if n != zombie)
        res = await r.api(others[0]).op("txn", _append("i0", 1), "i0")
        assert res["type"] == "ok", res
        r.signal(zombie, signal.SIGSTOP)
        new_owner, new_epoch = await r.owner_of("i0", others, limit=30)
        assert new_epoch > epoch
        # (through the new owner: a replica that has not applied its claim yet would
        # still forward to the paused one, and that outcome is unknown until it wakes)
        res = await r.api(new_owner).op("txn", _append("i0", 2), "i0")
        assert res["type"] == "ok", res
        # clients still talking to the zombie: their requests wait in its sockets
        sends = [asyncio.create_task(r.api(zombie).op("txn", _append("i0", 1000 + k), "i0",
                                                      timeout_ms=5000))
                 for k in range(8)]
        await asyncio.sleep(0.5)
        r.signal(zombie, signal.SIGCONT)
        replies = await asyncio.gather(*sends)
        finals = {}
        for name in r.names:
            final = await r.api(name).op("final-read", {"replica": name}, "i0",
                                         timeout_ms=5000)
            assert final["type"] == "ok", final
            finals[name] = final["value"]["transcript"]
        stats = {name: (await r.api(name).status())["stats"] for name in r.names}
        return {"replies": replies, "finals": finals, "stats": stats, "zombie": zombie,
                "new_owner": new_owner}


async def test_a_paused_owner_is_fenced_by_every_reducer_after_the_takeover(
        replicas_factory: Any) -> None:
    out = await _zombie_writes(True, replicas_factory)
    replies = out["replies"]
    fenced = [x for x in replies if x["type"] == "fail" and x["error"] == "fenced"]
    assert fenced, replies
    # no replica holds a fenced write, and all agree
    views = list(out["finals"].values())
    assert all(v == views[0] for v in views), out["finals"]
    ok_values = {x["value"][0][2] for x in replies if x["type"] == "ok"}
    for v in range(1000, 1008):
        assert (v in views[0]) == (v in ok_values), (v, replies, views[0])
    assert 1 in views[0] and 2 in views[0]
    for name, st in out["stats"].items():
        assert st["core_fenced"] >= len(fenced), (name, st)
        assert st["core_stale_epoch_applied"] == 0, (name, st)


async def test_without_fencing_the_paused_owner_writes_get_in(replicas_factory: Any) -> None:
    out = await _zombie_writes(False, replicas_factory)
    replies = out["replies"]
    stale = [x for x in replies if x["type"] == "ok"]
    assert stale, replies
    assert not [x for x in replies if x["error"] == "fenced"], replies
    for name, st in out["stats"].items():
        assert st["core_stale_epoch_applied"] >= 1, (name, st)
        assert st["core_fenced"] == 0, (name, st)


async def test_eventual_kill_9_then_restart_ships_the_acknowledged_outbox(
        replicas_factory: Any) -> None:
    # a long outbox interval: after the first shipment, writes stay local until the kill
    r = replicas_factory(mode="eventual", names=("r0", "r1"),
                         extra=("--outbox-ms", "600000"))
    async with running(r):
        first = await r.api("r0").op("txn", _append("i1", 1), "i1")
        assert first["type"] == "ok", first
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = await r.api("r1").op("final-read", {"replica": "r1"}, "i1")
            if seen["value"]["transcript"] == [1]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the first eventual write never reached r1")
        acked = [1]
        for v in range(2, 12):
            res = await r.api("r0").op("txn", _append("i1", v), "i1")
            assert res["type"] == "ok" and res["value"][1][2][-1] == v, res
            acked.append(v)
        st = await r.api("r0").status()
        assert st["outbox"]["pending"] == 10 and st["outbox"]["durable"] == 10, st["outbox"]
        await asyncio.sleep(0.5)
        seen = await r.api("r1").op("final-read", {"replica": "r1"}, "i1")
        assert seen["value"]["transcript"] == [1], "the outbox shipped before the kill"
        r.signal("r0", signal.SIGKILL)
        r.start("r0", ("--outbox-ms", "50"))
        await r.wait_serving("r0")
        st = await r.api("r0").status()
        assert st["outbox"]["recovered"] == 10, st["outbox"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = await r.api("r1").op("final-read", {"replica": "r1"}, "i1")
            if sorted(seen["value"]["transcript"]) == acked:
                break
            await asyncio.sleep(0.1)
        assert sorted(seen["value"]["transcript"]) == acked, seen
        # and the restarted replica converges to the same instance (it rebuilds from the log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            back = await r.api("r0").op("final-read", {"replica": "r0"}, "i1")
            if back["value"]["fingerprint"] == seen["value"]["fingerprint"]:
                break
            await asyncio.sleep(0.1)
        assert back["value"]["transcript"] == seen["value"]["transcript"], back


async def test_rebalance_moves_the_partitions_of_the_member_that_leaves_and_rejoins(
        replicas_factory: Any) -> None:
    r = replicas_factory(mode="linearizable")
    async with running(r):
        owner, epoch = await r.owner_of("i0")
        others = tuple(n for n in r.names if n != owner)
        # a two-write txn: both events in one append (a Kafka transaction)
        txn = [["append", "i0/transcript", 1], ["w", "i0/mem/subtask/k0", 7],
               ["r", "i0/mem/subtask/k0", None]]
        res = await r.api(others[0]).op("txn", txn, "i0")
        assert res["type"] == "ok" and res["value"][2][2] == 7, res
        status, left = await r.api(owner).call("POST", "/v1/admin/rebalance")
        assert status == 200 and partition_for("i0", SHARDS) in left["left"], left
        # an idle member that stayed claims a newer epoch; the one that left rejoins
        _, new_epoch = await r.owner_of("i0", others)
        assert new_epoch > epoch
        await r.settled(r.names)
        res = await r.api(owner).op("txn", _append("i0", 2), "i0", timeout_ms=3000)
        assert res["type"] == "ok", res
        # linearizable reads see every acknowledged write, from any replica, without a token
        for name in r.names:
            read = await r.api(name).op("txn", [["r", "i0/transcript", None],
                                                ["r", "i0/mem/subtask/k0", None]], "i0")
            assert read["type"] == "ok" and read["value"] == [
                ["r", "i0/transcript", [1, 2]], ["r", "i0/mem/subtask/k0", 7]], read
        st = await r.api(owner).status()
        assert st["group"]["rebalances"] >= 2 and any(c["revoked"] for c in st["claims"])


def test_a_session_timeout_the_brokers_refuse_stops_the_process_with_one_line(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "selfhood", "replica", "serve", "--node", "r0",
         "--listen", f"127.0.0.1:{free_port()}", "--bootstrap", kafka_bootstrap,
         "--topic", f"test-replica-{uuid.uuid4().hex[:10]}", "--session-timeout-ms", "100",
         "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: the brokers refuse session timeout 100 ms"), proc.stderr
    assert "Traceback" not in proc.stderr


async def test_eventual_replicas_under_concurrent_writes_converge(replicas_factory: Any) -> None:
    # the outbox ships every 50 ms; a real log is slower, so shipments must not pile up
    # (queued ones re-sent the whole outbox and flooded the log: no convergence)
    r = replicas_factory(mode="eventual")
    async with running(r):
        async def writer(k: int) -> None:
            for n in range(40):
                inst = f"i{(k + n) % INSTANCES}"
                v = 1000 * k + n
                res = await r.api(r.names[(k + n) % 3]).op(
                    "txn", [["append", f"{inst}/transcript", v],
                            ["w", f"{inst}/mem/subtask/k{n % 3}", v]], inst)
                assert res["type"] == "ok", res

        await asyncio.gather(*(writer(k) for k in range(6)))
        deadline = time.monotonic() + 20
        views: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            views = {}
            for inst in ("i0", "i1", "i2", "i3"):
                for name in r.names:
                    final = await r.api(name).op("final-read", {"replica": name}, inst)
                    views.setdefault(inst, set()).add(final["value"]["fingerprint"])
            if all(len(fps) == 1 for fps in views.values()):
                break
            await asyncio.sleep(0.2)
        assert all(len(fps) == 1 for fps in views.values()), views
        total = 0
        for inst in ("i0", "i1", "i2", "i3"):
            final = await r.api("r0").op("final-read", {"replica": "r0"}, inst)
            total += len(final["value"]["transcript"])
        assert total == 6 * 40
        st = await r.api("r0").status()
        assert sum(st["log"]["ends"]) < 4 * 6 * 40 * 2, st["log"]  # no flood of duplicates
