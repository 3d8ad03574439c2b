"""`ClusterConfig`: the shape of one cluster, and the state directory that records it."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from selfhood.chaos.cluster.common import (
    CONTROLLER_PORT_OFFSET,
    POSTGRES_PORT_OFFSET,
    _proc_state,
)
from selfhood.errors import ClusterError

PG_USER = "selfhood"
PG_DATABASE = "selfhood"
#: netns mode puts broker i at <prefix>.<third>.<10+i>/24, the bridge at .1
NETNS_PREFIX = "10.213"


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
        # a writer killed mid-transaction and not restarted holds read_committed readers
        # of its partitions until its transaction times out; look for those every second
        # (default 10 s), so the wait is about the writer's transaction timeout
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        # a kill -9'd broker is fenced (its partitions led elsewhere) after 3 s, not 9 s
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
    }


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



class StateDir:
    """What every part of the manager knows: the state directory and what it records.

    Constructing it does no IO. All knowledge lives in the directory, so any
    later process (``cluster down`` after a crash) finds what an earlier one
    started.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def config_path(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

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

    def _child_running(self, pid: int | None) -> bool | None:
        """For a process this object spawned: whether it still runs; else None (unknown).

        Right after the fork its command line is still ours, not the server's,
        so `pid_alive`'s marker test would call a starting server dead.
        """
        child = self._children.get(pid) if pid is not None else None
        if child is None or pid is None:
            return None
        return child.poll() is None and _proc_state(pid) not in (None, "Z")

    def _read_pid(self, path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None
