"""compose/docker-compose.yml must describe the cluster `selfhood cluster up` starts.

The expected values come from selfhood.chaos.cluster (never restated here),
so changing a durability setting in one place and not the other fails.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfhood.chaos.cluster import (
    BROKER_HEAP,
    DEFAULT_BASE_PORT,
    PG_DATABASE,
    PG_USER,
    ClusterConfig,
    kafka_version,
    replicated_settings,
)
from selfhood.chaos.cluster_world.world import REPLICA_PORT
from selfhood.replica.cli import serve
from selfhood.replica.config import resolve_options
from selfhood.spec import ExperimentSpec

BROKERS = 3
#: the replicas the cluster runtime starts for the default spec (r0, r1, r2)
REPLICAS = ExperimentSpec().replica_names
#: the Docker files: the checkout's, not the package's (`cluster up` never reads them)
COMPOSE = Path(__file__).resolve().parents[1] / "compose"


def env_name(setting: str) -> str:
    """apache/kafka image convention: server property a.b.c <- env KAFKA_A_B_C."""
    return "KAFKA_" + setting.upper().replace(".", "_")


def compose_mismatches(doc: dict[str, Any]) -> list[str]:
    """Every way the compose document differs from the cluster manager's settings."""
    cfg = ClusterConfig(brokers=BROKERS, base_port=DEFAULT_BASE_PORT, netns=False,
                        cluster_id="x", tag="t")
    services: dict[str, Any] = doc.get("services", {})
    problems: list[str] = []
    kafka = sorted(name for name in services if name.startswith("kafka-"))
    if kafka != [f"kafka-{n}" for n in cfg.node_ids]:
        problems.append(f"kafka services {kafka}, want {BROKERS}")
    voters = {f"{n}@kafka-{n}:29093" for n in cfg.node_ids}
    for n in cfg.node_ids:
        svc = services.get(f"kafka-{n}", {})
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        where = f"kafka-{n}"
        if svc.get("image") != f"apache/kafka:{kafka_version()}":
            problems.append(f"{where}: image {svc.get('image')}, want {kafka_version()}")
        if env.get("KAFKA_NODE_ID") != str(n):
            problems.append(f"{where}: node id {env.get('KAFKA_NODE_ID')}")
        if env.get("KAFKA_PROCESS_ROLES") != "broker,controller":
            problems.append(f"{where}: not a combined broker+controller")
        if set(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(",")) != voters:
            problems.append(f"{where}: quorum voters {env.get('KAFKA_CONTROLLER_QUORUM_VOTERS')}")
        if env.get("KAFKA_HEAP_OPTS") != " ".join(BROKER_HEAP):
            problems.append(f"{where}: heap {env.get('KAFKA_HEAP_OPTS')}")
        for key, want in replicated_settings(BROKERS).items():
            if env.get(env_name(key)) != want:
                problems.append(f"{where}: {key}={env.get(env_name(key))}, want {want}")
        port = cfg.broker_port(n)
        if f"EXTERNAL://localhost:{port}" not in env.get("KAFKA_ADVERTISED_LISTENERS", ""):
            problems.append(f"{where}: external listener is not localhost:{port}")
        if f"{port}:{port}" not in [str(p) for p in svc.get("ports", [])]:
            problems.append(f"{where}: port {port} not published")
    pg = services.get("postgres", {})
    pg_env = pg.get("environment") or {}
    if pg_env.get("POSTGRES_USER") != PG_USER or pg_env.get("POSTGRES_DB") != PG_DATABASE:
        problems.append("postgres: user/database differ from the cluster manager's")
    if f"127.0.0.1:{cfg.postgres_port}:5432" not in [str(p) for p in pg.get("ports", [])]:
        problems.append(f"postgres: not published on 127.0.0.1:{cfg.postgres_port}")
    return problems + replica_mismatches(services, cfg)


