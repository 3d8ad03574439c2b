"""The sample user suite under examples/ runs in a venv holding only selfhood (and pytest).

The plugin must load through its `pytest11` entry point (no conftest, no
path tricks), the property test over generated fault schedules must pass,
and the deliberately broken examples must fail with a message in words.
Shares the bare venv of tests/test_extras.py (conftest `bare_python`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import selfhood

SUITE = Path(__file__).resolve().parents[1] / "examples" / "suite"


@pytest.fixture(scope="module")
def user_suite(bare_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/suite, and pytest in the bare venv (what a user adds)."""
    subprocess.run([str(bare_python), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "pytest"],
                   check=True, capture_output=True, timeout=600)
    dest = tmp_path_factory.mktemp("user") / "suite"
    shutil.copytree(SUITE, dest, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    return dest


def _pytest(py: Path, cwd: Path, *args: str, broken: bool = False
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "SELFHOOD_", "HYPOTHESIS"))}
    if broken:
        env["SELFHOOD_SHOW_BROKEN"] = "1"
    return subprocess.run([str(py), "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def test_the_sample_suite_passes_with_the_plugin_from_its_entry_point(
        bare_python: Path, user_suite: Path) -> None:
    assert not (user_suite / "conftest.py").exists()
    p = _pytest(bare_python, user_suite)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    # the plugin's report header: loaded through the entry point
    assert f"selfhood {selfhood.__version__}: fixtures selfhood_run" in p.stdout
    assert "3 passed, 2 skipped" in p.stdout
    # the plugin can be switched off like any other, and then its fixture is unknown
    off = _pytest(bare_python, user_suite, "-p", "no:selfhood",
                  "test_agent_identity.py::test_a_stored_run_can_be_judged_again")
    assert off.returncode == 1 and "fixture 'selfhood_run' not found" in off.stdout


def test_the_broken_examples_fail_with_a_readable_message(
        bare_python: Path, user_suite: Path) -> None:
    p = _pytest(bare_python, user_suite, "test_broken_on_purpose.py", broken=True)
    assert p.returncode == 1, p.stdout[-3000:]
    assert "2 failed" in p.stdout
    out = p.stdout
    # the first fork in words: which reads, on which replicas, where the pasts part
    assert "did not stay the same instance in mode eventual" in out
    assert "forked: the read at op #" in out and "they part at turn" in out
    # the anomaly cycle, not a dump of the result object
    assert "G2-item cycle T" in out and "-rw->" in out
    assert "anomalies=" not in out and "'cases':" not in out
