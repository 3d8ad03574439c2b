"""History files: JSON lines, Jepsen EDN and Jepsen log lines (reading), JSONL and EDN (writing).

Histories must move both ways between selfhood and Jepsen, Elle, Knossos and
Porcupine, so every reader yields the same `Op` list and every malformed line
raises `HistoryError` naming the line, never a traceback. Parsing is pure
(`parse_history` takes text); only `read_history` / `write_*` touch files.
"""

from __future__ import annotations

import bisect
import json
import re
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from selfhood.checkers.edn import edn_history, ops_to_edn, parse_edn
from selfhood.checkers.history import (
    Op,
    OpFields,
    OpType,
    check_well_formed,
    op_from_fields,
    ops_from_records,
)
from selfhood.errors import CheckTimeout, HistoryError

__all__ = [
    "FORMATS",
    "ParsedHistory",
    "detect_format",
    "load_history",
    "op_from_json",
    "op_to_json",
    "ops_to_jsonl",
    "parse_history",
    "parse_jepsen_log",
    "parse_jsonl",
    "parse_text",
    "read_history",
    "read_text",
    "well_formed",
    "write_edn",
    "write_jsonl",
]

Format = Literal["auto", "jsonl", "json", "edn", "jepsen-log"]
#: jsonl: ours, one op object per line; json: elle-cli's, one array of op objects
FORMATS: tuple[str, ...] = ("auto", "jsonl", "json", "edn", "jepsen-log")

# `INFO  jepsen.util - 3	:invoke	:cas	[3 0]`: process, type, f, then the value
# (anything, possibly containing spaces). Tabs or spaces may separate columns.
_LOG_OP = re.compile(
    r"^\S+\s+jepsen\.util\s+-\s+(:?[\w.-]+)\s+:(invoke|ok|fail|info)\s+:?([^\s]+)(?:\s+(.*?))?\s*$"
)
_INT = re.compile(r"-?\d+\Z")
_PAIR = re.compile(r"\[(-?\d+)[\s,]+(-?\d+)\]\Z")


# --- JSON lines and JSON arrays ---------------------------------------------------------

_json_decode = msgspec.json.Decoder().decode


