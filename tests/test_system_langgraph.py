"""`selfhood run --runtime cluster --system CMD`: a user's service as the system under test.

The LangGraph example (examples/langgraph/service.py: LangGraph with its
PostgreSQL checkpointer and store) runs as real processes, one per node
namespace, over the cluster's real PostgreSQL, under real partitions and
kill -9; and a service that does not speak the replica API is refused
before any experiment, naming the endpoint. Nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_runtime_support import leftovers

pytest.importorskip("langgraph.checkpoint.postgres", reason="the langgraph extra")

pytestmark = [pytest.mark.kafka, pytest.mark.postgres,
              pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and iptables need root")]

SERVICE = Path(__file__).resolve().parents[1] / "examples" / "langgraph" / "service.py"
MARK = str(SERVICE)


def _run(tmp_path: Path, system: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "selfhood", "run", "--runtime", "cluster", "--system", system,
         "--modes", "sequential", "--seed", "5", *args], cwd=tmp_path, capture_output=True,
        text=True, timeout=300, check=False)


def test_langgraph_service_under_partitions_and_kills(netns_cluster: Path,
                                                      tmp_path: Path) -> None:
    """A short run (well under a minute of load): conformance first, then the workload under
    partitions (cut from the log = cut from PostgreSQL) and kill -9 + restart; the history is
    judged like selfhood's own, and every node reads one identity at the end."""
    p = _run(tmp_path, f"{sys.executable} {SERVICE}", "--time-limit", "6",
             "--nemesis", "partition,crash", "--name", "langgraph")
    assert p.returncode in (0, 1), p.stderr[-3000:]  # 1: a promise broken is a finding
    for r in ("r0", "r1", "r2"):
        assert f"{r} conforms" in p.stderr
    res = json.loads((tmp_path / "store" / "latest" / "results.json").read_text())
    assert res["runtime"] == "cluster" and res["spec"]["system"].endswith("service.py")
    seq = res["modes"]["sequential"]
    assert seq["ops"] >= 100
    assert seq["stats"]["crashes"] >= 1 and seq["stats"]["partitions"] >= 1
    ident = seq["identity"]
    # one shared checkpointer: after the heal every node shows the same thread state
    assert ident["fingerprints_agree"] == 4, ident
    assert leftovers(netns_cluster, MARK) == []


def test_a_service_that_does_not_speak_the_api_is_refused(netns_cluster: Path,
                                                          tmp_path: Path) -> None:
    """Plain `python -m http.server` answers HTML: the run stops before the load, exit 1,
    naming the endpoint, and leaves nothing behind."""
    system = (f"{sys.executable} -m http.server --bind ${{SELFHOOD_LISTEN%:*}} "
              f"${{SELFHOOD_LISTEN##*:}}")
    p = _run(tmp_path, system, "--time-limit", "2", "--nemesis", "none")
    assert p.returncode == 1, p.stderr[-2000:]
    assert "does not speak the replica API" in p.stderr
    assert "GET /v1/health: HTTP 404 with a body that is not JSON" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "store" / "latest").exists()
    assert leftovers(netns_cluster, "http.server --bind") == []
