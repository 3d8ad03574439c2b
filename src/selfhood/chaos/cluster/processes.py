"""Processes the cluster starts: pid files proven ours, bounded stops, daemons, and
the replica/client processes of the cluster runtime (`NodeProcesses`), optionally
under libfaketime.

A pid alone is not proof: pids are reused. Every command line of a broker or
PostgreSQL contains the state directory (`marker`), and `pid_alive` checks
it; a node process's pid file also holds its start time, checked the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Final

from selfhood.chaos.cluster.common import STOP_GRACE_S, _proc_state
from selfhood.chaos.cluster.namespaces import Namespaces
from selfhood.errors import ClusterError, MissingTool

_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def pid_alive(pid: int | None, marker: str) -> bool:
    """True if `pid` runs and its command line contains `marker` (no pid reuse mix-ups).

    A zombie child of this process counts as dead and is reaped.
    """
    if pid is None or pid <= 0:
        return False
    state = _proc_state(pid)
    if state is None:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return marker.encode() in cmdline


async def _wait_dead(pid: int, marker: str, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            return True
        await asyncio.sleep(0.1)
    return not pid_alive(pid, marker)


async def stop_pid(pid: int, marker: str, *, sig: signal.Signals = signal.SIGTERM,
                   grace: float = STOP_GRACE_S) -> None:
    """Send `sig`, then SIGKILL after `grace` seconds; only if `pid` is still ours."""
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        os.kill(pid, sig)
    if await _wait_dead(pid, marker, grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    await _wait_dead(pid, marker, 10.0)


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (bind test, like the server will do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def spawn_daemon(argv: list[str], log: Path, cwd: Path | None = None
                 ) -> subprocess.Popen[bytes]:
    """Start a long-lived server with output appended to `log`.

    Plain Popen, not asyncio's: the process must outlive the event loop (and
    the `selfhood cluster up` process). Its own session keeps a terminal's
    Ctrl-C from reaching it directly; `up` stops it explicitly instead.
    """
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, a unique identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def faketime_library() -> str | None:
    """Path of libfaketime (Debian package `libfaketime`), or None when it is missing."""
    for pattern in ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                    "/usr/local/lib/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def faketime_env(library: str, offset_file: Path) -> dict[str, str]:
    """Environment that skews a process's wall clock by the offset in `offset_file`.

    The file is read on every clock call (``FAKETIME_NO_CACHE``), so the skew
    changes live; the monotonic clock is left alone (``DONT_FAKE_MONOTONIC``),
    as leases must be, so only `time.time()` moves.
    """
    return {"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(offset_file),
            "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1"}


def write_offset(offset_file: Path, seconds: float) -> None:
    """Set a libfaketime offset file to `seconds` (relative to the real clock), atomically."""
    tmp = offset_file.with_name(offset_file.name + ".tmp")
    tmp.write_text(f"{seconds:+.3f}\n")
    os.replace(tmp, offset_file)


class NodeProcesses(Namespaces):
    """Tracked child processes in node namespaces: start, kill -9, pause, resume, restart.

    Each process has a name; its record (argv, node, env, clock skew), pid
    file (pid and start time, so a reused pid is never mistaken for it) and
    log file live in the state directory, so any later process - and `down`
    after a crash - can signal exactly it.
    """

    @property
    def procs_dir(self) -> Path:
        return self.state_dir / "procs"

    def process_log(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def clock_file(self, name: str) -> Path:
        """The libfaketime offset file of a process started with ``skew_clock=True``."""
        return self.procs_dir / f"{name}.faketime"

    def _proc_record(self, name: str) -> dict[str, Any]:
        try:
            rec = json.loads((self.procs_dir / f"{name}.json").read_text())
        except (OSError, ValueError):
            raise ClusterError(f"no process {name!r} was started in {self.state_dir}") from None
        return rec if isinstance(rec, dict) else {}

    def process_names(self) -> list[str]:
        """Every process ever started here (running or not)."""
        return sorted(p.stem for p in self.procs_dir.glob("*.json"))

    def process_pid(self, name: str) -> int | None:
        """The pid of process `name` if it still runs (a zombie counts as dead), else None."""
        try:
            pid_s, start_s = (self.procs_dir / f"{name}.pid").read_text().split()
            pid, start = int(pid_s), int(start_s)
        except (OSError, ValueError):
            return None
        if _start_time(pid) != start:
            return None
        if _proc_state(pid) == "Z":
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            return None
        return pid

    def process_paused(self, name: str) -> bool:
        pid = self.process_pid(name)
        return pid is not None and _proc_state(pid) == "T"

    async def start_process(self, name: str, argv: list[str], *, node: str | None = None,
                            env: dict[str, str] | None = None,
                            skew_clock: bool = False) -> int:
        """Start `argv` as tracked process `name`, in `node`'s namespace (None: the root one).

        `env` is added to this process's environment. With ``skew_clock`` the
        process runs under libfaketime with a live offset (`set_clock_offset`,
        0 at first). Output goes to `process_log(name)`. Returns the pid.
        """
        if not _NAME.fullmatch(name):
            raise ClusterError(f"process name {name!r}: letters, digits, '-', '_' only")
        if self.process_pid(name) is not None:
            raise ClusterError(f"process {name} is already running (pid {self.process_pid(name)})")
        if node is not None:
            self.node_namespace(node)  # exists, or a clear error
        if skew_clock and faketime_library() is None:
            raise MissingTool("clock skew needs libfaketime (`apt-get install faketime`, "
                              "or scripts/install-system.sh)")
        self.procs_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        (self.procs_dir / f"{name}.json").write_text(json.dumps(
            {"argv": argv, "node": node, "env": env or {}, "skew_clock": skew_clock}) + "\n")
        return self._spawn_process(name)

    def _spawn_process(self, name: str) -> int:
        rec = self._proc_record(name)
        full_env = {**os.environ, **rec.get("env", {})}
        if rec.get("skew_clock"):
            lib = faketime_library()
            if lib is None:
                raise MissingTool("clock skew needs libfaketime (`apt-get install faketime`)")
            if not self.clock_file(name).exists():
                write_offset(self.clock_file(name), 0.0)
            full_env.update(faketime_env(lib, self.clock_file(name)))
        argv = list(rec["argv"])
        if rec.get("node") is not None:
            argv = ["ip", "netns", "exec", self.node_namespace(rec["node"]), *argv]
        with self.process_log(name).open("ab") as out:
            try:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=full_env,
                                        start_new_session=True)
            except FileNotFoundError as exc:
                raise MissingTool(f"`{argv[0]}` is not installed (process {name})") from exc
        self._children[proc.pid] = proc
        start = _start_time(proc.pid)
        (self.procs_dir / f"{name}.pid").write_text(f"{proc.pid} {start or 0}\n")
        return proc.pid

    async def signal_process(self, name: str, sig: signal.Signals) -> int:
        """Send `sig` to process `name` (SIGKILL also waits until it is gone); its pid."""
        pid = self.process_pid(name)
        if pid is None:
            raise ClusterError(f"process {name} is not running")
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 10.0
            while self.process_pid(name) is not None:
                self._reap()
                if time.monotonic() > deadline:
                    raise ClusterError(f"process {name} (pid {pid}) survived SIGKILL")
                await asyncio.sleep(0.02)
        return pid

    async def kill_process(self, name: str) -> int:
        """``kill -9``: no clean shutdown; returns once the process is gone."""
        return await self.signal_process(name, signal.SIGKILL)

    async def pause_process(self, name: str) -> int:
        """SIGSTOP: the process keeps its sockets and state, and runs on after resume."""
        return await self.signal_process(name, signal.SIGSTOP)

    async def resume_process(self, name: str) -> int:
        """SIGCONT a paused process."""
        return await self.signal_process(name, signal.SIGCONT)

    async def restart_process(self, name: str) -> int:
        """Start process `name` again as recorded (kill -9 first if it still runs)."""
        self._proc_record(name)
        if self.process_pid(name) is not None:
            await self.kill_process(name)
        return self._spawn_process(name)

    async def stop_process(self, name: str, grace: float = 5.0) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), SIGKILL after `grace` seconds."""
        pid = self.process_pid(name)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.process_pid(name) is not None and time.monotonic() < deadline:
            self._reap()
            await asyncio.sleep(0.05)
        if self.process_pid(name) is not None:
            await self.kill_process(name)
        self._reap()

    async def stop_processes(self) -> None:
        """Stop every tracked process and forget them all (records, pid and clock files)."""
        await asyncio.gather(*(self.stop_process(n) for n in self.process_names()))
        for path in self.procs_dir.glob("*"):
            with contextlib.suppress(OSError):
                path.unlink()

    def set_clock_offset(self, name: str, seconds: float) -> None:
        """Skew process `name`'s wall clock by `seconds` from now on (live; monotonic untouched)."""
        if not self._proc_record(name).get("skew_clock"):
            raise ClusterError(f"process {name} was not started with skew_clock=True")
        write_offset(self.clock_file(name), seconds)

    async def wait_for_output(self, name: str, text: str, limit: float) -> None:
        """Until `text` appears in the process's log (since its latest start), bounded."""
        log = self.process_log(name)
        deadline = time.monotonic() + limit
        while True:
            with contextlib.suppress(OSError):
                if text in log.read_text(errors="replace"):
                    return
            if self.process_pid(name) is None:
                raise ClusterError(f"process {name} exited before printing {text!r}; see {log}")
            if time.monotonic() > deadline:
                raise ClusterError(f"process {name} did not print {text!r} within {limit:.0f} s; "
                                   f"see {log}")
            await asyncio.sleep(0.05)

    def _reap(self) -> None:
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]
