"""The build: a wheel compiles the simulator's hot path (mypyc), and it runs exactly as the source.

What ``pip install selfhood`` / ``pip install .`` gives is the compiled build
(build_backend/selfhood_build.py, setup.py); an editable install stays pure
Python. The first test builds a wheel the way a user does (pip, build
isolation, mypy fetched from PyPI), checks that the listed modules really are
extension modules there, and runs the whole fast suite against that install:
the recorded history digests (test_simperf), the replica core, the real replica
processes, the CLI. It takes a few minutes, so it runs where
``SELFHOOD_TEST_COMPILED=1`` is set (``scripts/test.sh``, i.e. CI, sets it).
A module whose code does not honour its annotations fails there with the
TypeError mypyc raises, instead of in a user's install. The other tests (the
build's choices and its fallback) compile nothing and always run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "build_backend") not in sys.path:
    sys.path.insert(0, str(ROOT / "build_backend"))
from selfhood_build import COMPILE_ENV, clean_copy, compiled_modules, install_copy  # noqa: E402

from selfhood._build import COMPILED, PURE  # noqa: E402

_SLOW = pytest.mark.skipif(os.environ.get("SELFHOOD_TEST_COMPILED") != "1",
                           reason="set SELFHOOD_TEST_COMPILED=1 (CI does) to build "
                                  "and test the mypyc-compiled wheel")


def _compiled_modules() -> list[str]:
    return [p.removeprefix("src/").removesuffix(".py").replace("/", ".")
            for p in compiled_modules(ROOT)]


def _env(site: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    for k in (COMPILE_ENV, "SELFHOOD_TEST_COMPILED"):
        env.pop(k, None)
    return env


def _version(site: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "selfhood", "--version"], env=_env(site),
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def _suffixes(site: Path) -> dict[str, str]:
    """Each listed module's file as imported from ``site``: .so or .py."""
    probe = subprocess.run(
        [sys.executable, "-c",
         "import importlib, sys\n"
         "for m in sys.argv[1:]:\n"
         "    print(m, importlib.import_module(m).__file__.rsplit('.', 1)[-1])\n",
         *_compiled_modules()], env=_env(site), capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    return dict(line.split() for line in probe.stdout.splitlines())


@_SLOW
def test_the_wheel_is_compiled_and_passes_the_whole_fast_suite(tmp_path: Path) -> None:
    site = tmp_path / "site"
    venv.create(tmp_path / "venv", with_pip=True)  # what `pip install .` does in a new venv
    install_copy(ROOT, site, compile="", work=tmp_path, python=tmp_path / "venv" / "bin" / "python")
    assert set(_suffixes(site).values()) == {"so"}, _suffixes(site)
    assert _version(site).endswith(f"(simulator: {COMPILED})")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
         "not slow and not kafka and not postgres", "--timeout", "600",
         "--ignore", "tests/test_compiled.py", "tests"],
        cwd=ROOT, env=_env(site), capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]


def test_without_a_c_compiler_the_wheel_is_pure_python_unless_compiling_was_required(
        tmp_path: Path) -> None:
    pytest.importorskip("mypyc")
    no_cc = {"CC": str(tmp_path / "no-such-cc")}
    site = tmp_path / "site"
    install_copy(ROOT, site, compile="", work=tmp_path, isolation=False, env=no_cc)
    with pytest.raises(RuntimeError, match="SELFHOOD_COMPILE=1: cannot compile the "
                                           "simulator: no C compiler"):
        install_copy(ROOT, tmp_path / "site2", compile="1", work=tmp_path, isolation=False,
                     env=no_cc)
    assert set(_suffixes(site).values()) == {"py"}
    assert _version(site).endswith(f"(simulator: {PURE})")


def test_compile_0_builds_pure_python_and_a_bad_value_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_copy(ROOT, site, compile="0", work=tmp_path, isolation=False)
    assert set(_suffixes(site).values()) == {"py"}
    with pytest.raises(RuntimeError, match="SELFHOOD_COMPILE='yes': use 1"):
        install_copy(ROOT, tmp_path / "site2", compile="yes", work=tmp_path, isolation=False)


def _backend(tmp_path: Path, hook: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Call a build-backend hook in a clean copy of the project, as pip would."""
    proj = tmp_path / "proj"
    clean_copy(ROOT, proj)
    (tmp_path / "dist").mkdir(exist_ok=True)
    code = (f"import sys; sys.path.insert(0, 'build_backend'); import selfhood_build as b; "
            f"print(b.{hook}({str(tmp_path / 'dist')!r}))")
    base = {k: v for k, v in os.environ.items() if k != COMPILE_ENV}
    return subprocess.run([sys.executable, "-c", code], cwd=proj, capture_output=True,
                          text=True, timeout=300, env={**base, **env})


def test_an_editable_install_is_never_compiled(tmp_path: Path) -> None:
    refused = _backend(tmp_path, "build_editable", {COMPILE_ENV: "1"})
    assert refused.returncode != 0
    assert "editable install: the compiled modules would shadow the source" in refused.stderr
    built = _backend(tmp_path, "build_editable", {})
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = tmp_path / "dist" / built.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".so")], names


def test_the_sdist_carries_the_build_backend(tmp_path: Path) -> None:
    built = _backend(tmp_path, "build_sdist", {})
    assert built.returncode == 0, built.stderr[-3000:]
    sdist = tmp_path / "dist" / built.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"build_backend/selfhood_build.py", "setup.py", "pyproject.toml",
            "src/selfhood/chaos/sim.py"} <= names
