"""History files: JSON lines, Jepsen EDN and Jepsen log lines (reading), JSONL and EDN (writing).

Histories must move both ways between selfhood and Jepsen, Elle, Knossos and
Porcupine, so every reader yields the same `Op` list and every malformed line
raises `HistoryError` naming the line, never a traceback. Parsing is pure
(`parse_history` takes text); only `read_history` / `write_*` touch files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from selfhood.checkers.history import Op, OpType
from selfhood.errors import HistoryError

__all__ = [
    "FORMATS",
    "detect_format",
    "op_from_json",
    "op_to_json",
    "ops_to_jsonl",
    "parse_history",
    "parse_jepsen_log",
    "parse_jsonl",
    "read_history",
    "write_edn",
    "write_jsonl",
]

Format = Literal["auto", "jsonl", "edn", "jepsen-log"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "edn", "jepsen-log")

_TYPES = frozenset({"invoke", "ok", "fail", "info"})
_KNOWN = ("index", "type", "process", "f", "value", "time", "node", "instance", "error")

# `INFO  jepsen.util - 3	:invoke	:cas	[3 0]`: process, type, f, then the value
# (anything, possibly containing spaces). Tabs or spaces may separate columns.
_LOG_OP = re.compile(
    r"^\S+\s+jepsen\.util\s+-\s+(:?[\w.-]+)\s+:(invoke|ok|fail|info)\s+:?([^\s]+)(?:\s+(.*?))?\s*$"
)
_INT = re.compile(r"-?\d+\Z")
_PAIR = re.compile(r"\[(-?\d+)[\s,]+(-?\d+)\]\Z")


# --- JSON lines ---------------------------------------------------------------


def op_from_json(obj: Any, position: int, *, line: int | None = None,
                 path: str | None = None) -> Op:
    """One decoded JSON object -> Op; missing keys are tolerated, wrong types are not."""
    if not isinstance(obj, dict):
        raise HistoryError(f"expected a JSON object, got {type(obj).__name__}",
                           line=line, path=path)
    typ = obj.get("type")
    if typ not in _TYPES:
        raise HistoryError(f"'type' must be one of invoke/ok/fail/info, got {typ!r}",
                           line=line, path=path)
    index = obj.get("index", position)
    if not isinstance(index, int) or isinstance(index, bool):
        raise HistoryError(f"'index' must be an integer, got {index!r}", line=line, path=path)
    time = obj.get("time")
    if time is not None:
        if isinstance(time, float):
            time = int(time)
        elif not isinstance(time, int) or isinstance(time, bool):
            raise HistoryError(f"'time' must be an integer (ns), got {time!r}",
                               line=line, path=path)
    f = obj.get("f")
    node = obj.get("node")
    instance = obj.get("instance")
    op_type: OpType = typ
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return Op(index=index, type=op_type, process=obj.get("process"),
              f=None if f is None else str(f), value=obj.get("value"), time=time,
              node=None if node is None else str(node),
              instance=None if instance is None else str(instance),
              error=obj.get("error"), extra=extra)


def parse_jsonl(text: str, *, path: str | None = None) -> list[Op]:
    """Our own format: one JSON op object per line; blank lines are skipped."""
    ops: list[Op] = []
    loads = json.loads
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"invalid JSON: {exc.msg} (column {exc.colno})",
                               line=n, path=path) from None
        ops.append(op_from_json(obj, len(ops), line=n, path=path))
    return ops


def _jsonable(x: Any) -> Any:
    if isinstance(x, frozenset | set):
        return sorted((_jsonable(v) for v in x), key=repr)
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return x


def op_to_json(op: Op) -> dict[str, Any]:
    """The JSONL object for one op (optional keys only when set)."""
    out: dict[str, Any] = {"index": op.index, "time": op.time, "type": op.type,
                           "process": _jsonable(op.process), "f": op.f,
                           "value": _jsonable(op.value)}
    if op.node is not None:
        out["node"] = op.node
    if op.instance is not None:
        out["instance"] = op.instance
    if op.error is not None:
        out["error"] = _jsonable(op.error)
    for k, v in op.extra.items():
        if k not in out:
            out[k] = _jsonable(v)
    return out


def ops_to_jsonl(ops: Iterable[Op]) -> str:
    """A history as JSON lines (one compact object per line)."""
    dumps = json.dumps
    return "".join(dumps(op_to_json(op), separators=(",", ":")) + "\n" for op in ops)


# --- Jepsen log lines -----------------------------------------------------------


def _log_value(raw: str, line: int, path: str | None) -> Any:
    if raw == "" or raw == "nil":
        return None
    if _INT.match(raw):
        return int(raw)
    m = _PAIR.match(raw)
    if m:
        return [int(m.group(1)), int(m.group(2))]
    from selfhood.checkers.edn import parse_edn

    try:
        forms = parse_edn(raw, path=path)
    except HistoryError as exc:
        raise HistoryError(f"unreadable op value {raw!r}: {exc}", line=line, path=path) from None
    if len(forms) != 1:
        raise HistoryError(f"op value {raw!r} is not exactly one EDN form", line=line, path=path)
    return forms[0]


def parse_jepsen_log(text: str, *, path: str | None = None) -> list[Op]:
    """Op lines of a Jepsen log (`INFO  jepsen.util - 3	:invoke	:cas	[3 0]`).

    Every other line (startup chatter, stack traces) is ignored. A keyword in
    the value column of a fail/info line (`:timed-out`) is the error, not a
    value, as Jepsen's etcd test logged it.
    """
    ops: list[Op] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if "jepsen.util" not in line:
            continue
        m = _LOG_OP.match(line)
        if m is None:
            continue
        proc_s, typ, f, raw = m.groups()
        raw = raw or ""
        process: Any = int(proc_s) if _INT.match(proc_s) else proc_s.lstrip(":")
        error: Any = None
        if typ in ("fail", "info") and raw.startswith(":") and " " not in raw:
            error, value = raw[1:], None
        else:
            value = _log_value(raw, n, path)
        op_type: OpType = typ  # type: ignore[assignment]
        ops.append(Op(index=len(ops), type=op_type, process=process, f=f, value=value,
                      error=error, extra={"line": n}))
    return ops


# --- EDN ---------------------------------------------------------------------------


def parse_edn_history(text: str, *, path: str | None = None) -> list[Op]:
    """Jepsen EDN history via elle's reader (one map per line or one vector)."""
    from selfhood.checkers.edn import read_edn_ops

    return read_edn_ops(text, path=path)


