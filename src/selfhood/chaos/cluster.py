"""The real cluster: Apache Kafka (KRaft) brokers and a PostgreSQL server.

`ClusterManager` starts, watches and stops the processes behind
`selfhood cluster up|down|status`, and gives chaos code the levers it pulls
(`kill_broker`, `pause_broker`, `partition`). Everything it starts is
recorded under a state directory (pid files, configs, logs), so `down` stops
exactly what `up` started, from any later process, and nothing else.

Kafka comes from Maven Central through ``compose/pom.xml``; the jars are
copied once into a cache directory keyed by the pom's hash. PostgreSQL is
Debian's server binaries running a project-local data directory as an
unprivileged user.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfhood.errors import ClusterError, ClusterUnhealthy, MissingTool, PortInUse

Progress = Callable[[str], None]

#: first broker client port; controller and PostgreSQL ports are offsets from it
DEFAULT_BASE_PORT = 19092
CONTROLLER_PORT_OFFSET = 10
POSTGRES_PORT_OFFSET = 20
#: JVM heap per broker: small, three brokers must fit beside the tests
BROKER_HEAP = ("-Xms256m", "-Xmx512m")
PG_USER = "selfhood"
PG_DATABASE = "selfhood"
#: topic the health check writes to with acks=all
HEALTH_TOPIC = "selfhood-health"
#: netns mode puts broker i at <prefix>.<third>.<10+i>/24, the bridge at .1
NETNS_PREFIX = "10.213"
DEFAULT_UP_TIMEOUT_S = 180.0
STOP_GRACE_S = 20.0
DOWN_GRACE_S = 8.0
ENV_STATE_DIR = "SELFHOOD_STATE_DIR"
ENV_BASE_PORT = "SELFHOOD_BASE_PORT"


def replicated_settings(brokers: int) -> dict[str, str]:
    """Broker settings that decide durability; the compose file must match them.

    With 3 nodes every internal topic is replicated 3 times, a write needs 2
    in-sync replicas, and an out-of-sync replica may never become leader, so
    an acknowledged `acks=all` write survives the loss of any one broker.
    """
    rf = min(3, brokers)
    min_isr = 2 if brokers >= 3 else 1
    return {
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(min_isr),
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(rf),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "num.partitions": "3",
        "auto.create.topics.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        # replicas fail over within their (spec) session timeout, far below Kafka's 6 s floor
        "group.min.session.timeout.ms": "500",
    }


# --- locations ------------------------------------------------------------------


def repo_root() -> Path:
    """The checkout this package runs from (src layout, editable install)."""
    return Path(__file__).resolve().parents[3]


def compose_dir() -> Path:
    """Where pom.xml, log4j2.xml and docker-compose.yml live."""
    return Path(os.environ.get("SELFHOOD_COMPOSE_DIR", repo_root() / "compose"))


def default_state_dir() -> Path:
    """``$SELFHOOD_STATE_DIR`` or ``./.selfhood``."""
    return Path(os.environ.get(ENV_STATE_DIR, ".selfhood")).resolve()


def default_base_port() -> int:
    """``$SELFHOOD_BASE_PORT`` or `DEFAULT_BASE_PORT`."""
    raw = os.environ.get(ENV_BASE_PORT)
    if raw is None:
        return DEFAULT_BASE_PORT
    try:
        return int(raw)
    except ValueError:
        raise ClusterError(f"{ENV_BASE_PORT}={raw!r} is not a port number") from None


def kafka_libs_dir() -> Path:
    """Cache dir for the broker jars, keyed by the pom so a pom change refetches."""
    pom = compose_dir() / "pom.xml"
    try:
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise ClusterError(f"cannot read {pom}: {exc.strerror}") from exc
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "selfhood" / f"kafka-libs-{digest}"


def kafka_version() -> str:
    """The Kafka version compose/pom.xml pins (the compose file must use the same)."""
    import xml.etree.ElementTree as ET

    pom = compose_dir() / "pom.xml"
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise ClusterError(f"{pom} does not set <kafka.version>")
    return node.text.strip()


def require_tool(name: str, hint: str) -> str:
    """Absolute path of a program on PATH, or `MissingTool` saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise MissingTool(f"`{name}` is not on PATH; {hint}")
    return found


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server binaries (newest major), or `MissingTool`."""
    override = os.environ.get("SELFHOOD_PG_BINDIR")
    candidates = [override] if override else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for cand in reversed(candidates):
        if (Path(cand) / "postgres").exists() and (Path(cand) / "initdb").exists():
            return Path(cand)
    raise MissingTool(
        "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/postgres); "
        "install them with `apt-get install postgresql` or run scripts/install-system.sh"
    )


async def _run(argv: list[str], *, what: str, log: Path | None = None,
               limit: float = 300.0, cwd: Path | None = None) -> str:
    """Run a short helper command; a failure becomes a `ClusterError` naming it."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=cwd, start_new_session=True)
    except FileNotFoundError as exc:
        raise MissingTool(f"`{argv[0]}` is not installed (needed to {what})") from exc
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(argv)}\n{text}\n")
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-8:])
        raise ClusterError(f"failed to {what} (exit {proc.returncode}): {tail}")
    return text


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
        await _run([mvn, "-q", "-B", "-f", str(compose_dir() / "pom.xml"),
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


# --- process helpers ------------------------------------------------------------


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int | None, marker: str) -> bool:
    """True if `pid` runs and its command line contains `marker` (no pid reuse mix-ups).

    A zombie child of this process counts as dead and is reaped.
    """
    if pid is None or pid <= 0:
        return False
    state = _proc_state(pid)
    if state is None:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return marker.encode() in cmdline


async def _wait_dead(pid: int, marker: str, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            return True
        await asyncio.sleep(0.1)
    return not pid_alive(pid, marker)


async def stop_pid(pid: int, marker: str, *, sig: signal.Signals = signal.SIGTERM,
                   grace: float = STOP_GRACE_S) -> None:
    """Send `sig`, then SIGKILL after `grace` seconds; only if `pid` is still ours."""
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        os.kill(pid, sig)
    if await _wait_dead(pid, marker, grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    await _wait_dead(pid, marker, 10.0)


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (bind test, like the server will do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def spawn_daemon(argv: list[str], log: Path, cwd: Path | None = None
                 ) -> subprocess.Popen[bytes]:
    """Start a long-lived server with output appended to `log`.

    Plain Popen, not asyncio's: the process must outlive the event loop (and
    the `selfhood cluster up` process). Its own session keeps a terminal's
    Ctrl-C from reaching it directly; `up` stops it explicitly instead.
    """
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)


def _netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, url-safe base64 without padding.

    Like Kafka's own `Uuid.randomUuid`, never one starting with "-": command
    line parsers would take it for an option.
    """
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


# --- configuration --------------------------------------------------------------


@dataclass(frozen=True)
class ClusterConfig:
    """The shape of a cluster, saved as ``cluster.json`` so every later command agrees."""

    brokers: int
    base_port: int
    netns: bool
    cluster_id: str
    tag: str
    subnet: str | None = None  # "10.213.N" in netns mode

    def broker_host(self, node: int) -> str:
        return f"{self.subnet}.{10 + node}" if self.netns and self.subnet else "127.0.0.1"

    def broker_port(self, node: int) -> int:
        return self.base_port + (0 if self.netns else node - 1)

    def controller_port(self, node: int) -> int:
        return self.base_port + CONTROLLER_PORT_OFFSET + (0 if self.netns else node - 1)

    @property
    def postgres_port(self) -> int:
        return self.base_port + POSTGRES_PORT_OFFSET

    def broker_address(self, node: int) -> str:
        return f"{self.broker_host(node)}:{self.broker_port(node)}"

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.brokers + 1))

    @property
    def bootstrap(self) -> str:
        return ",".join(self.broker_address(n) for n in self.node_ids)

    @property
    def database_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.postgres_port}/{PG_DATABASE}"

    def namespace(self, node: int) -> str:
        return f"sh{self.tag}b{node}"

    @property
    def bridge(self) -> str:
        return f"shbr{self.tag}"

    def veth_host(self, node: int) -> str:
        return f"shv{self.tag}h{node}"

    def veth_ns(self, node: int) -> str:
        return f"shv{self.tag}n{node}"

    def server_properties(self, node: int, data_dir: Path) -> dict[str, str]:
        host = self.broker_host(node)
        voters = ",".join(f"{n}@{self.broker_host(n)}:{self.controller_port(n)}"
                          for n in self.node_ids)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": voters,
            "listeners": (f"PLAINTEXT://{host}:{self.broker_port(node)},"
                          f"CONTROLLER://{host}:{self.controller_port(node)}"),
            "advertised.listeners": f"PLAINTEXT://{host}:{self.broker_port(node)}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data_dir),
        }
        props.update(replicated_settings(self.brokers))
        return props


# --- status ------------------------------------------------------------------------


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


@dataclass(frozen=True)
class PostgresStatus:
    """The PostgreSQL server: process, and whether `SELECT 1` works on the database."""

    address: str
    pid: int | None
    alive: bool
    healthy: bool
    database_url: str
    data_dir: str
    log: str


@dataclass(frozen=True)
class ClusterStatus:
    """What `selfhood cluster status` reports; `to_json()` is the ``--json`` object."""

    state_dir: str
    configured: bool
    netns: bool = False
    bootstrap: str = ""
    database_url: str = ""
    brokers: list[BrokerStatus] = field(default_factory=list)
    postgres: PostgresStatus | None = None

    @property
    def healthy(self) -> bool:
        return (self.configured and bool(self.brokers)
                and all(b.healthy for b in self.brokers)
                and self.postgres is not None and self.postgres.healthy)

    def to_json(self) -> dict[str, Any]:
        return {
            "state_dir": self.state_dir,
            "running": self.configured,
            "healthy": self.healthy,
            "netns": self.netns,
            "bootstrap": self.bootstrap,
            "database_url": self.database_url,
            "brokers": [asdict(b) for b in self.brokers],
            "postgres": asdict(self.postgres) if self.postgres else None,
        }


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


async def postgres_ready(url_host: str, port: int, database: str,
                         limit: float = 5.0) -> bool:
    """True if `SELECT 1` works on `database` as the project user."""
    import asyncpg

    try:
        async with asyncio.timeout(limit):
            conn = await asyncpg.connect(host=url_host, port=port, user=PG_USER,
                                         database=database)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close()
        return True
    except asyncio.CancelledError:
        raise
    except Exception:
        return False


# --- the manager -----------------------------------------------------------------------


class ClusterManager:
    """Start, inspect and perturb the cluster recorded in one state directory.

    Constructing it does no IO. Every method that touches processes or the
    network is async. Methods are safe to call from a process other than the
    one that ran `up`: all knowledge lives in the state directory.
    """

    def __init__(self, state_dir: Path | str | None = None) -> None:
        self.state_dir = Path(state_dir).resolve() if state_dir else default_state_dir()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # paths ---------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def broker_dir(self, node: int) -> Path:
        return self.state_dir / f"broker-{node}"

    def broker_log(self, node: int) -> Path:
        return self.logs_dir / f"broker-{node}.log"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def pg_log(self) -> Path:
        return self.logs_dir / "postgres.log"

    @property
    def netns_record(self) -> Path:
        return self.state_dir / "netns.json"

    @property
    def marker(self) -> str:
        """Substring of every command line we start: proves a pid is ours.

        The trailing separator keeps ``/tmp/sh`` from matching ``/tmp/sh-2``.
        """
        return f"{self.state_dir}{os.sep}"

    def load_config(self) -> ClusterConfig | None:
        """The saved cluster shape, or None when nothing is set up here."""
        try:
            raw = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ClusterError(f"{self.config_path} is unreadable: {exc}") from exc
        return ClusterConfig(**raw)

    def _config(self) -> ClusterConfig:
        cfg = self.load_config()
        if cfg is None:
            raise ClusterError(f"no cluster in {self.state_dir}; run `selfhood cluster up` first")
        return cfg

    def _read_pid(self, path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def broker_pid(self, node: int) -> int | None:
        return self._read_pid(self.broker_dir(node) / "pid")

    def postgres_pid(self) -> int | None:
        return self._read_pid(self.pg_dir / "pid")

    def broker_alive(self, node: int) -> bool:
        return pid_alive(self.broker_pid(node), self.marker)

    def postgres_alive(self) -> bool:
        return pid_alive(self.postgres_pid(), self.marker)

    # up -------------------------------------------------------------------------------

    def _check_tools(self, netns: bool) -> tuple[str, Path]:
        java = require_tool("java", "install a JDK 17+ (`apt-get install openjdk-17-jre-headless`)")
        pg = postgres_bindir()
        if netns:
            require_tool("ip", "install iproute2 (`apt-get install iproute2`) for --netns")
            require_tool("iptables", "install iptables (`apt-get install iptables`) for --netns")
            if os.geteuid() != 0:
                raise ClusterError("--netns needs root (network namespaces and veth pairs)")
        if os.geteuid() == 0:
            require_tool("setpriv", "install util-linux; PostgreSQL must not run as root")
        return java, pg

    def _check_ports(self, cfg: ClusterConfig) -> None:
        wanted: list[tuple[int, str]] = []
        if not self.postgres_alive():
            wanted.append((cfg.postgres_port, "PostgreSQL"))
        if not cfg.netns:
            for n in cfg.node_ids:
                if not self.broker_alive(n):
                    wanted.append((cfg.broker_port(n), f"broker {n}"))
                    wanted.append((cfg.controller_port(n), f"controller {n}"))
        for port, what in wanted:
            if not port_free("127.0.0.1", port):
                raise PortInUse(
                    f"port {port} on 127.0.0.1 (for {what}) is already in use; stop whatever "
                    f"holds it or choose other ports with --base-port / ${ENV_BASE_PORT}")

    async def up(self, brokers: int = 3, *, netns: bool = False,
                 base_port: int | None = None, limit: float = DEFAULT_UP_TIMEOUT_S,
                 progress: Progress | None = None) -> ClusterStatus:
        """Start whatever is not running yet and wait until the cluster is healthy.

        Idempotent: with a healthy cluster already up this only checks it. If
        it fails or is interrupted (Ctrl-C), every process and namespace this
        call started is stopped again before the error propagates.
        """
        say = progress or (lambda _msg: None)
        if brokers < 1:
            raise ClusterError(f"--brokers must be at least 1, got {brokers}")
        port = default_base_port() if base_port is None else base_port
        existing = self.load_config()
        if existing is not None:
            if (existing.brokers, existing.netns) != (brokers, netns) or (
                    base_port is not None and existing.base_port != base_port):
                raise ClusterError(
                    f"{self.state_dir} already holds a cluster with {existing.brokers} "
                    f"broker(s), netns={existing.netns}, base port {existing.base_port}; "
                    "run `selfhood cluster down` first or use another --state-dir")
            cfg = existing
        else:
            tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:4]
            cfg = ClusterConfig(brokers=brokers, base_port=port, netns=netns,
                                cluster_id=kafka_uuid(), tag=tag,
                                subnet=f"{NETNS_PREFIX}.{int(tag[:2], 16)}" if netns else None)
        java, pgbin = self._check_tools(cfg.netns)
        if existing is not None and all(self.broker_alive(n) for n in cfg.node_ids) \
                and self.postgres_alive():
            status = await self.status()
            if status.healthy:
                say("cluster already up and healthy")
                return status
        self._check_ports(cfg)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if existing is None:
            self.config_path.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        started: list[tuple[str, int]] = []
        made_netns = False
        try:
            classpath = await kafka_classpath(say)
            if cfg.netns and self.netns_record.exists() and not _netns_exists(cfg.namespace(1)):
                await self._netns_down()  # recorded but gone (e.g. after a reboot)
            if cfg.netns and not self.netns_record.exists():
                made_netns = True
                await self._netns_up(cfg, say)
            if not self.postgres_alive():
                say(f"starting PostgreSQL on 127.0.0.1:{cfg.postgres_port}")
                started.append(("postgres", await self._start_postgres(cfg, pgbin)))
            todo = [n for n in cfg.node_ids if not self.broker_alive(n)]
            await asyncio.gather(*(self._format_broker(cfg, n, java, classpath) for n in todo))
            for n in todo:
                say(f"starting broker {n} on {cfg.broker_address(n)}")
                started.append((f"broker-{n}", self._spawn_broker(cfg, n, java, classpath)))
            await self._wait_postgres(cfg, limit, say)
            await self._wait_healthy(cfg, limit, say)
        except BaseException:
            say("up failed or was interrupted; stopping what it started")
            await asyncio.shield(self._undo(started, cfg if made_netns else None))
            if existing is None:
                with contextlib.suppress(OSError):
                    self.config_path.unlink()
            raise
        say(f"cluster healthy: bootstrap {cfg.bootstrap}, database {cfg.database_url}")
        return await self.status()

    async def _undo(self, started: list[tuple[str, int]], netns_cfg: ClusterConfig | None) -> None:
        for name, pid in reversed(started):
            sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
            await stop_pid(pid, self.marker, sig=sig, grace=5.0)
        if netns_cfg is not None:
            await self._netns_down()

    # postgres ---------------------------------------------------------------------------

    def _pg_owner(self) -> tuple[int, int] | None:
        """(uid, gid) PostgreSQL runs as; None when we are not root (run as ourselves)."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(PG_USER)
        except KeyError:
            useradd = require_tool("useradd", "install passwd to create the PostgreSQL user")
            subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", PG_USER],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(PG_USER)
        return entry.pw_uid, entry.pw_gid

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return [shutil.which("setpriv") or "setpriv", f"--reuid={PG_USER}",
                f"--regid={PG_USER}", "--init-groups", "--reset-env", *argv]

    async def _start_postgres(self, cfg: ClusterConfig, pgbin: Path) -> int:
        data = self.pg_dir / "data"
        owner = self._pg_owner()
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(self.pg_dir, *owner)
            os.chmod(self.pg_dir, 0o700)
            # the unprivileged user must be able to traverse down to its data dir
            # (mkdtemp makes 0700 dirs; opening only the search bit is harmless)
            os.chmod(self.state_dir, self.state_dir.stat().st_mode | 0o011)
            for parent in [self.state_dir, *self.state_dir.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise ClusterError(
                        f"{parent} is not searchable by user {PG_USER}; "
                        "choose a --state-dir outside it (e.g. under /tmp or /srv)")
        if not (data / "PG_VERSION").exists():
            await _run(self._as_pg_user([str(pgbin / "initdb"), "-D", str(data), "-U", PG_USER,
                                         "--auth=trust", "--no-locale", "-E", "UTF8"]),
                       what="initialise the PostgreSQL data directory", log=self.pg_log,
                       cwd=self.pg_dir)
        argv = self._as_pg_user([
            str(pgbin / "postgres"), "-D", str(data), "-p", str(cfg.postgres_port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "max_connections=200", "-c", "shared_buffers=64MB"])
        proc = spawn_daemon(argv, self.pg_log, cwd=self.pg_dir)
        self._children[proc.pid] = proc
        (self.pg_dir / "pid").write_text(f"{proc.pid}\n")
        return proc.pid

    async def _wait_postgres(self, cfg: ClusterConfig, limit: float, say: Progress) -> None:
        import asyncpg

        deadline = time.monotonic() + limit
        while True:
            if not self.postgres_alive():
                raise ClusterUnhealthy(f"PostgreSQL exited during start; see {self.pg_log}")
            try:
                conn = await asyncpg.connect(host="127.0.0.1", port=cfg.postgres_port,
                                             user=PG_USER, database="postgres", timeout=3)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                conn = None
            if conn is not None:
                try:
                    exists = await conn.fetchval(
                        "SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE)
                    if not exists:
                        await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
                finally:
                    await conn.close()
                say(f"PostgreSQL ready: {cfg.database_url}")
                return
            if time.monotonic() > deadline:
                raise ClusterUnhealthy(
                    f"PostgreSQL not ready after {limit:.0f}s; see {self.pg_log}")
            await asyncio.sleep(0.3)

    # brokers ------------------------------------------------------------------------------

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
                f"-Dlog4j2.configurationFile={compose_dir() / 'log4j2.xml'}",
                f"-Dselfhood.state={self.state_dir}", "-cp", classpath, *main]
        if cfg.netns:
            argv = ["ip", "netns", "exec", cfg.namespace(node), *argv]
        return argv

    async def _format_broker(self, cfg: ClusterConfig, node: int, java: str,
                             classpath: str) -> None:
        props = self._write_properties(cfg, node)
        if (self.broker_dir(node) / "data" / "meta.properties").exists():
            return
        await _run([java, "-Xmx256m", f"-Dlog4j2.configurationFile={compose_dir() / 'log4j2.xml'}",
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

    # status -------------------------------------------------------------------------------

    async def status(self) -> ClusterStatus:
        """Each node's process and health, probed concurrently with short bounds."""
        cfg = self.load_config()
        if cfg is None:
            return ClusterStatus(state_dir=str(self.state_dir), configured=False)

        async def broker(n: int) -> BrokerStatus:
            pid = self.broker_pid(n)
            alive = pid_alive(pid, self.marker)
            paused = alive and pid is not None and _proc_state(pid) == "T"
            healthy = False
            if alive and not paused:
                healthy = n in await broker_ids_in_metadata(cfg.broker_address(n), limit=5.0)
            return BrokerStatus(id=n, address=cfg.broker_address(n), pid=pid, alive=alive,
                                healthy=healthy, paused=paused, log=str(self.broker_log(n)),
                                namespace=cfg.namespace(n) if cfg.netns else None)

        async def postgres() -> PostgresStatus:
            pid = self.postgres_pid()
            alive = pid_alive(pid, self.marker)
            healthy = alive and await postgres_ready("127.0.0.1", cfg.postgres_port, PG_DATABASE)
            return PostgresStatus(address=f"127.0.0.1:{cfg.postgres_port}", pid=pid,
                                  alive=alive, healthy=healthy, database_url=cfg.database_url,
                                  data_dir=str(self.pg_dir / "data"), log=str(self.pg_log))

        results = await asyncio.gather(postgres(), *(broker(n) for n in cfg.node_ids))
        pg_status = results[0]
        assert isinstance(pg_status, PostgresStatus)
        brokers = [b for b in results[1:] if isinstance(b, BrokerStatus)]
        return ClusterStatus(state_dir=str(self.state_dir), configured=True, netns=cfg.netns,
                             bootstrap=cfg.bootstrap, database_url=cfg.database_url,
                             brokers=brokers, postgres=pg_status)

    # down -------------------------------------------------------------------------------------

    async def down(self, progress: Progress | None = None) -> None:
        """Stop every recorded process (SIGTERM, SIGKILL after a bound), remove namespaces.

        Also discards the broker and database data: each `up` starts clean.
        Safe to run twice and when nothing is up.
        """
        say = progress or (lambda _msg: None)
        cfg = self.load_config()
        nodes = cfg.node_ids if cfg else sorted(
            int(p.name.split("-", 1)[1]) for p in self.state_dir.glob("broker-*")
            if p.name.split("-", 1)[1].isdigit())
        stops = []
        for n in nodes:
            pid = self.broker_pid(n)
            if pid is not None and pid_alive(pid, self.marker):
                say(f"stopping broker {n} (pid {pid})")
                # data is discarded anyway; the last node of a 3-node quorum
                # can wait forever for its peers, so the SIGKILL bound is short
                stops.append(stop_pid(pid, self.marker, grace=DOWN_GRACE_S))
        await asyncio.gather(*stops)
        pg_pid = self.postgres_pid()
        if pg_pid is not None and pid_alive(pg_pid, self.marker):
            say(f"stopping PostgreSQL (pid {pg_pid})")
            await stop_pid(pg_pid, self.marker, sig=signal.SIGINT)  # fast shutdown
        for proc in self._children.values():
            with contextlib.suppress(Exception):
                proc.poll()
        self._children.clear()
        if self.netns_record.exists():
            say("removing network namespaces and bridge")
            await self._netns_down()
        for n in nodes:
            shutil.rmtree(self.broker_dir(n), ignore_errors=True)
        shutil.rmtree(self.pg_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.config_path.unlink()
        say("cluster down")

    # chaos levers -----------------------------------------------------------------------------

    async def kill_broker(self, node: int) -> None:
        """SIGKILL one broker (no clean shutdown) and wait until it is gone."""
        self._config()
        pid = self.broker_pid(node)
        if pid is None or not pid_alive(pid, self.marker):
            raise ClusterError(f"broker {node} is not running")
        os.kill(pid, signal.SIGKILL)
        if not await _wait_dead(pid, self.marker, 10.0):
            raise ClusterError(f"broker {node} (pid {pid}) survived SIGKILL")

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

    # network namespaces -------------------------------------------------------------------------

    def _record_netns(self, key: str, value: str) -> None:
        rec: dict[str, list[str]] = {}
        if self.netns_record.exists():
            rec = json.loads(self.netns_record.read_text())
        rec.setdefault(key, [])
        if value not in rec[key]:
            rec[key].append(value)
        self.netns_record.write_text(json.dumps(rec, indent=2) + "\n")

    async def _netns_up(self, cfg: ClusterConfig, say: Progress) -> None:
        """A bridge in the root namespace, one namespace + veth per broker."""
        assert cfg.subnet is not None
        say(f"creating bridge {cfg.bridge} ({cfg.subnet}.0/24) and {cfg.brokers} namespace(s)")
        self.netns_record.write_text("{}\n")
        ip = "ip"
        await _run([ip, "link", "add", cfg.bridge, "type", "bridge"], what="create bridge")
        self._record_netns("bridges", cfg.bridge)
        await _run([ip, "addr", "add", f"{cfg.subnet}.1/24", "dev", cfg.bridge],
                   what="address bridge")
        await _run([ip, "link", "set", cfg.bridge, "up"], what="raise bridge")
        for n in cfg.node_ids:
            ns, host, inner = cfg.namespace(n), cfg.veth_host(n), cfg.veth_ns(n)
            await _run([ip, "netns", "add", ns], what=f"create namespace {ns}")
            self._record_netns("namespaces", ns)
            await _run([ip, "link", "add", host, "type", "veth", "peer", "name", inner],
                       what="create veth pair")
            self._record_netns("veths", host)
            await _run([ip, "link", "set", host, "master", cfg.bridge], what="attach veth")
            await _run([ip, "link", "set", host, "up"], what="raise veth")
            await _run([ip, "link", "set", inner, "netns", ns], what="move veth")
            await _run([ip, "-n", ns, "addr", "add", f"{cfg.broker_host(n)}/24", "dev", inner],
                       what="address veth")
            await _run([ip, "-n", ns, "link", "set", inner, "up"], what="raise veth")
            await _run([ip, "-n", ns, "link", "set", "lo", "up"], what="raise loopback")
            await _run([ip, "-n", ns, "route", "add", "default", "via", f"{cfg.subnet}.1"],
                       what="add default route")

    async def _netns_down(self) -> None:
        """Remove exactly the rules, namespaces, veths and bridge we recorded."""
        try:
            rec: dict[str, list[str]] = json.loads(self.netns_record.read_text())
        except (OSError, ValueError):
            rec = {}
        for rule in rec.get("iptables", []):
            ns, *args = json.loads(rule)
            with contextlib.suppress(ClusterError):
                await _run(["ip", "netns", "exec", ns, "iptables", "-D", *args],
                           what="delete iptables rule")
        for ns in rec.get("namespaces", []):
            with contextlib.suppress(ClusterError):
                await _run(["ip", "netns", "delete", ns], what=f"delete namespace {ns}")
        for veth in rec.get("veths", []):
            if _link_exists(veth):
                with contextlib.suppress(ClusterError):
                    await _run(["ip", "link", "delete", veth], what=f"delete {veth}")
        for bridge in rec.get("bridges", []):
            if _link_exists(bridge):
                with contextlib.suppress(ClusterError):
                    await _run(["ip", "link", "delete", bridge], what=f"delete {bridge}")
        with contextlib.suppress(FileNotFoundError):
            self.netns_record.unlink()

    async def partition(self, groups: list[list[int]]) -> None:
        """Cut the network between broker groups (iptables DROP inside each namespace).

        Brokers in the same group still talk; the root namespace (clients)
        still reaches every broker. Call `heal()` to undo.
        """
        cfg = self._config()
        if not cfg.netns:
            raise ClusterError("partitions need a cluster started with --netns")
        where = {n: i for i, g in enumerate(groups) for n in g}
        for a in cfg.node_ids:
            for b in cfg.node_ids:
                if a == b or where.get(a, -1 - a) == where.get(b, -1 - b):
                    continue
                ns, peer = cfg.namespace(a), cfg.broker_host(b)
                for args in (["INPUT", "-s", peer, "-j", "DROP"],
                             ["OUTPUT", "-d", peer, "-j", "DROP"]):
                    await _run(["ip", "netns", "exec", ns, "iptables", "-A", *args],
                               what=f"partition broker {a} from {b}")
                    self._record_netns("iptables", json.dumps([ns, *args]))

    async def heal(self) -> None:
        """Delete every DROP rule `partition` added."""
        if not self.netns_record.exists():
            return
        rec: dict[str, list[str]] = json.loads(self.netns_record.read_text())
        for rule in rec.get("iptables", []):
            ns, *args = json.loads(rule)
            with contextlib.suppress(ClusterError):
                await _run(["ip", "netns", "exec", ns, "iptables", "-D", *args],
                           what="delete iptables rule")
        rec["iptables"] = []
        self.netns_record.write_text(json.dumps(rec, indent=2) + "\n")
