"""Optional compiled build of the simulator's hot path (mypyc); everything else is pyproject.toml.

A plain ``pip install .`` (or of the sdist) builds pure Python, as it always
did: no C compiler, no mypy. With ``SELFHOOD_COMPILE=1`` in the environment
the modules listed under ``[tool.selfhood] compiled`` in pyproject.toml are
compiled with mypyc (it comes with mypy, so install the dev extra first and
build with ``--no-build-isolation``). The compiled modules are the same
code: same results, byte-identical histories (tests/test_compiled.py checks
the recorded ones), ~1.7x the simulated ops per CPU second (bench/bench_sim.py).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The module paths to compile (the one list: pyproject's ``[tool.selfhood] compiled``)."""
    with open(HERE / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["tool"]["selfhood"]["compiled"])


ext_modules = []
if os.environ.get("SELFHOOD_COMPILE") == "1":
    from mypyc.build import mypycify

    os.chdir(HERE)  # mypyc names modules from paths relative to the project (src layout)
    ext_modules = mypycify(compiled_modules(), opt_level="3")

setup(ext_modules=ext_modules)
