"""One root error with a subtree per layer.

Callers catch `SelfhoodError` to turn any user-facing failure into a clear
message instead of a traceback; where a builtin fits, errors also subclass it
so generic handlers (``except TimeoutError``) keep working.
"""

from __future__ import annotations


class SelfhoodError(Exception):
    """Root of every error selfhood raises on purpose."""


# --- spec / usage -----------------------------------------------------------


class SpecError(SelfhoodError, ValueError):
    """An experiment spec or CLI argument is invalid; the message names where."""


# --- events -----------------------------------------------------------------


class EventError(SelfhoodError):
    """Root of event schema errors."""


class EventDecodeError(EventError, ValueError):
    """Bytes at a log position do not decode into a known event.

    Carries the position so the record can be dead-lettered, never dropped.
    """

    def __init__(self, message: str, *, partition: int | None = None,
                 offset: int | None = None, raw: bytes | None = None) -> None:
        where = ""
        if partition is not None or offset is not None:
            where = f" at partition {partition} offset {offset}"
        super().__init__(f"{message}{where}")
        self.partition = partition
        self.offset = offset
        self.raw = raw


class UnknownSchemaVersion(EventDecodeError):
    """An event carries a schema version newer than this code understands."""


# --- event log --------------------------------------------------------------


class LogError(SelfhoodError):
    """Root of EventLog adapter errors; driver errors are mapped onto these."""


class LogUrlError(LogError, ValueError):
    """A log URL is malformed or names an unknown scheme."""


class LogUnavailable(LogError, ConnectionError):
    """The log cannot be reached right now (broker down, partition)."""


class NoSuchLog(LogUnavailable):
    """A command that only reads was given a log file that does not exist.

    The user's path, not an outage: the CLI exits 64 naming it. (Still a
    `LogUnavailable`, so code that waits for a log to appear keeps working.)
    """


class NotALog(LogError, ValueError):
    """The file named as a log is not a selfhood log (another database, not a database).

    Malformed input, not an outage: the CLI exits 65 naming the file.
    """


class LogWriteAborted(LogUnavailable):
    """An atomic append was aborted: certainly none of its entries is in the log."""


class LogTimeout(LogError, TimeoutError):
    """A bounded wait on the log ran out; the outcome of a write is unknown."""


class LogClosed(LogError):
    """The adapter was used before start() or after stop()."""


# --- projections -------------------------------------------------------------


class ProjectionError(SelfhoodError):
    """Root of projection / store errors."""


class StoreUrlError(ProjectionError, ValueError):
    """A database URL is malformed or names an unsupported backend."""


class SnapshotVersionMismatch(ProjectionError):
    """A snapshot was written by another schema version; replay instead."""


class PoisonEvent(ProjectionError, ValueError):
    """An event decodes but cannot be applied (e.g. wrong instance, case without a case)."""


# --- consistency ---------------------------------------------------------------


class ConsistencyError(SelfhoodError):
    """Root of replica-core / router errors."""


# --- checkers ----------------------------------------------------------------


class CheckerError(SelfhoodError):
    """Root of checker errors."""


class HistoryError(CheckerError, ValueError):
    """A history file is malformed; the message names the line."""

    def __init__(self, message: str, *, line: int | None = None,
                 path: str | None = None, op_index: int | None = None) -> None:
        where = ""
        if path is not None:
            where += f"{path}:"
        if line is not None:
            where += f"{line}:"
        super().__init__(f"{where} {message}" if where else message)
        self.message = message
        self.line = line
        self.path = path
        #: the op it is about, when raised on parsed ops (the reader maps it to a line)
        self.op_index = op_index


class CheckTimeout(CheckerError, TimeoutError):
    """The time limit ran out before a verdict (while reading or building): unknown."""


# --- chaos / infrastructure ------------------------------------------------------


class ChaosError(SelfhoodError):
    """Root of harness / simulator errors."""


class ClusterError(SelfhoodError):
    """Root of `selfhood cluster` errors (missing tool, port taken, unhealthy)."""


class MissingTool(ClusterError, FileNotFoundError):
    """A required program (java, mvn, initdb, ip, iptables) is not installed."""


class PortInUse(ClusterError, OSError):
    """A port the cluster needs is already taken by something else."""


class ClusterUnhealthy(ClusterError, TimeoutError):
    """The cluster did not become healthy within its time limit."""


# --- reports -------------------------------------------------------------------


class ReportError(SelfhoodError):
    """Root of report / run-browser errors."""


class ResultsError(ReportError, ValueError):
    """A stored results.json (or sweep.json) is damaged; the message names the file and field."""


# --- replica processes -------------------------------------------------------------


class ReplicaError(SelfhoodError):
    """Root of `selfhood replica serve` errors (one replica OS process)."""


class ReplicaOptionError(ReplicaError, SpecError):
    """A bad replica option, environment variable or config file field (exit 64)."""


class OutboxCorrupt(ReplicaError, ValueError):
    """The durable outbox file on local disk does not decode; names the file (exit 65)."""
