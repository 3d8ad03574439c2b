"""The plugin's `selfhood_cluster` fixture against the real cluster, in an inner pytest session.

With no cluster in the state directory the fixture starts one through
`selfhood cluster up` and stops it when the session ends (nothing left
behind); with a healthy one there it reuses it and leaves it running.
Its own state directory and a free port block, so the suite's cluster is
not touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from selfhood.chaos.cluster import ClusterManager, port_free

pytestmark = pytest.mark.kafka

INNER = '''
import asyncio
from selfhood.chaos.cluster import ClusterManager

def test_inner(selfhood_cluster):
    status = asyncio.run(ClusterManager(selfhood_cluster.state_dir).status())
    assert status.healthy and status.bootstrap == selfhood_cluster.bootstrap
    print("STARTED", selfhood_cluster.started)
'''


def _free_block() -> int:
    taken = int(os.environ.get("SELFHOOD_BASE_PORT", "0"))
    for base in range(25000, 60000, 500):
        if abs(base - taken) >= 100 and all(port_free("127.0.0.1", base + off)
                                            for off in range(0, 21)):
            return base
    raise AssertionError("no free port block")


def test_the_cluster_fixture_starts_and_stops_or_reuses(tmp_path: Path) -> None:
    # PostgreSQL runs as an unprivileged user: the state dir must be searchable by it
    top = Path(tempfile.mkdtemp(prefix="selfhood-plugin-"))
    top.chmod(0o755)
    state = top / "state"
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {**os.environ, "SELFHOOD_STATE_DIR": str(state),
           "SELFHOOD_BASE_PORT": str(_free_block())}
    env.pop("PYTEST_ADDOPTS", None)

    def inner() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p",
                               "no:cacheprovider", "--selfhood-brokers", "1", "test_inner.py"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900, check=False)

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "selfhood", "cluster", *args], env=env,
                       check=True, capture_output=True, timeout=600)

    mgr = ClusterManager(state)
    try:
        # none there: started for the session, stopped at its end
        p = inner()
        assert p.returncode == 0 and "STARTED True" in p.stdout, p.stdout[-2000:] + p.stderr
        assert not asyncio.run(mgr.status()).configured  # down, nothing recorded
        # a healthy one there: reused and left running
        cli("up", "--brokers", "1")
        p = inner()
        assert p.returncode == 0 and "STARTED False" in p.stdout, p.stdout[-2000:] + p.stderr
        assert asyncio.run(mgr.status()).healthy
    finally:
        cli("down")
        shutil.rmtree(top, ignore_errors=True)
