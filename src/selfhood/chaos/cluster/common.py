"""What every part of the cluster manager shares: ports, locations, tools, `_run`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from selfhood.errors import ClusterError, MissingTool

Progress = Callable[[str], None]

#: first broker client port; controller and PostgreSQL ports are offsets from it
DEFAULT_BASE_PORT = 19092
CONTROLLER_PORT_OFFSET = 10
POSTGRES_PORT_OFFSET = 20
DEFAULT_UP_TIMEOUT_S = 180.0
STOP_GRACE_S = 20.0
DOWN_GRACE_S = 8.0
ENV_STATE_DIR = "SELFHOOD_STATE_DIR"
ENV_BASE_PORT = "SELFHOOD_BASE_PORT"


def quiet(_msg: str) -> None:
    """A progress callback that says nothing."""


def data_file(name: str) -> Path:
    """A file the cluster runtime hands to Maven or the JVM: ``pom.xml``, ``log4j2.xml``.

    They are package data (``selfhood/chaos/cluster/data/``), so a regular
    install has them as well as a checkout; a path, not a resource stream,
    because the other programs open them by name.
    """
    path = Path(__file__).resolve().parent / "data" / name
    if not path.is_file():
        raise ClusterError(f"{path}: missing from the installed selfhood package; reinstall it")
    return path


def default_state_dir() -> Path:
    """``$SELFHOOD_STATE_DIR`` or ``./.selfhood``."""
    return Path(os.environ.get(ENV_STATE_DIR, ".selfhood")).resolve()


def default_base_port() -> int:
    """``$SELFHOOD_BASE_PORT`` or `DEFAULT_BASE_PORT`."""
    raw = os.environ.get(ENV_BASE_PORT)
    if raw is None:
        return DEFAULT_BASE_PORT
    try:
        return int(raw)
    except ValueError:
        raise ClusterError(f"{ENV_BASE_PORT}={raw!r} is not a port number") from None


def require_tool(name: str, hint: str) -> str:
    """Absolute path of a program on PATH, or `MissingTool` saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise MissingTool(f"`{name}` is not on PATH; {hint}")
    return found


async def _run(argv: list[str], *, what: str, log: Path | None = None,
               limit: float = 300.0, cwd: Path | None = None) -> str:
    """Run a short helper command; a failure becomes a `ClusterError` naming it."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=cwd, start_new_session=True)
    except FileNotFoundError as exc:
        raise MissingTool(f"`{argv[0]}` is not installed (needed to {what})") from exc
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(argv)}\n{text}\n")
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-8:])
        raise ClusterError(f"failed to {what} (exit {proc.returncode}): {tail}")
    return text


def _proc_state(pid: int) -> str | None:
    """The state letter of a process (R, S, T, Z, ...) from /proc, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]
