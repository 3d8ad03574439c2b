"""selfhood's build backend: setuptools, plus mypyc for the simulator's hot path in wheels.

A wheel -- what ``pip install selfhood``, ``pip install .`` and ``pip wheel .``
build -- has the modules listed under pyproject's ``[tool.selfhood] compiled``
compiled with mypyc, the way mypy and black ship: the same source, the same
byte-identical histories, ~1.7x the simulated client ops per CPU second
(bench/bench_sim.py). An editable install (``pip install -e .``) stays pure
Python: a compiled module beside its source would shadow every later edit.

``SELFHOOD_COMPILE`` chooses: unset, compile when possible and otherwise build
pure Python with a warning (no C compiler or Python headers); ``1``, require the
compiled build (any failure fails the build); ``0``, build pure Python.

This module only adds mypy (which carries mypyc) and the project's
dependencies (whose types mypyc compiles against) to a wheel's build
requirements and tells setup.py which kind of build is running; setup.py
does the compiling (its names and module list come from here). `install_copy`
is the one way the tests and the bench install a copy of a checkout.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

#: the environment variable that chooses the build (see the module docstring)
COMPILE_ENV = "SELFHOOD_COMPILE"
#: set by this backend while setup.py runs: "wheel" or "editable" (private to the two)
KIND_ENV = "_SELFHOOD_BUILD_KIND"
#: mypyc comes with mypy; pinned to the version the compiled modules are tested with
MYPYC_REQUIREMENT = "mypy==2.4.1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements, plus, unless the wheel is to be pure Python, mypy and the
    project's own dependencies: mypyc type-checks the compiled modules against msgspec's
    types, and an isolated build environment holds only what is asked for here."""
    reqs = list(_setuptools.get_requires_for_build_wheel(config_settings))
    if os.environ.get(COMPILE_ENV) != "0":
        with open("pyproject.toml", "rb") as fh:  # pip runs the backend in the project
            deps = tomllib.load(fh)["project"]["dependencies"]
        reqs += [MYPYC_REQUIREMENT, *deps]
    return reqs


def _as(kind: str, build: Any, *args: Any) -> str:
    old = os.environ.get(KIND_ENV)
    os.environ[KIND_ENV] = kind
    try:
        return str(build(*args))
    finally:
        if old is None:
            os.environ.pop(KIND_ENV, None)
        else:
            os.environ[KIND_ENV] = old


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    """A wheel, its simulator compiled (see the module docstring)."""
    return _as("wheel", _setuptools.build_wheel, wheel_directory, config_settings,
               metadata_directory)


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    """An editable install: always pure Python, so edits to the source take effect."""
    return _as("editable", _setuptools.build_editable, wheel_directory, config_settings,
               metadata_directory)


def compiled_modules(root: Path) -> list[str]:
    """The module paths a wheel compiles (the one list: pyproject's ``[tool.selfhood]
    compiled``), relative to ``root``."""
    with open(root / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["tool"]["selfhood"]["compiled"])


#: what a build reads: these files at the top, and these trees without the junk
_TOP_FILES = ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in")
_TREES = ("src", "build_backend")
_JUNK = ("__pycache__", "*.egg-info", "*.so", "*.pyc")


def build_inputs(root: Path) -> list[Path]:
    """The files a build of the checkout at ``root`` reads, relative to it, in a fixed
    order: what `clean_copy` copies and what a cache of builds keys on."""
    files = [Path(n) for n in _TOP_FILES if (root / n).is_file()]
    for tree in _TREES:
        for path in sorted((root / tree).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not any(fnmatch.fnmatch(part, pat)
                                          for part in rel.parts for pat in _JUNK):
                files.append(rel)
    return files


def clean_copy(root: Path, dest: Path) -> None:
    """`build_inputs` of the checkout at ``root``, copied to ``dest`` (replaced)."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in build_inputs(root):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)


def install_copy(root: Path, target: Path, *, compile: str, work: Path,
                 isolation: bool = True, timeout_s: float = 900.0,
                 env: dict[str, str] | None = None, python: Path | None = None) -> None:
    """``pip install --no-deps --target target`` of a clean copy of the checkout at ``root``.

    The copy (in ``work``) keeps the checkout free of build/ and egg-info and
    keeps an earlier build's objects out of this one. ``compile`` is the
    ``SELFHOOD_COMPILE`` value ("" for unset). Raises RuntimeError with pip's
    output when the build fails. ``env`` adds to the build's environment.
    ``python`` runs pip (default: this interpreter); a fresh venv's pip builds as in a
    user's new venv: mypy also reads the running venv's site-packages, so a
    venv holding the project's dependencies hides any the build forgot to ask for.
    """
    proj = work / "proj"
    clean_copy(root, proj)
    build_env = {k: v for k, v in os.environ.items() if k not in (KIND_ENV, COMPILE_ENV)}
    build_env.update(env or {})
    if compile:
        build_env[COMPILE_ENV] = compile
    cmd = [str(python or sys.executable), "-m", "pip", "install", "-q", "--no-deps",
           "--target", str(target)]
    if not isolation:
        cmd.append("--no-build-isolation")
    done = subprocess.run([*cmd, str(proj)], env=build_env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    shutil.rmtree(proj, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install of {root} failed (exit {done.returncode}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
