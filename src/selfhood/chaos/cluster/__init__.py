"""The real cluster: Apache Kafka (KRaft) brokers, a PostgreSQL server, and the
network namespaces and processes the cluster runtime puts around them.

`ClusterManager` starts, watches and stops the processes behind
`selfhood cluster up|down|status`, and gives chaos code the levers it pulls
(`kill_broker`, `pause_broker`, `partition`, node namespaces, node
processes). Everything it starts is recorded under a state directory (pid
files, configs, logs, the namespace record), so `down` stops exactly what
was started, from any later process, and nothing else.

Kafka comes from Maven Central through ``data/pom.xml`` (package data, like
``data/log4j2.xml``: an installed selfhood has them too); the jars are copied
once into a cache directory keyed by the pom's hash. PostgreSQL is Debian's
server binaries running a project-local data directory as an unprivileged
user.

One module per concern: `common` (ports, locations, tools), `config` (the
cluster's shape and state directory), `processes` (pid files, node
processes, libfaketime), `brokers`, `postgres`, `namespaces` (bridge,
namespaces, iptables) and `manager` (up/status/down). This package
re-exports what callers use, so ``from selfhood.chaos.cluster import ...``
keeps working.
"""

from selfhood.chaos.cluster.brokers import (
    BROKER_HEAP,
    HEALTH_TOPIC,
    BrokerStatus,
    acks_all_write,
    broker_ids_in_metadata,
    cluster_broker_ids,
    ensure_kafka_libs,
    kafka_classpath,
    kafka_libs_dir,
    kafka_uuid,
    kafka_version,
)
from selfhood.chaos.cluster.common import (
    CONTROLLER_PORT_OFFSET,
    DEFAULT_BASE_PORT,
    DEFAULT_UP_TIMEOUT_S,
    DOWN_GRACE_S,
    ENV_BASE_PORT,
    ENV_STATE_DIR,
    POSTGRES_PORT_OFFSET,
    STOP_GRACE_S,
    Progress,
    _run,
    data_file,
    default_base_port,
    default_state_dir,
    require_tool,
)
from selfhood.chaos.cluster.config import (
    NETNS_PREFIX,
    PG_DATABASE,
    PG_USER,
    ClusterConfig,
    replicated_settings,
)
from selfhood.chaos.cluster.manager import ClusterManager, ClusterStatus
from selfhood.chaos.cluster.namespaces import _link_exists, _netns_exists
from selfhood.chaos.cluster.postgres import PostgresStatus, postgres_bindir, postgres_ready
from selfhood.chaos.cluster.processes import pid_alive, port_free, spawn_daemon, stop_pid

__all__ = [
    "BROKER_HEAP", "CONTROLLER_PORT_OFFSET", "DEFAULT_BASE_PORT", "DEFAULT_UP_TIMEOUT_S",
    "DOWN_GRACE_S", "ENV_BASE_PORT", "ENV_STATE_DIR", "HEALTH_TOPIC", "NETNS_PREFIX",
    "PG_DATABASE", "PG_USER", "POSTGRES_PORT_OFFSET", "STOP_GRACE_S", "BrokerStatus",
    "ClusterConfig", "ClusterManager", "ClusterStatus", "PostgresStatus", "Progress",
    "_link_exists", "_netns_exists", "_run", "acks_all_write", "broker_ids_in_metadata",
    "cluster_broker_ids", "data_file", "default_base_port", "default_state_dir",
    "ensure_kafka_libs", "kafka_classpath", "kafka_libs_dir", "kafka_uuid", "kafka_version",
    "pid_alive", "port_free", "postgres_bindir", "postgres_ready", "replicated_settings",
    "require_tool", "spawn_daemon", "stop_pid",
]
