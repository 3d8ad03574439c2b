"""Shared fixtures: the live cluster from `selfhood cluster up`, and hypothesis profiles.

Tests that name Kafka or PostgreSQL run against the real cluster recorded in
the state directory (``$SELFHOOD_STATE_DIR`` or ``<repo>/.selfhood``). When
it is not up they FAIL with the command to run, never skip: a green run must
mean the real thing was exercised.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from selfhood.chaos.cluster import ENV_STATE_DIR, ClusterManager

# "dev" keeps the edit-test loop quick; "ci" (chosen when CI=true) digs deeper.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev"))

REPO_ROOT = Path(__file__).resolve().parents[1]
UP_HINT = "run `selfhood cluster up --brokers 3` first"


def cluster_state_dir() -> Path:
    """The state dir the shared test cluster lives in."""
    return Path(os.environ.get(ENV_STATE_DIR, REPO_ROOT / ".selfhood")).resolve()


@pytest.fixture(scope="session")
def cluster_manager() -> ClusterManager:
    """Manager of the shared cluster (kill/start/pause brokers, status)."""
    return ClusterManager(cluster_state_dir())


@pytest.fixture(scope="session")
def cluster_status(cluster_manager: ClusterManager) -> dict[str, Any]:
    """`selfhood cluster status --json` as a dict; fails the test if not healthy."""
    status = asyncio.run(cluster_manager.status())
    if not status.configured:
        pytest.fail(f"no Kafka/PostgreSQL cluster in {cluster_manager.state_dir}; {UP_HINT}",
                    pytrace=False)
    if not status.healthy:
        bad = [f"broker {b.id} ({b.address})" for b in status.brokers if not b.healthy]
        if status.postgres is None or not status.postgres.healthy:
            bad.append("postgres")
        pytest.fail(f"cluster in {cluster_manager.state_dir} is not healthy "
                    f"({', '.join(bad)}); {UP_HINT}", pytrace=False)
    return status.to_json()


@pytest.fixture(scope="session")
def kafka_bootstrap(cluster_status: dict[str, Any]) -> str:
    """Comma-separated bootstrap servers of the live cluster."""
    return str(cluster_status["bootstrap"])


@pytest.fixture(scope="session")
def database_url(cluster_status: dict[str, Any]) -> str:
    """postgresql://selfhood@127.0.0.1:PORT/selfhood of the live cluster."""
    return str(cluster_status["database_url"])