def replica_mismatches(services: dict[str, Any], cfg: ClusterConfig) -> list[str]:
    """The replica services: one `selfhood replica serve` per replica of the default spec,
    on the brokers' internal listeners and the compose PostgreSQL, the others as peers,
    and a command line the real replica CLI accepts."""
    problems: list[str] = []
    replicas = sorted(name for name in services if name.startswith("replica-"))
    if replicas != [f"replica-{r}" for r in REPLICAS]:
        problems.append(f"replica services {replicas}, want one per {list(REPLICAS)}")
    bootstrap = ",".join(f"kafka-{n}:29092" for n in cfg.node_ids)
    database = f"postgresql://{PG_USER}@postgres:5432/{PG_DATABASE}"
    for name in REPLICAS:
        where = f"replica-{name}"
        svc = services.get(where, {})
        build = svc.get("build") or {}
        if build.get("dockerfile") != "compose/Dockerfile" or build.get("context") != "..":
            problems.append(f"{where}: not built from compose/Dockerfile at the repo root")
        cmd = [str(c) for c in svc.get("command") or []]
        if cmd[:2] != ["replica", "serve"]:
            problems.append(f"{where}: command is not `selfhood replica serve`: {cmd}")
            continue
        try:
            values = serve.make_context("serve", cmd[2:]).params
            opts = resolve_options({k: v for k, v in values.items()
                                    if k not in ("config", "verbose")}, {}, None)
        except Exception as exc:  # the real CLI refuses it: say how
            problems.append(f"{where}: `replica serve` refuses its command: {exc}")
            continue
        if opts.node != name:
            problems.append(f"{where}: --node {opts.node}, want {name}")
        if (opts.host, opts.port) != ("0.0.0.0", REPLICA_PORT):
            problems.append(f"{where}: listens on {opts.host}:{opts.port}, "
                            f"want 0.0.0.0:{REPLICA_PORT}")
        if opts.bootstrap != bootstrap:
            problems.append(f"{where}: bootstrap {opts.bootstrap}, want {bootstrap}")
        if opts.database_url != database:
            problems.append(f"{where}: database {opts.database_url}, want {database}")
        want_peers = {r: f"http://replica-{r}:{REPLICA_PORT}" for r in REPLICAS if r != name}
        if dict(opts.peers) != want_peers:
            problems.append(f"{where}: peers {dict(opts.peers)}, want {want_peers}")
        deps = set(svc.get("depends_on") or [])
        if deps != {*(f"kafka-{n}" for n in cfg.node_ids), "postgres"}:
            problems.append(f"{where}: depends on {sorted(deps)}")
    return problems


def dockerfile_mismatches(text: str) -> list[str]:
    """The replica image: the package with the extras a replica needs, serving the API."""
    problems: list[str] = []
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines or not lines[0].startswith("FROM python:3.11"):
        problems.append("Dockerfile: not FROM python:3.11 (the project's Python)")
    installs = [ln for ln in lines if ln.startswith("RUN pip install")]
    if not any("cluster" in ln and "postgres" in ln for ln in installs):
        problems.append("Dockerfile: does not install the extras cluster and postgres")
    if f"EXPOSE {REPLICA_PORT}" not in lines:
        problems.append(f"Dockerfile: does not expose the replica port {REPLICA_PORT}")
    if 'ENTRYPOINT ["selfhood"]' not in lines:
        problems.append("Dockerfile: entrypoint is not the selfhood command")
    return problems


@pytest.fixture(scope="module")
def compose_doc() -> dict[str, Any]:
    with (COMPOSE / "docker-compose.yml").open() as fh:
        doc = yaml.safe_load(fh)
    assert isinstance(doc, dict)
    return doc


def test_compose_matches_cluster_manager(compose_doc: dict[str, Any]) -> None:
    assert compose_mismatches(compose_doc) == []


@pytest.mark.parametrize("key", sorted(replicated_settings(BROKERS)))
def test_each_durability_drift_is_caught(compose_doc: dict[str, Any], key: str) -> None:
    drifted = copy.deepcopy(compose_doc)
    drifted["services"]["kafka-2"]["environment"][env_name(key)] = "drifted"
    problems = compose_mismatches(drifted)
    assert any(p.startswith(f"kafka-2: {key}=drifted") for p in problems), problems


def test_missing_broker_and_wrong_postgres_are_caught(compose_doc: dict[str, Any]) -> None:
    drifted = copy.deepcopy(compose_doc)
    del drifted["services"]["kafka-3"]
    drifted["services"]["postgres"]["environment"]["POSTGRES_DB"] = "other"
    problems = compose_mismatches(drifted)
    assert any("kafka services" in p for p in problems)
    assert any(p.startswith("postgres: user/database") for p in problems)


def test_dockerfile_builds_the_replica_image() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    assert dockerfile_mismatches(text) == []
    assert dockerfile_mismatches(text.replace("cluster,postgres", "kafka")) != []


def test_replica_drift_is_caught(compose_doc: dict[str, Any]) -> None:
    """A wrong node name, a missing peer, an option the CLI does not know, a missing replica."""
    cases: list[tuple[str, str]] = []
    drifted = copy.deepcopy(compose_doc)
    cmd = drifted["services"]["replica-r1"]["command"]
    cmd[cmd.index("--node") + 1] = "r7"
    cases.append(("replica-r1: --node r7", "node"))
    peer = drifted["services"]["replica-r2"]["command"]
    at = peer.index("--peer")
    del peer[at:at + 2]
    cases.append(("replica-r2: peers", "peer"))
    drifted["services"]["replica-r0"]["command"] = ["replica", "serve", "--bogus", "x"]
    cases.append(("replica-r0: `replica serve` refuses", "option"))
    problems = compose_mismatches(drifted)
    for prefix, what in cases:
        assert any(p.startswith(prefix) for p in problems), (what, problems)
    fewer = copy.deepcopy(compose_doc)
    del fewer["services"]["replica-r2"]
    assert any(p.startswith("replica services") for p in compose_mismatches(fewer))
