"""The compiled build of the simulator's hot path (mypyc); everything else is pyproject.toml.

The build backend (build_backend/selfhood_build.py) says which kind of build
runs. A wheel compiles the modules listed under ``[tool.selfhood] compiled``
in pyproject.toml with mypyc; an editable install, an sdist and metadata
builds compile nothing. ``SELFHOOD_COMPILE``: unset, compile when possible
and otherwise fall back to pure Python with a warning; ``1``, the compiled
build or a failed build; ``0``, pure Python. The compiled modules are the
same code: same results, byte-identical histories (tests/test_compiled.py
checks the recorded ones), ~1.7x the simulated ops per CPU second
(bench/bench_sim.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "build_backend"))  # pip puts it there too (backend-path)
from selfhood_build import COMPILE_ENV, KIND_ENV, compiled_modules  # noqa: E402


def missing_toolchain() -> str | None:
    """Why this machine cannot compile C extensions (no compiler, no Python.h), or None."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    prog = shlex.split(cc)[0] if cc.strip() else "cc"
    if shutil.which(prog) is None:
        return f"no C compiler ({prog!r} is not on PATH)"
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.exists():
        return f"no Python headers ({header} is missing; e.g. apt-get install python3-dev)"
    return None


def warn(msg: str) -> None:
    print(f"selfhood build: WARNING: {msg}; building pure Python "
          f"(same results, ~1.7x slower simulator; {COMPILE_ENV}=1 makes this an error)",
          file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that, unless the compiled build was required, falls back to pure Python."""

    def run(self) -> None:
        # extension files an earlier build left in build/ that this one does not make (a
        # module since dropped from the list, the old group library) would ship and shadow
        # the source
        made = {Path(self.get_ext_fullpath(ext.name)) for ext in self.extensions}
        for old in Path(self.build_lib).rglob("*"):
            if old.suffix in (".so", ".pyd") and old not in made:
                old.unlink()
        try:
            super().run()
        except Exception as exc:  # a missing compiler or Python.h: CompileError, OSError, ...
            if os.environ.get(COMPILE_ENV) == "1":
                raise
            warn(f"compiling the simulator failed ({type(exc).__name__}: {exc})")
            # an earlier build's objects in build/ would otherwise ship as this build's
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []


def extensions() -> list[Any]:
    """The mypyc extension modules for this build (none if it is not a wheel)."""
    choice = os.environ.get(COMPILE_ENV, "")
    if choice not in ("", "0", "1"):
        raise SystemExit(f"{COMPILE_ENV}={choice!r}: use 1 (compile), 0 (pure Python) "
                         "or leave it unset (compile when possible)")
    kind = os.environ.get(KIND_ENV, "")
    if choice == "1" and kind == "editable":
        raise SystemExit(f"{COMPILE_ENV}=1 with an editable install: the compiled modules "
                         "would shadow the source you edit; install without -e")
    if kind != "wheel" or choice == "0":
        return []
    required = choice == "1"
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        if required:
            raise SystemExit(f"{COMPILE_ENV}=1 needs mypyc (pip install mypy, or build "
                             f"with build isolation): {exc}") from None
        warn("mypyc is not installed in the build environment")
        return []
    why = missing_toolchain()
    if why is not None:
        if required:
            raise SystemExit(f"{COMPILE_ENV}=1: cannot compile the simulator: {why}")
        warn(why)
        return []
    os.chdir(HERE)  # mypyc names modules from paths relative to the project (src layout)
    # errors only in the compiled modules: the IO modules the type check passes through
    # import the extras' drivers (sqlalchemy, aiohttp), which a build environment lacks
    # (`mypy` itself checks the whole package, with the extras, in CI)
    mypy_args = [*compiled_modules(HERE), "--follow-imports=silent"]
    try:
        return list(mypycify(mypy_args, opt_level="3"))
    except (Exception, SystemExit) as exc:
        if required:
            raise
        detail = "mypy's errors are above" if isinstance(exc, SystemExit) else str(exc)
        warn(f"mypyc could not compile the simulator ({detail})")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
