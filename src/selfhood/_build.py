"""Which build of the simulator's hot path is installed: compiled (mypyc) or pure Python.

A wheel compiles the modules pyproject's ``[tool.selfhood] compiled`` lists
(build_backend/selfhood_build.py); an editable install, ``SELFHOOD_COMPILE=0``
or a machine without a C compiler gives pure Python. Same results either way;
the compiled build simulates ~1.7x the client ops per CPU second. Found
without importing anything: Python loads an extension module in preference
to the source beside it, so the file that exists is the one that runs.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

COMPILED = "compiled (mypyc)"
PURE = "pure Python"


def simulator_build() -> str:
    """`COMPILED` if the simulator's scheduler module is an extension module, else `PURE`."""
    chaos = Path(__file__).resolve().parent / "chaos"
    if any((chaos / f"sim{suffix}").exists() for suffix in EXTENSION_SUFFIXES):
        return COMPILED
    return PURE