# --- detection and dispatch ----------------------------------------------------------


def detect_format(text: str, *, path: str | None = None) -> str:
    """Guess "jsonl", "edn" or "jepsen-log" from the first meaningful line.

    A blank file is an empty JSONL history (a run that recorded nothing).
    """
    if not text.strip():
        return "jsonl"
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith(";"):
            return "edn"
        if "jepsen.util" in s and _LOG_OP.match(s):
            return "jepsen-log"
        if s.startswith("{"):
            try:
                json.loads(s)
            except json.JSONDecodeError:
                return "edn"
            return "jsonl"
        if s.startswith(("[", "(", "#")):
            return "edn"
        break
    if "jepsen.util" in text:
        return "jepsen-log"
    raise HistoryError("cannot tell the history format (not JSON lines, EDN or a Jepsen log)",
                       line=1, path=path)


def parse_history(text: str, fmt: str = "auto", *, path: str | None = None) -> list[Op]:
    """Parse history text in `fmt` ("auto" detects it)."""
    if fmt == "auto":
        fmt = detect_format(text, path=path)
    if fmt == "jsonl":
        return parse_jsonl(text, path=path)
    if fmt == "edn":
        return parse_edn_history(text, path=path)
    if fmt == "jepsen-log":
        return parse_jepsen_log(text, path=path)
    raise HistoryError(f"unknown history format {fmt!r}; expected one of {', '.join(FORMATS)}",
                       path=path)


def read_history(path: str | Path, fmt: str = "auto") -> list[Op]:
    """Read a history file; malformed content raises HistoryError naming the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise HistoryError("not UTF-8 text", line=line, path=str(p)) from None
    except OSError as exc:
        raise HistoryError(f"cannot read history: {exc.strerror}", path=str(p)) from None
    return parse_history(text, fmt, path=str(p))


def write_jsonl(ops: Sequence[Op], path: str | Path) -> None:
    """Write a history as JSON lines (our own format)."""
    Path(path).write_text(ops_to_jsonl(ops), encoding="utf-8")


def write_edn(ops: Sequence[Op], path: str | Path) -> None:
    """Write a history as EDN, one op map per line, for Elle / Knossos / Porcupine."""
    from selfhood.checkers.edn import ops_to_edn

    Path(path).write_text(ops_to_edn(ops), encoding="utf-8")