def _json_error(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "invalid JSON: values nest too deeply"
    msg = str(exc)
    if msg.startswith("JSON is malformed: "):
        msg = msg[len("JSON is malformed: "):]
    return f"invalid JSON: {msg}"


def op_from_json(obj: Any, position: int, *, line: int | None = None,
                 path: str | None = None) -> Op:
    """One decoded JSON object -> Op (history.op_from_fields names what is wrong)."""
    if type(obj) is not dict:
        raise HistoryError(f"expected a JSON object, got {type(obj).__name__}",
                           line=line, path=path)
    try:
        return op_from_fields(obj, position)
    except HistoryError as exc:
        raise HistoryError(exc.message, line=line, path=path) from None


_fields_decode = msgspec.json.Decoder(list[OpFields]).decode


#: line ends other than "\n" that str.splitlines (the per-line path) also splits at
_OTHER_LINE_ENDS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
#: lines are decoded in pieces about this long, which stay in the CPU's cache
_PIECE = 1 << 16


def _jsonl_fast(text: str) -> list[Op] | None:
    """All lines, typed by msgspec in pieces of whole lines (no per-line call, no
    dict per op), when no line is blank and every op has only the standard fields
    with plain types; None otherwise (the per-line path then reads it, and names
    any error)."""
    if any(c in text for c in _OTHER_LINE_ENDS):
        return None
    text = text.rstrip("\n")
    ops: list[Op] = []
    at = 0
    try:
        while at < len(text):
            end = text.find("\n", at + _PIECE) + 1 or len(text)
            recs = _fields_decode("[" + text[at:end].rstrip("\n").replace("\n", ",") + "]")
            ops += ops_from_records(recs, len(ops))  # while the records are in the cache
            at = end
    except (msgspec.DecodeError, RecursionError):
        return None
    return ops


def _jsonl_ops(text: str, path: str | None,
               deadline: float | None) -> tuple[list[Op], list[int] | None]:
    """Ops and the line of each (None: op n is on line n + 1)."""
    fast = _jsonl_fast(text)
    if fast is not None:
        return fast, None
    ops: list[Op] = []
    lines: list[int] = []
    decode = _json_decode
    for n, line in enumerate(text.splitlines(), start=1):
        if not line or line.isspace():
            continue
        try:
            obj = decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise HistoryError(_json_error(exc), line=n, path=path) from None
        if type(obj) is dict:
            try:
                ops.append(op_from_fields(obj, len(ops)))
            except HistoryError as exc:
                raise HistoryError(exc.message, line=n, path=path) from None
        else:
            op_from_json(obj, len(ops), line=n, path=path)  # raises
        lines.append(n)
        if deadline is not None and not n & 0x3FFF and time.monotonic() > deadline:
            raise CheckTimeout(f"the time limit ran out while reading line {n}")
    return ops, lines


def parse_jsonl(text: str, *, path: str | None = None) -> list[Op]:
    """Our own format: one JSON op object per line; blank lines are skipped."""
    return _jsonl_ops(text, path, None)[0]


def _json_array_ops(text: str, path: str | None) -> tuple[list[Op], Callable[[int], int | None]]:
    """elle-cli's JSON: one array of op objects (keywords written as strings)."""
    try:
        doc = _json_decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        line = None
        m = re.search(r"\(byte (\d+)\)", str(exc))
        if m:
            line = text.encode()[: int(m.group(1))].count(b"\n") + 1
        raise HistoryError(_json_error(exc), line=line, path=path) from None
    if type(doc) is not list:
        raise HistoryError(f"expected a JSON array of op objects, got {type(doc).__name__}",
                           line=1, path=path)
    starts: list[int] | None = None

    def line_of(pos: int) -> int | None:
        nonlocal starts
        if starts is None:
            starts = _json_array_element_lines(text)
        return starts[pos] if pos < len(starts) else None

    ops: list[Op] = []
    for pos, obj in enumerate(doc):
        try:
            if type(obj) is not dict:
                raise HistoryError(f"expected a JSON object, got {type(obj).__name__}")
            ops.append(op_from_fields(obj, pos))
        except HistoryError as exc:
            raise HistoryError(exc.message, line=line_of(pos), path=path) from None
    return ops, line_of


def _json_array_element_lines(text: str) -> list[int]:
    """Line of each element of a JSON array (slow path: only to name a line)."""
    dec = json.JSONDecoder()
    out: list[int] = []
    i = text.index("[") + 1
    ws = re.compile(r"[\s,]*")
    while True:
        i = ws.match(text, i).end()  # type: ignore[union-attr]
        if i >= len(text) or text[i] == "]":
            return out
        out.append(text.count("\n", 0, i) + 1)
        try:
            _, i = dec.raw_decode(text, i)
        except ValueError:
            return out


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
    try:
        forms = parse_edn(raw, path=path)
    except HistoryError as exc:
        raise HistoryError(f"unreadable op value {raw!r}: {exc}", line=line, path=path) from None
    if len(forms) != 1:
        raise HistoryError(f"op value {raw!r} is not exactly one EDN form", line=line, path=path)
    return forms[0]


def parse_jepsen_log(text: str, *, path: str | None = None) -> list[Op]:
    """Op lines of a Jepsen log (`INFO  jepsen.util - 3	:invoke	:cas	[3 0]`).

    Every other line (startup chatter, stack traces) is ignored, but a file with
    text and no op line at all is an error, not an empty history. A keyword in
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
    if not ops and text.strip():
        try:
            seen = detect_format(text)
        except HistoryError:
            seen = ""
        hint = {"jsonl": "; it looks like JSON lines (--format jsonl)",
                "json": "; it looks like a JSON array (--format json)",
                "edn": "; it looks like EDN (--format edn)"}.get(seen, "")
        raise HistoryError("no Jepsen log op line ('INFO jepsen.util - <process> :<type> "
                           f":<f> <value>') in the file{hint}", line=1, path=path)
    return ops


# --- EDN ---------------------------------------------------------------------------


def parse_edn_history(text: str, *, path: str | None = None) -> list[Op]:
    """Jepsen EDN history via elle's reader (one map per line or one vector)."""
    return edn_history(text, path=path)[0]


# --- detection and dispatch ----------------------------------------------------------

_JSON_ARRAY = re.compile(r"\[\s*(?:\{\s*\"|\])")
_JSON_OBJECT = re.compile(r"\{\s*(?:\"|\})")


def detect_format(text: str, *, path: str | None = None) -> str:
    """Guess "jsonl", "json", "edn" or "jepsen-log" from the first meaningful line.

    A blank file is an empty JSONL history (a run that recorded nothing). When
    nothing fits, the error quotes what the first line holds.
    """
    if not text.strip():
        return "jsonl"
    first = 0
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        first = first or n
        if s.startswith(";"):
            return "edn"
        if "jepsen.util" in s and _LOG_OP.match(s):
            return "jepsen-log"
        if s.startswith("{"):
            return "jsonl" if _JSON_OBJECT.match(text, text.index("{")) else "edn"
        if s.startswith("["):
            return "json" if _JSON_ARRAY.match(text, text.index("[")) else "edn"
        if s.startswith(("(", "#")):
            return "edn"
        if "jepsen.util" in text:
            return "jepsen-log"
        raise HistoryError(
            f"cannot tell the history format: the first line starts with {s[:40]!r}, which "
            "begins none of JSON lines ('{\"type\": ...}'), a JSON array ('[{\"type\": "
            "...}]'), EDN ('{:type ...}', '[', ';') or a Jepsen log ('INFO jepsen.util - ...')",
            line=n, path=path)
    return "jsonl"  # pragma: no cover - a non-blank text has a non-blank line


@dataclass(frozen=True, slots=True)
class ParsedHistory:
    """Ops read from a file, with the way back from an op to its line."""

    ops: list[Op]
    format: str
    line_of: Callable[[int], int | None]  # position in ops -> line (None: unknown)

    def line_of_index(self, index: int) -> int | None:
        """The line of the op with this index (ops' indices increase: bisect)."""
        ops = self.ops
        pos = bisect.bisect_left(ops, index, key=lambda op: op.index)
        if pos < len(ops) and ops[pos].index == index:
            return self.line_of(pos)
        return next((self.line_of(i) for i, op in enumerate(ops) if op.index == index), None)


def parse_text(text: str, fmt: str = "auto", *, path: str | None = None,
               deadline: float | None = None) -> ParsedHistory:
    """Parse history text in `fmt` ("auto" detects it); op fields validated, no more."""
    if fmt == "auto":
        fmt = detect_format(text, path=path)
    if fmt == "jsonl":
        ops, lines = _jsonl_ops(text, path, deadline)
        if lines is None:
            return ParsedHistory(ops, fmt, lambda pos: pos + 1 if pos < len(ops) else None)
        return ParsedHistory(ops, fmt, lambda pos: lines[pos] if pos < len(lines) else None)
    if fmt == "json":
        ops, line_of = _json_array_ops(text, path)
        return ParsedHistory(ops, fmt, line_of)
    if fmt == "edn":
        ops, line_of = edn_history(text, path=path, deadline=deadline)
        return ParsedHistory(ops, fmt, line_of)
    if fmt == "jepsen-log":
        ops = parse_jepsen_log(text, path=path)
        return ParsedHistory(ops, fmt, lambda pos: ops[pos].extra.get("line")
                             if pos < len(ops) else None)
    raise HistoryError(f"unknown history format {fmt!r}; expected one of {', '.join(FORMATS)}",
                       path=path)


def parse_history(text: str, fmt: str = "auto", *, path: str | None = None) -> list[Op]:
    """Parse history text in `fmt` ("auto" detects it); op fields are validated."""
    return parse_text(text, fmt, path=path).ops


def well_formed(parsed: ParsedHistory, *, path: str | None = None) -> ParsedHistory:
    """`history.check_well_formed` with the lines of the file in every message."""

    def where(pos: int) -> str:
        line = parsed.line_of(pos)
        return f"op {pos}" if line is None else f"line {line}"

    try:
        check_well_formed(parsed.ops, where)
    except HistoryError as exc:
        pos = getattr(exc, "position", None)
        line = None if pos is None else parsed.line_of(pos)
        raise HistoryError(exc.message, line=line, path=path) from None
    return parsed


def read_text(path: str | Path) -> str:
    """A history file's text: a regular UTF-8 file, or HistoryError."""
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise HistoryError(f"cannot read history: {kind}", path=str(p))
        data = p.read_bytes()
    except OSError as exc:
        raise HistoryError(f"cannot read history: {exc.strerror}", path=str(p)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HistoryError("not UTF-8 text", line=line, path=str(p)) from None


def load_history(path: str | Path, fmt: str = "auto", *,
                 deadline: float | None = None) -> ParsedHistory:
    """Read, parse and check a history file (see `well_formed`); errors name the line.

    `deadline` (time.monotonic) bounds the parsing: past it, CheckTimeout.
    """
    text = read_text(path)
    parsed = parse_text(text, fmt, path=str(path), deadline=deadline)
    if deadline is not None and time.monotonic() > deadline:
        raise CheckTimeout("the time limit ran out while reading the history")
    return well_formed(parsed, path=str(path))


def read_history(path: str | Path, fmt: str = "auto") -> list[Op]:
    """Read a well-formed history file; malformed content raises HistoryError naming the line."""
    return load_history(path, fmt).ops


def write_jsonl(ops: Sequence[Op], path: str | Path) -> None:
    """Write a history as JSON lines (our own format)."""
    Path(path).write_text(ops_to_jsonl(ops), encoding="utf-8")


def write_edn(ops: Sequence[Op], path: str | Path) -> None:
    """Write a history as EDN, one op map per line, for Elle / Knossos / Porcupine."""
    Path(path).write_text(ops_to_edn(ops), encoding="utf-8")
