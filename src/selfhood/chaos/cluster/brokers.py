"""Kafka brokers (KRaft): jars, storage, processes, health, and the chaos levers on them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from selfhood.chaos.cluster.common import Progress, _run, data_file, require_tool
from selfhood.chaos.cluster.config import ClusterConfig, StateDir, replicated_settings
from selfhood.chaos.cluster.processes import pid_alive, spawn_daemon
from selfhood.errors import ClusterError, ClusterUnhealthy

#: JVM heap per broker: small, three brokers must fit beside the tests
BROKER_HEAP = ("-Xms256m", "-Xmx512m")
#: topic the health check writes to with acks=all
HEALTH_TOPIC = "selfhood-health"


def kafka_libs_dir() -> Path:
    """Cache dir for the broker jars, keyed by the pom so a pom change refetches."""
    pom = data_file("pom.xml")
    try:
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise ClusterError(f"cannot read {pom}: {exc.strerror}") from exc
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "selfhood" / f"kafka-libs-{digest}"


def kafka_version() -> str:
    """The Kafka version pom.xml pins (compose/docker-compose.yml must use the same)."""
    import xml.etree.ElementTree as ET

    pom = data_file("pom.xml")
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise ClusterError(f"{pom} does not set <kafka.version>")
    return node.text.strip()


async def ensure_kafka_libs(progress: Progress | None = None) -> Path:
    """Copy the broker jars into the cache once (``mvn dependency:copy-dependencies``).

    Maven reuses ~/.m2, so a second checkout on the same machine copies from
    disk instead of downloading. The copy goes to a temp dir renamed into
    place, so an interrupted fetch never leaves a half-filled cache.
    """
    target = kafka_libs_dir()
    if (target / ".complete").exists():
        return target
    mvn = require_tool("mvn", "install Maven (`apt-get install maven`) to fetch the Kafka jars")
    if progress:
        progress(f"fetching Kafka jars with Maven into {target}")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        await _run([mvn, "-q", "-B", "-f", str(data_file("pom.xml")),
                    "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
                    "-DincludeScope=runtime"], what="fetch the Kafka jars with Maven",
                   limit=900.0)
        (tmp / ".complete").write_text("ok\n")
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


async def kafka_classpath(progress: Progress | None = None) -> str:
    """Java classpath with the Kafka broker, tools and log4j2 jars (fetched if needed)."""
    return str(await ensure_kafka_libs(progress) / "*")


def kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, url-safe base64 without padding.

    Like Kafka's own `Uuid.randomUuid`, never one starting with "-": command
    line parsers would take it for an option.
    """
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


@dataclass(frozen=True)
class BrokerStatus:
    """One Kafka node: its process and whether it serves metadata listing itself."""

    id: int
    address: str
    pid: int | None
    alive: bool
    healthy: bool
    paused: bool
    log: str
    namespace: str | None = None


# --- kafka probes (aiokafka imported lazily: `selfhood --help` stays fast) ------


async def broker_ids_in_metadata(bootstrap: str, limit: float = 5.0) -> set[int]:
    """Broker ids in the metadata that the FIRST address in `bootstrap` itself serves.

    Asks that one node directly (not a random one, as the admin client
    would), so a dead peer cannot make a live node look unhealthy. Empty on
    any failure.
    """
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    conn = None
    try:
        async with asyncio.timeout(limit):
            conn = await create_conn(host, int(port), request_timeout_ms=int(limit * 1000))
            response = await conn.send(MetadataRequest([]))
        meta = ClusterMetadata()
        meta.update_metadata(response)
        return {int(b.nodeId) for b in meta.brokers()}
    except asyncio.CancelledError:
        raise
    except Exception:  # refused, timed out, or any driver error: "not healthy now"
        return set()
    finally:
        if conn is not None:
            conn.close()


