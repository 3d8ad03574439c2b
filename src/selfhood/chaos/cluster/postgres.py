"""PostgreSQL: Debian's server binaries on a project-local data directory, as an
unprivileged user (the projections' read models live here)."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from selfhood.chaos.cluster.common import Progress, _run, require_tool
from selfhood.chaos.cluster.config import PG_DATABASE, PG_USER, ClusterConfig, StateDir
from selfhood.chaos.cluster.processes import pid_alive, spawn_daemon
from selfhood.errors import ClusterError, ClusterUnhealthy, MissingTool


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server binaries (newest major), or `MissingTool`."""
    override = os.environ.get("SELFHOOD_PG_BINDIR")
    candidates = [override] if override else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for cand in reversed(candidates):
        if (Path(cand) / "postgres").exists() and (Path(cand) / "initdb").exists():
            return Path(cand)
    raise MissingTool(
        "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/postgres); "
        "install them with `apt-get install postgresql` or run scripts/install-system.sh"
    )


@dataclass(frozen=True)
class PostgresStatus:
    """The PostgreSQL server: process, and whether `SELECT 1` works on the database."""

    address: str
    pid: int | None
    alive: bool
    healthy: bool
    database_url: str
    data_dir: str
    log: str


async def postgres_ready(url_host: str, port: int, database: str,
                         limit: float = 5.0) -> bool:
    """True if `SELECT 1` works on `database` as the project user."""
    import asyncpg

    try:
        async with asyncio.timeout(limit):
            conn = await asyncpg.connect(host=url_host, port=port, user=PG_USER,
                                         database=database)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close()
        return True
    except asyncio.CancelledError:
        raise
    except Exception:
        return False


class Postgres(StateDir):
    """The manager's PostgreSQL part: data directory, start as the project user, readiness."""

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def pg_log(self) -> Path:
        return self.logs_dir / "postgres.log"

    def postgres_pid(self) -> int | None:
        return self._read_pid(self.pg_dir / "pid")

    def postgres_alive(self) -> bool:
        pid = self.postgres_pid()
        running = self._child_running(pid)
        return pid_alive(pid, self.marker) if running is None else running

    def _pg_owner(self) -> tuple[int, int] | None:
        """(uid, gid) PostgreSQL runs as; None when we are not root (run as ourselves)."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(PG_USER)
        except KeyError:
            useradd = require_tool("useradd", "install passwd to create the PostgreSQL user")
            subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", PG_USER],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(PG_USER)
        return entry.pw_uid, entry.pw_gid

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return [shutil.which("setpriv") or "setpriv", f"--reuid={PG_USER}",
                f"--regid={PG_USER}", "--init-groups", "--reset-env", *argv]

    async def _start_postgres(self, cfg: ClusterConfig, pgbin: Path) -> int:
        data = self.pg_dir / "data"
        owner = self._pg_owner()
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(self.pg_dir, *owner)
            os.chmod(self.pg_dir, 0o700)
            # the unprivileged user must be able to traverse down to its data dir
            # (mkdtemp makes 0700 dirs; opening only the search bit is harmless)
            os.chmod(self.state_dir, self.state_dir.stat().st_mode | 0o011)
            for parent in [self.state_dir, *self.state_dir.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise ClusterError(
                        f"{parent} is not searchable by user {PG_USER}; "
                        "choose a --state-dir outside it (e.g. under /tmp or /srv)")
        if not (data / "PG_VERSION").exists():
            await _run(self._as_pg_user([str(pgbin / "initdb"), "-D", str(data), "-U", PG_USER,
                                         "--auth=trust", "--no-locale", "-E", "UTF8"]),
                       what="initialise the PostgreSQL data directory", log=self.pg_log,
                       cwd=self.pg_dir)
        argv = self._as_pg_user([
            str(pgbin / "postgres"), "-D", str(data), "-p", str(cfg.postgres_port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "max_connections=200", "-c", "shared_buffers=64MB"])
        proc = spawn_daemon(argv, self.pg_log, cwd=self.pg_dir)
        self._children[proc.pid] = proc
        (self.pg_dir / "pid").write_text(f"{proc.pid}\n")
        return proc.pid

    async def _wait_postgres(self, cfg: ClusterConfig, limit: float, say: Progress) -> None:
        import asyncpg

        deadline = time.monotonic() + limit
        while True:
            if not self.postgres_alive():
                raise ClusterUnhealthy(f"PostgreSQL exited during start; see {self.pg_log}")
            try:
                conn = await asyncpg.connect(host="127.0.0.1", port=cfg.postgres_port,
                                             user=PG_USER, database="postgres", timeout=3)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                conn = None
            if conn is not None:
                try:
                    exists = await conn.fetchval(
                        "SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE)
                    if not exists:
                        await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
                finally:
                    await conn.close()
                say(f"PostgreSQL ready: {cfg.database_url}")
                return
            if time.monotonic() > deadline:
                raise ClusterUnhealthy(
                    f"PostgreSQL not ready after {limit:.0f}s; see {self.pg_log}")
            await asyncio.sleep(0.3)
