"""Shared fixtures: hypothesis profiles, the bare venv, and names over the plugin's cluster.

The real cluster comes from the selfhood pytest plugin's `selfhood_cluster`
fixture (src/selfhood/pytest_plugin.py, one home): a healthy cluster in
``$SELFHOOD_STATE_DIR`` (or ``<repo>/.selfhood``) is reused, none is started
with `selfhood cluster up` and stopped after the session, an unhealthy one
FAILS the test with the command to run, never skips: a green run must mean
the real thing was exercised. The names below are what the tests use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from selfhood.chaos.cluster import ClusterManager
from selfhood.pytest_plugin import Cluster

# "dev" keeps the edit-test loop quick; "ci" (chosen when CI=true) digs deeper.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev"))

REPO_ROOT = Path(__file__).resolve().parents[1]
# the build backend's helpers: the one way tests copy and install the checkout
if str(REPO_ROOT / "build_backend") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "build_backend"))
from selfhood_build import COMPILE_ENV, clean_copy  # noqa: E402


@pytest.fixture(scope="session")
def cluster_manager(selfhood_cluster: Cluster) -> ClusterManager:
    """Manager of the shared cluster (kill/start/pause brokers, status)."""
    assert selfhood_cluster.manager is not None
    return selfhood_cluster.manager


@pytest.fixture(scope="session")
def cluster_status(selfhood_cluster: Cluster) -> dict[str, Any]:
    """`selfhood cluster status --json` as a dict (healthy, or the session failed)."""
    return selfhood_cluster.status


@pytest.fixture(scope="session")
def kafka_bootstrap(selfhood_cluster: Cluster) -> str:
    """Comma-separated bootstrap servers of the live cluster."""
    return selfhood_cluster.bootstrap


@pytest.fixture(scope="session")
def database_url(selfhood_cluster: Cluster) -> str:
    """postgresql://selfhood@127.0.0.1:PORT/selfhood of the live cluster."""
    return selfhood_cluster.database_url


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `pip install .` and no extras (built from a copy: no build/ in the tree).

    One per session: tests/test_extras.py, test_examples.py and test_packaging.py share it.
    """
    tmp = tmp_path_factory.mktemp("bare")
    project = tmp / "project"
    clean_copy(REPO_ROOT, project)
    env = tmp / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    # pure Python: what these tests check does not depend on the build, and the compiled
    # wheel (the default) has its own test, tests/test_compiled.py
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(project)], check=True, capture_output=True, timeout=600,
                   env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                        COMPILE_ENV: "0"})
    # the bare install alone: an outer PYTHONPATH (tests/test_compiled.py runs this suite
    # against a compiled copy that way) must not shadow it
    wrapper = tmp / "python"
    wrapper.write_text(f'#!/bin/sh\nunset PYTHONPATH\nexec "{py}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def netns_cluster(cluster_manager: ClusterManager) -> Iterator[Path]:
    """The netns cluster (Kafka + PostgreSQL) the runtime uses; started here (and stopped) if
    absent. Shared by test_cluster_runtime.py and test_system_langgraph.py."""
    import asyncio

    from selfhood.chaos.cluster_world.world import runtime_base_port, runtime_manager

    state = cluster_manager.state_dir
    mgr = runtime_manager(state)
    started = False
    if mgr.load_config() is None or not asyncio.run(mgr.status()).healthy:
        started = mgr.load_config() is None
        asyncio.run(mgr.up(brokers=3, netns=True, base_port=runtime_base_port(mgr, state)))
    try:
        yield state
    finally:
        if started:
            asyncio.run(mgr.down())
