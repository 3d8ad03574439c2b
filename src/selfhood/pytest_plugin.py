"""The selfhood pytest plugin (entry point `pytest11: selfhood`): fixtures for user suites.

Loaded by pytest whenever selfhood is installed, so it imports nothing
heavy at load time; each fixture imports what it needs when used. Disable it
with ``-p no:selfhood``.

- ``selfhood_store``: a temporary run store (a fresh directory per test);
- ``selfhood_run``: an experiment runner, ``selfhood_run(spec, **fields) -> Run``,
  storing each run in ``selfhood_store``;
- ``selfhood_cluster``: the real Kafka + PostgreSQL cluster, once per session.
  A healthy cluster recorded in the state directory (``$SELFHOOD_STATE_DIR``,
  else ``<rootdir>/.selfhood``) is reused and left running; with none there,
  ``selfhood cluster up`` starts one (``--selfhood-brokers``, ports from
  ``$SELFHOOD_BASE_PORT``) and ``selfhood cluster down`` stops it at the end
  of the session, also when tests fail. A recorded but unhealthy cluster
  is someone else's: the fixture fails with the command to run, never skips.

The assertion helpers live in `selfhood.testing`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selfhood._api import Run
    from selfhood.chaos.cluster import ClusterManager
    from selfhood.spec import ExperimentSpec

#: the environment variable naming the cluster's state directory (as `selfhood cluster`)
STATE_DIR_ENV = "SELFHOOD_STATE_DIR"
UP_TIMEOUT_S = 600


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("selfhood")
    group.addoption("--selfhood-brokers", choices=("1", "3"), default="3",
                    help="brokers of the cluster the selfhood_cluster fixture starts "
                         "(default 3)")


def pytest_report_header(config: pytest.Config) -> str:
    from selfhood import __version__

    return (f"selfhood {__version__}: fixtures selfhood_run, selfhood_store, selfhood_cluster; "
            f"assertions in selfhood.testing")


@pytest.fixture
def selfhood_store(tmp_path: Path) -> Path:
    """A fresh, empty run store for one test (runs land in ``<store>/<name>/<timestamp>``)."""
    store = tmp_path / "selfhood-store"
    store.mkdir()
    return store


Runner = Callable[..., "Run"]


@pytest.fixture
def selfhood_run(selfhood_store: Path) -> Runner:
    """``selfhood_run(spec=None, **fields) -> Run``: run an experiment, stored in selfhood_store.

    `spec` is anything `selfhood.make_spec` takes (a spec, a file, a
    mapping); `fields` change it, e.g. ``selfhood_run(modes=("sequential",),
    schedule=schedule)``.
    """
    from selfhood import run_experiment

    def run(spec: ExperimentSpec | str | os.PathLike[str] | Mapping[str, Any] | None = None,
            /, **fields: Any) -> Run:
        return run_experiment(spec, store=selfhood_store, **fields)

    return run


@dataclass(slots=True)
class Cluster:
    """The live cluster a session's tests share (what `selfhood cluster status --json` says)."""

    state_dir: Path
    bootstrap: str
    database_url: str
    status: dict[str, Any]
    #: True when this session started it (and so stops it at the end)
    started: bool = False
    manager: ClusterManager | None = field(default=None, repr=False)


def _state_dir(config: pytest.Config) -> Path:
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env).resolve() if env else (config.rootpath / ".selfhood").resolve()


def _selfhood(*args: str, state_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, STATE_DIR_ENV: str(state_dir)}
    return subprocess.run([sys.executable, "-m", "selfhood", "cluster", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _status(state_dir: Path) -> Any:
    from selfhood.chaos.cluster import ClusterManager

    return asyncio.run(ClusterManager(state_dir).status())


@pytest.fixture(scope="session")
def selfhood_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The real Kafka + PostgreSQL cluster: reused if healthy, else started and stopped here."""
    from selfhood.extras import MissingExtra, require

    try:
        require("cluster")
    except MissingExtra as exc:
        pytest.fail(f"selfhood_cluster: {exc}", pytrace=False)
    from selfhood.chaos.cluster import ClusterManager

    state_dir = _state_dir(request.config)
    hint = (f"run `SELFHOOD_STATE_DIR={state_dir} selfhood cluster down` if it is yours, "
            f"or point {STATE_DIR_ENV} elsewhere")
    status = _status(state_dir)
    started = False
    if status.configured and not status.healthy:
        bad = [f"broker {b.id} ({b.address})" for b in status.brokers if not b.healthy]
        if status.postgres is None or not status.postgres.healthy:
            bad.append("postgres")
        pytest.fail(f"the cluster in {state_dir} is not healthy ({', '.join(bad)}); {hint}",
                    pytrace=False)
    if not status.configured:
        brokers = str(request.config.getoption("--selfhood-brokers"))
        p = _selfhood("up", "--brokers", brokers, state_dir=state_dir, timeout=UP_TIMEOUT_S)
        if p.returncode != 0:
            _selfhood("down", state_dir=state_dir, timeout=UP_TIMEOUT_S)
            tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            pytest.fail(f"`selfhood cluster up --brokers {brokers}` failed in {state_dir}: "
                        f"{tail}", pytrace=False)
        started = True
        status = _status(state_dir)
    try:
        if not status.healthy:
            pytest.fail(f"the cluster in {state_dir} is not healthy after `selfhood cluster "
                        f"up`; see its logs under {state_dir}", pytrace=False)
        yield Cluster(state_dir, str(status.bootstrap), str(status.database_url),
                      status.to_json(), started, ClusterManager(state_dir))
    finally:
        if started:
            down = _selfhood("down", state_dir=state_dir, timeout=UP_TIMEOUT_S)
            if down.returncode != 0:
                sys.stderr.write(f"selfhood cluster down failed in {state_dir}: "
                                 f"{down.stderr.strip()}\n")