async def cluster_broker_ids(bootstrap: str, limit: float = 5.0) -> set[int]:
    """Union of the broker ids every bootstrap address reports (first answer wins)."""
    for address in bootstrap.split(","):
        ids = await broker_ids_in_metadata(address, limit)
        if ids:
            return ids
    return set()


async def acks_all_write(bootstrap: str, replication: int, min_isr: int,
                         limit: float = 15.0) -> str | None:
    """Create the health topic if needed and write one record with acks=all.

    Returns None on success, else a short reason (for progress lines).
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=int(limit * 1000))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True,
                                request_timeout_ms=int(limit * 1000))
    try:
        async with asyncio.timeout(limit):
            await admin.start()
            topics = await admin.list_topics()
            if HEALTH_TOPIC not in topics:
                with contextlib.suppress(TopicAlreadyExistsError):
                    resp = await admin.create_topics([NewTopic(
                        HEALTH_TOPIC, num_partitions=1, replication_factor=replication,
                        topic_configs={"min.insync.replicas": str(min_isr)})])
                    for err in getattr(resp, "topic_errors", []):
                        if err[1] not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
                            return f"create topic failed with error code {err[1]}"
            await producer.start()
            await producer.send_and_wait(HEALTH_TOPIC, b"ok", key=b"health")
        return None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # reason for the progress line; the caller retries
        return f"{type(exc).__name__}: {exc}"[:200]
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        with contextlib.suppress(Exception):
            await admin.close()


class Brokers(StateDir):
    """The manager's broker part: pid files, storage, start, health, kill/pause/restart."""

    def broker_dir(self, node: int) -> Path:
        return self.state_dir / f"broker-{node}"

    def broker_log(self, node: int) -> Path:
        return self.logs_dir / f"broker-{node}.log"

    def broker_pid(self, node: int) -> int | None:
        return self._read_pid(self.broker_dir(node) / "pid")

    def broker_alive(self, node: int) -> bool:
        pid = self.broker_pid(node)
        running = self._child_running(pid)
        return pid_alive(pid, self.marker) if running is None else running

    def _write_properties(self, cfg: ClusterConfig, node: int) -> Path:
        d = self.broker_dir(node)
        (d / "data").mkdir(parents=True, exist_ok=True)
        props = cfg.server_properties(node, d / "data")
        path = d / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java_argv(self, cfg: ClusterConfig, node: int, java: str, classpath: str,
                   main: list[str]) -> list[str]:
        argv = [java, *BROKER_HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={data_file('log4j2.xml')}",
                f"-Dselfhood.state={self.state_dir}", "-cp", classpath, *main]
        if cfg.netns:
            argv = ["ip", "netns", "exec", cfg.namespace(node), *argv]
        return argv

    async def _format_broker(self, cfg: ClusterConfig, node: int, java: str,
                             classpath: str) -> None:
        props = self._write_properties(cfg, node)
        if (self.broker_dir(node) / "data" / "meta.properties").exists():
            return
        await _run([java, "-Xmx256m", f"-Dlog4j2.configurationFile={data_file('log4j2.xml')}",
                    "-cp", classpath, "kafka.tools.StorageTool", "format",
                    f"--cluster-id={cfg.cluster_id}", f"--config={props}",
                    "--ignore-formatted"],
                   what=f"format storage of broker {node}", log=self.broker_log(node))

    def _spawn_broker(self, cfg: ClusterConfig, node: int, java: str, classpath: str) -> int:
        props = self._write_properties(cfg, node)
        argv = self._java_argv(cfg, node, java, classpath, ["kafka.Kafka", str(props)])
        proc = spawn_daemon(argv, self.broker_log(node))
        self._children[proc.pid] = proc
        (self.broker_dir(node) / "pid").write_text(f"{proc.pid}\n")
        return proc.pid

    async def _wait_healthy(self, cfg: ClusterConfig, limit: float, say: Progress,
                            nodes: Iterable[int] | None = None) -> None:
        """Every broker in metadata, then one acks=all write to a replicated topic."""
        want = set(nodes if nodes is not None else cfg.node_ids)
        settings = replicated_settings(cfg.brokers)
        rf, min_isr = int(settings["default.replication.factor"]), int(
            settings["min.insync.replicas"])
        start = time.monotonic()
        last = ""
        while True:
            elapsed = time.monotonic() - start
            dead = [n for n in want if not self.broker_alive(n)]
            if dead:
                raise ClusterUnhealthy(
                    f"broker {dead[0]} exited during start; see {self.broker_log(dead[0])}")
            seen = await cluster_broker_ids(cfg.bootstrap, limit=5.0)
            # each node must also answer itself: right after a kill -9 the
            # others still list the dead node until its session times out
            own = await asyncio.gather(*(broker_ids_in_metadata(cfg.broker_address(n), 5.0)
                                         for n in sorted(want)))
            serving = {n for n, ids in zip(sorted(want), own, strict=True) if n in ids}
            if want <= seen and serving == want:
                reason = await acks_all_write(cfg.bootstrap, rf, min_isr)
                if reason is None:
                    say(f"all {len(seen)} broker(s) in metadata; acks=all write ok "
                        f"({elapsed:.0f}s)")
                    return
                msg = f"acks=all write not yet accepted: {reason}"
            else:
                msg = (f"brokers in metadata: {len(seen & want)}/{len(want)}, "
                       f"serving: {len(serving)}/{len(want)}")
            if msg != last or int(elapsed) % 10 == 0:
                say(f"waiting ({elapsed:.0f}s): {msg}")
                last = msg
            if elapsed > limit:
                raise ClusterUnhealthy(
                    f"cluster not healthy after {limit:.0f}s ({msg}); logs in {self.logs_dir}")
            await asyncio.sleep(1.0)

    async def kill_broker(self, node: int) -> None:
        """SIGKILL one broker (no clean shutdown) and wait until it is gone."""
        self._config()
        pid = self.broker_pid(node)
        if pid is None or not pid_alive(pid, self.marker):
            raise ClusterError(f"broker {node} is not running")
        os.kill(pid, signal.SIGKILL)
        # wait by `broker_alive`'s own test: a dying child of ours has lost its command line
        # (so `pid_alive` calls it dead) some time before it is reaped
        deadline = time.monotonic() + 10.0
        while self.broker_alive(node):
            if time.monotonic() > deadline:
                raise ClusterError(f"broker {node} (pid {pid}) survived SIGKILL")
            await asyncio.sleep(0.05)

    async def start_broker(self, node: int, limit: float = 120.0,
                           progress: Progress | None = None) -> None:
        """Restart one stopped broker and wait until it is back in the metadata."""
        cfg = self._config()
        if node not in cfg.node_ids:
            raise ClusterError(f"no broker {node}; this cluster has {cfg.node_ids}")
        if not self.broker_alive(node):
            java = require_tool("java", "install a JDK 17+")
            self._spawn_broker(cfg, node, java, await kafka_classpath(progress))
        await self._wait_healthy(cfg, limit, progress or (lambda _m: None))
        deadline = time.monotonic() + limit
        while node not in await broker_ids_in_metadata(cfg.broker_address(node)):
            if time.monotonic() > deadline:
                raise ClusterUnhealthy(f"broker {node} did not rejoin within {limit:.0f}s")
            await asyncio.sleep(0.5)

    async def pause_broker(self, node: int) -> None:
        """SIGSTOP one broker: a zombie-in-waiting that keeps its sockets open."""
        pid = self.broker_pid(node)
        if pid is None or not pid_alive(pid, self.marker):
            raise ClusterError(f"broker {node} is not running")
        os.kill(pid, signal.SIGSTOP)

    async def resume_broker(self, node: int) -> None:
        """SIGCONT a paused broker."""
        pid = self.broker_pid(node)
        if pid is None or not pid_alive(pid, self.marker):
            raise ClusterError(f"broker {node} is not running")
        os.kill(pid, signal.SIGCONT)
