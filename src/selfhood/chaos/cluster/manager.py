"""`ClusterManager`: up, status and down of the whole cluster, from its parts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfhood.chaos.cluster.brokers import (
    Brokers,
    BrokerStatus,
    broker_ids_in_metadata,
    kafka_classpath,
    kafka_uuid,
)
from selfhood.chaos.cluster.common import (
    DEFAULT_UP_TIMEOUT_S,
    DOWN_GRACE_S,
    ENV_BASE_PORT,
    Progress,
    _proc_state,
    default_base_port,
    default_state_dir,
    require_tool,
)
from selfhood.chaos.cluster.config import NETNS_PREFIX, PG_DATABASE, ClusterConfig
from selfhood.chaos.cluster.namespaces import _netns_exists
from selfhood.chaos.cluster.postgres import (
    Postgres,
    PostgresStatus,
    postgres_bindir,
    postgres_ready,
)
from selfhood.chaos.cluster.processes import (
    NodeProcesses,
    pid_alive,
    port_free,
    stop_pid,
)
from selfhood.errors import ClusterError, PortInUse


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



class ClusterManager(Brokers, Postgres, NodeProcesses):
    """Start, inspect and perturb the cluster recorded in one state directory.

    Constructing it does no IO. Every method that touches processes or the
    network is async. Methods are safe to call from a process other than the
    one that ran `up`: all knowledge lives in the state directory. The parts
    live by concern: `Brokers`, `Postgres`, `Namespaces` (bridge, namespaces,
    iptables) and the node processes of `selfhood.chaos.cluster.processes`.
    """

    def __init__(self, state_dir: Path | str | None = None) -> None:
        super().__init__(Path(state_dir).resolve() if state_dir else default_state_dir())

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
        if self.procs_dir.exists():
            say("stopping node processes")
            await self.stop_processes()
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
        await self._netns_down()  # also what a crashed cluster run recorded beside it
        for n in nodes:
            shutil.rmtree(self.broker_dir(n), ignore_errors=True)
        shutil.rmtree(self.pg_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.config_path.unlink()
        say("cluster down")
