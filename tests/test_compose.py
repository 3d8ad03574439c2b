"""compose/docker-compose.yml must describe the cluster `selfhood cluster up` starts.

The expected values come from selfhood.chaos.cluster (never restated here),
so changing a durability setting in one place and not the other fails.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from selfhood.chaos.cluster import (
    BROKER_HEAP,
    DEFAULT_BASE_PORT,
    PG_DATABASE,
    PG_USER,
    ClusterConfig,
    compose_dir,
    kafka_version,
    replicated_settings,
)

BROKERS = 3


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
    return problems


@pytest.fixture(scope="module")
def compose_doc() -> dict[str, Any]:
    with (compose_dir() / "docker-compose.yml").open() as fh:
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
