"""The optional compiled build (setup.py, mypyc) runs exactly as the interpreted code.

The build takes a minute or two, so the test runs where ``SELFHOOD_TEST_COMPILED=1``
is set (``scripts/test.sh``, i.e. CI, sets it) and is skipped elsewhere, and also
skipped (saying why) where mypyc or a C compiler is missing. It builds the project
the documented way into a temporary directory, checks that the listed modules
really are extension modules there, and runs the simulator's tests against that
build: the recorded history digests (test_simperf), determinism and the sim
scenario tests. A module whose code does not honour its annotations fails here
with the TypeError mypyc raises, instead of in a user's compiled install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.environ.get("SELFHOOD_TEST_COMPILED") != "1",
                                reason="set SELFHOOD_TEST_COMPILED=1 (CI does) to build "
                                       "and test the mypyc-compiled modules")


def _compiled_paths() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["tool"]["selfhood"]["compiled"])


def test_the_compiled_build_writes_the_same_histories(tmp_path: Path) -> None:
    pytest.importorskip("mypyc")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) for the mypyc build")
    # build from a copy, so the checkout gets no build/ or egg-info
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, proj / name)
    shutil.copytree(ROOT / "src", proj / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    site = tmp_path / "site"
    env = {**os.environ, "SELFHOOD_COMPILE": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
         "--target", str(site), str(proj)],
        env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    modules = [p.removeprefix("src/").removesuffix(".py").replace("/", ".")
               for p in _compiled_paths()]
    run_env = {**os.environ, "PYTHONPATH": str(site)}
    run_env.pop("SELFHOOD_COMPILE", None)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import importlib, sys\n"
         "for m in sys.argv[1:]:\n"
         "    f = importlib.import_module(m).__file__\n"
         "    assert f.endswith('.so'), f'{m} is not compiled: {f}'\n",
         *modules], env=run_env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    tests = [str(ROOT / "tests" / t) for t in
             ("test_simperf.py", "test_sim.py", "test_sim_regressions.py",
              "test_replica_unit.py", "test_client.py", "test_workloads.py")]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
         "not slow and not kafka and not postgres", *tests],
        cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
