"""Jepsen EDN: reader, history conversion and writer (pure).

Histories from Jepsen, Elle and Knossos are EDN, one op map per line or one
top-level vector. The reader tokenizes the whole text with one regex pass
(``findall``), then builds values with an explicit stack, so a multi-MB
history parses in well under a second and deep nesting cannot overflow the
Python stack. Token positions are recomputed only when an error has to name a
line, which keeps the happy path fast.

Mapping to Python: maps -> dict, vectors and lists -> list, sets -> frozenset,
keywords and symbols -> str (without the colon), nil -> None, true/false ->
bool, integers -> int, floats -> float, tagged literals (``#inst "..."``) ->
the tagged value, ``#_`` discards the next form. Unhashable map keys / set
members (vectors) become tuples.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import compress, repeat
from typing import Any

import msgspec

from selfhood.checkers.history import Op, OpFields, op_from_fields, ops_from_records
from selfhood.errors import CheckTimeout, HistoryError

__all__ = ["edn_to_ops", "ops_to_edn", "parse_edn", "read_edn_ops", "write_value"]

# Skip whitespace, commas and comments, then capture exactly one token. The
# final alternative catches anything else (an unterminated string, a stray
# character) so nothing is silently skipped by findall. The token is optional
# so that trailing whitespace or a comment on the last line is one empty match
# (dropped by _tokens) instead of findall retrying inside the comment's text.
_TOKEN = re.compile(
    r"""(?:[\s,]+|;[^\n]*)*+
    (
      "(?:[^"\\]|\\.)*"                 # string
    | \#\{ | \#_ | \#[A-Za-z][^\s,()\[\]{}";]*   # set open, discard, tag
    | [()\[\]{}]                          # delimiters
    | \\(?:newline|space|tab|return|formfeed|backspace|u[0-9A-Fa-f]{4}|.)  # char literal
    | [^\s,()\[\]{}";\\]+                 # atom: number, keyword, symbol
    | [^\s,]                             # anything else: an error
    )?""",
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+N?\Z")
_FLOAT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?M?\Z")
_RATIO = re.compile(r"[+-]?\d+/\d+\Z")
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f",
            "/": "/"}
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "formfeed": "\f",
          "backspace": "\b"}
_CLOSERS = {"(": ")", "[": "]", "{": "}", "#{": "}"}
_DISCARD = object()  # marker on the stack for #_
#: no history nests deeper; checkers walk values recursively
MAX_DEPTH = 100
#: Python's own limit for int() of a decimal string is 4300 digits
_MAX_DIGITS = 4000
_SPECIAL = frozenset('"()[]{}#\\')  # first characters that are not plain atoms


class _EdnSyntax(Exception):
    """Internal: a syntax error at a token index (turned into HistoryError)."""

    def __init__(self, message: str, token: int) -> None:
        super().__init__(message)
        self.token = token


def _unescape(body: str, token: int) -> str:
    def repl(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] == "u" and len(esc) == 5:
            return chr(int(esc[1:], 16))
        out = _ESCAPES.get(esc)
        if out is None:
            raise _EdnSyntax(f"unknown string escape \\{esc}", token)
        return out

    return _ESCAPE.sub(repl, body)


def _atom(tok: str, i: int) -> Any:
    c = tok[0]
    if c == ":":
        if len(tok) == 1:
            raise _EdnSyntax("empty keyword ':'", i)
        return tok[1:]
    if c.isdigit() or (c in "+-" and len(tok) > 1 and tok[1].isdigit()):
        if _INT.match(tok):
            if len(tok) > _MAX_DIGITS:
                raise _EdnSyntax(f"integer literal of {len(tok)} digits (at most "
                                 f"{_MAX_DIGITS})", i)
            return int(tok.rstrip("N"))
        if _FLOAT.match(tok):
            return float(tok.rstrip("M"))
        if _RATIO.match(tok):
            num, den = tok.split("/")
            if int(den) == 0:
                raise _EdnSyntax(f"ratio with zero denominator {tok!r}", i)
            return int(num) / int(den)
        raise _EdnSyntax(f"malformed number {tok!r}", i)
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    if tok == "##Inf":
        return math.inf
    return tok  # a symbol: kept as its name


def _hashable(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_hashable(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted(((_hashable(k), _hashable(v)) for k, v in x.items()), key=repr))
    return x


def _build(kind: str, items: list[Any], token: int) -> Any:
    if kind == "[" or kind == "(":
        return items
    if kind == "#{":
        return frozenset(_hashable(v) for v in items)
    if len(items) % 2:
        raise _EdnSyntax("map literal has an odd number of forms", token)
    out: dict[Any, Any] = {}
    it = iter(items)
    for k in it:
        v = next(it)
        try:
            out[k] = v
        except TypeError:
            out[_hashable(k)] = v
    return out


def _parse_tokens(tokens: list[str]) -> tuple[list[Any], list[int]]:
    """Build top-level forms; returns them with the token index each starts at."""
    forms: list[Any] = []
    starts: list[int] = []
    # stack entries: [kind, items, open-token-index]
    stack: list[tuple[str, list[Any], int]] = []
    # pending prefixes (tags / discards) per nesting depth: list of (marker, depth)
    pending: list[tuple[object, int, int]] = []
    top_start = 0

    def emit(value: Any, i: int) -> None:
        # Apply pending tags/discards that belong to the current depth.
        depth = len(stack)
        while pending and pending[-1][1] == depth:
            marker, _, _ = pending.pop()
            if marker is _DISCARD:
                return
            # a tag: keep the tagged value itself
        if stack:
            stack[-1][1].append(value)
        else:
            forms.append(value)
            starts.append(top_start)

    atoms: dict[str, Any] = {}  # atoms repeat a lot (keywords, small ints): convert once
    missing = _DISCARD
    for i, tok in enumerate(tokens):
        c = tok[0]
        if not stack and not pending:
            top_start = i
        if c not in _SPECIAL:
            val = atoms.get(tok, missing)
            if val is missing:
                val = _atom(tok, i)
                if len(atoms) < 65536:
                    atoms[tok] = val
            if stack and not pending:
                stack[-1][1].append(val)
            else:
                emit(val, i)
            continue
        if c == '"':
            if len(tok) == 1:  # the string regex only matches closed strings
                raise _EdnSyntax("unterminated string", i)
            body = tok[1:-1]
            emit(_unescape(body, i) if "\\" in body else body, i)
        elif tok in _CLOSERS:
            if len(stack) >= MAX_DEPTH:
                raise _EdnSyntax(f"forms nest deeper than {MAX_DEPTH} levels", i)
            stack.append((tok, [], i))
        elif c in ")]}":
            if not stack:
                raise _EdnSyntax(f"unexpected {tok!r}", i)
            kind, items, start = stack[-1]
            if _CLOSERS[kind] != tok:
                raise _EdnSyntax(
                    f"{tok!r} closes {kind!r} opened earlier (expected {_CLOSERS[kind]!r})", i)
            if pending and pending[-1][1] == len(stack):
                raise _EdnSyntax("tag or #_ with no form after it", pending[-1][2])
            stack.pop()
            emit(_build(kind, items, start), i)
        elif c == "#":
            if tok == "#_":
                pending.append((_DISCARD, len(stack), i))
            elif tok.startswith("##"):
                if tok not in ("##Inf", "##-Inf"):
                    raise _EdnSyntax(f"{tok} is no usable value (NaN equals nothing, not even "
                                     "itself)" if tok == "##NaN" else f"unknown {tok}", i)
                emit(math.inf if tok == "##Inf" else -math.inf, i)
            else:
                pending.append((tok, len(stack), i))
        elif c == "\\":
            name = tok[1:]
            if not name:
                raise _EdnSyntax("backslash at end of input", i)
            if name.startswith("u") and len(name) == 5:
                emit(chr(int(name[1:], 16)), i)
            else:
                emit(_CHARS.get(name, name), i)
        else:
            emit(_atom(tok, i), i)
    if stack:
        kind, _, start = stack[-1]
        raise _EdnSyntax(f"{kind!r} is never closed", start)
    if pending:
        raise _EdnSyntax("tag or #_ with no form after it", pending[-1][2])
    return forms, starts


def _token_line(text: str, token: int) -> int:
    """1-based line of the token with this index (slow path, errors only)."""
    for n, m in enumerate(_TOKEN.finditer(text)):
        if n == token and m.group(1) is not None:
            return text.count("\n", 0, m.start(1)) + 1
    return text.count("\n") + 1


def _tokens(text: str) -> list[str]:
    tokens = _TOKEN.findall(text)
    while tokens and not tokens[-1]:  # only the end of the text matches no token
        tokens.pop()
    return tokens


def _parse_with_starts(text: str, path: str | None) -> tuple[list[Any], list[int]]:
    tokens = _tokens(text)
    try:
        return _parse_tokens(tokens)
    except _EdnSyntax as exc:
        raise HistoryError(str(exc), line=_token_line(text, exc.token), path=path) from None


# --- fast path -------------------------------------------------------------------
#
# Most histories (Jepsen's, Elle's, ours) use a small part of EDN: delimiters,
# keywords, numbers, nil/true/false, sets and strings without escapes. For those,
# tokens come from str.translate + str.split (C loops, no regex), atoms are
# converted once each through a dict, and the Python loop visits delimiters
# only, slicing the atoms between them. Anything else (tags, #_, ##Inf, escapes,
# characters, an error of any kind) goes to the general reader above, which
# also names the line of every error.

_DELIMS = frozenset({"[", "]", "{", "}", "(", ")", "#{"})
_COMMENT = re.compile(r";[^\n]*")


class _NotFast(Exception):
    """Internal: the text needs the general reader."""


class _Atoms(dict[str, Any]):
    """Token -> value, converting each distinct token once."""

    def __missing__(self, tok: str) -> Any:
        if tok[0] == '"':
            value: Any = tok[1:-1]
        elif tok[0] == "#" or tok[0] == "\\":
            raise _NotFast
        else:
            try:
                value = _atom(tok, -1)
            except (_EdnSyntax, ValueError):
                raise _NotFast from None
        if len(self) < 1 << 20:
            self[tok] = value
        return value


def _fast_tokens(text: str) -> list[str]:
    if "\\" in text:
        raise _NotFast
    parts = text.split('"')
    if len(parts) % 2 == 0:  # an unterminated string
        raise _NotFast
    if len(parts) > 1 and ";" in text:
        # a ';' could open a comment holding a '"': only plain leading comments here
        head = text.lstrip()
        while head.startswith(";"):
            head = head.partition("\n")[2].lstrip()
        if ";" in head:
            raise _NotFast
        parts = head.split('"')
    tokens: list[str] = []
    for n, part in enumerate(parts):
        if n % 2:
            tokens.append('"' + part + '"')
            continue
        if ";" in part:
            part = _COMMENT.sub(" ", part)
        if "#" in part:
            part = part.replace("#{", "\x00")
            if "#" in part:  # tags, discards, ##Inf: the general reader
                raise _NotFast
        tokens += _spaced(part).split()
    return tokens


def _spaced(code: str) -> str:
    """Delimiters set apart by spaces, commas made spaces (str.replace: C speed)."""
    code = code.replace(",", " ").replace("[", " [ ").replace("]", " ] ")
    code = code.replace("{", " { ").replace("}", " } ")
    if "(" in code or ")" in code:
        code = code.replace("(", " ( ").replace(")", " ) ")
    if "\x00" in code:
        code = code.replace("\x00", " #{ ")
    return code


def _fast_forms(text: str) -> list[Any]:
    """Top-level forms of `text` by the fast path, or _NotFast."""
    tokens = _fast_tokens(text)
    vals = list(map(_Atoms().__getitem__, tokens))
    delims = list(compress(range(len(tokens)), map(_DELIMS.__contains__, tokens)))
    top: list[Any] = []
    cur = top
    stack: list[tuple[str, list[Any]]] = []
    kind = ""
    prev = -1
    try:
        for i in delims:
            if i > prev + 1:
                cur += vals[prev + 1:i]
            prev = i
            tok = tokens[i]
            if tok in _CLOSERS:
                if len(stack) >= MAX_DEPTH:
                    raise _NotFast
                stack.append((kind, cur))
                kind, cur = tok, []
                continue
            if not stack or _CLOSERS[kind] != tok:
                raise _NotFast
            if kind == "{":
                if len(cur) % 2:
                    raise _NotFast
                it = iter(cur)
                value: Any = dict(zip(it, it, strict=True))
            elif kind == "#{":
                value = frozenset(cur)
            else:
                value = cur
            kind, cur = stack.pop()
            cur.append(value)
    except TypeError:  # an unhashable map key or set member: the general reader
        raise _NotFast from None
    if stack:
        raise _NotFast
    if prev + 1 < len(vals):
        top += vals[prev + 1:]
    return top


# --- fastest path: one op map per line, rewritten as JSON ---------------------------
#
# Jepsen's own histories (and ours) are one op map per line as Clojure prints them:
# keyword keys, entries separated by ", ", every other separator one space;
# keywords, integers, nil, vectors and strings without escapes as values. Such
# text becomes JSON lines in a few str passes (C loops) over pieces of it, and msgspec
# decodes them straight into typed op records (history.OpFields), so no Python
# code runs per token. Keys (a keyword after "{" or ", ") are marked \x02 and end
# in '":', other keywords are marked by their ':' and end in '"'; each ends at the
# first space after it (the passes put one before every '}' and in place of ', ').
#
# The rewrite never makes JSON that means something else. The characters of
# tags, lists, comments, escapes and characters send the text to the other
# readers, and so does EDN's `null` (a symbol). A keyword that does not end in a
# space runs its quote on: into a bracket (left unmatched), a string or a newline
# (a control character, which JSON refuses), or the next keyword (whose name is
# left bare): invalid JSON, every time. A key outside a map, or a value keyword or
# anything else where a key belongs, is invalid JSON too. Numbers that JSON spells
# otherwise (N, M, ratios, a leading +) are invalid, a lone ':' is refused, and
# msgspec refuses numbers out of range, fields of the wrong type, any field but
# the standard ones, and values nesting deeper than MAX_DEPTH (with the map).
# Whatever leaves goes to the fast path below, then the general reader, which
# name the line of any error.

_NOT_JSON_SAFE = ("\\", "#", ";", "(", ")", "\t", "\r", "\x01", "\x02", "null")


def _nested(depth: int) -> Any:
    """The values JSON gives here (no maps: those leave the route) to this depth."""
    value: Any = int | float | str | bool | None
    for _ in range(depth):
        value = int | float | str | bool | None | list[value]
    return value


#: an op map and the vectors of its values nest MAX_DEPTH deep at most, as the
#: other readers allow
_Value = _nested(MAX_DEPTH - 1)


class _EdnOpFields(OpFields, forbid_unknown_fields=True):
    """OpFields whose values nest no deeper than the other EDN readers allow."""

    value: _Value = None  # type: ignore[valid-type]
    error: _Value = None  # type: ignore[valid-type]


_json_records = msgspec.json.Decoder(list[_EdnOpFields]).decode


def _quote_keywords(code: str, mark: str, end: str) -> str:
    """Each `mark` + name + " " becomes '"' + name + `end` (mark never in a name)."""
    parts = code.split(mark)
    parts[1:] = map(str.replace, parts[1:], repeat(" "), repeat(end), repeat(1))
    return '"'.join(parts)


#: the text is rewritten in pieces of whole lines about this long, which stay in
#: the CPU's cache through all the passes (a third faster than whole-text passes)
_PIECE = 1 << 15


def _json_ops(text: str) -> list[Op]:
    """The ops of a history of op maps by way of JSON, or _NotFast."""
    if any(c in text for c in _NOT_JSON_SAFE):
        raise _NotFast
    text = text.strip(" \n")
    ops: list[Op] = []
    at = 0
    while at < len(text):
        end = text.find("\n", at + _PIECE) + 1 or len(text)
        try:
            recs = _json_records("[" + _json_piece(text[at:end]).rstrip(",\n") + "]")
        except (msgspec.MsgspecError, RecursionError):
            raise _NotFast from None
        ops += ops_from_records(recs, len(ops))  # while the records are in the cache
        at = end
    return ops


def _json_piece(text: str) -> str:
    """Whole lines of op maps as JSON objects, each followed by a comma, or _NotFast."""
    strings: list[str] = []
    if '"' in text:
        parts = text.split('"')
        if len(parts) % 2 == 0:  # an unterminated string
            raise _NotFast
        strings = parts[1::2]
        text = "\x01".join(parts[0::2])
    # entries are separated by spaces from here on, as vector elements are
    code = text.replace(", :", " \x02")
    if "," in code:
        raise _NotFast  # a comma that separates no map entries: whitespace, to EDN
    code = code.replace("{:", "{\x02").replace("}", " },")
    code = _quote_keywords(code, ":", '" ')
    if "nil" in code:
        code = code.replace(" nil", " null").replace("[nil", "[null")
    code = _quote_keywords(code, "\x02", '":')
    if '""' in code:  # an empty keyword
        raise _NotFast
    code = code.replace(" }", "}").replace(" ", ",")
    if strings:
        pieces = code.split("\x01")
        pieces[1:] = ['"' + s + '"' + p for s, p in zip(strings, pieces[1:], strict=True)]
        code = "".join(pieces)
    return code


def parse_edn(text: str, *, path: str | None = None) -> list[Any]:
    """All top-level EDN forms in `text`; malformed input raises HistoryError with the line."""
    try:
        return _fast_forms(text)
    except _NotFast:
        return _parse_with_starts(text, path)[0]


# --- EDN forms -> history ops ------------------------------------------------


def _txn_value(value: Any) -> Any:
    """Micro-ops as [f, k, v] lists (tuples from sets/keys become lists too)."""
    if isinstance(value, list | tuple):
        return [list(m) if isinstance(m, list | tuple) else m for m in value]
    return value


def _op(form: Any, position: int) -> Op:
    """One op map -> Op (history.op_from_fields validates; HistoryError has no line)."""
    if type(form) is not dict:
        raise HistoryError(f"expected an op map, got {type(form).__name__}")
    op = op_from_fields(form, position)
    value = op.value
    if (op.f == "txn" or op.f is None) and isinstance(value, list) and value and all(
            isinstance(m, list | tuple) and len(m) == 3 for m in value) and any(
            type(m) is tuple for m in value):
        op = replace(op, value=_txn_value(value))
    return op


def _flat(forms: Sequence[Any]) -> list[Any]:
    """Top-level op maps, or the op maps of top-level vectors, in order."""
    if all(type(f) is dict for f in forms):
        return list(forms)
    flat: list[Any] = []
    for form in forms:
        if isinstance(form, list):
            flat.extend(form)
        else:
            flat.append(form)
    return flat


def edn_to_ops(forms: Sequence[Any], *, path: str | None = None,
               lines: Sequence[int] | None = None) -> list[Op]:
    """Turn parsed EDN forms (op maps, or vectors of them) into Ops.

    Missing keys are tolerated: index defaults to the position in the file,
    everything but :type may be absent. `lines` (one per op) lets errors name a
    line; without it they name the op's position.
    """
    ops = []
    for pos, form in enumerate(_flat(forms)):
        try:
            ops.append(_op(form, pos))
        except HistoryError as exc:
            line = lines[pos] if lines is not None and pos < len(lines) else None
            where = "" if line is not None else f"op {pos}: "
            raise HistoryError(where + exc.message, line=line, path=path) from None
    return ops


def _op_lines(text: str) -> list[int]:
    """The line each op starts on: top-level maps, or elements of top-level vectors.

    The slow path (a second tokenizing pass with positions), run only when an
    error has to name a line.
    """
    out: list[int] = []
    depth = 0
    vector_at_top = False
    pending_tag = False
    for m in _TOKEN.finditer(text):
        tok = m.group(1)
        if not tok:
            continue
        starts_form = not pending_tag
        pending_tag = tok[0] == "#" and tok not in ("#{",) and not tok.startswith("##")
        if starts_form and ((depth == 0 and tok != "[") or (depth == 1 and vector_at_top)):
            if tok not in (")", "]", "}"):
                out.append(text.count("\n", 0, m.start(1)) + 1)
        if tok in _CLOSERS:
            if depth == 0:
                vector_at_top = tok == "["
            depth += 1
        elif tok in (")", "]", "}"):
            depth -= 1
    return out


def edn_history(text: str, *, path: str | None = None, deadline: float | None = None
                ) -> tuple[list[Op], Callable[[int], int | None]]:
    """Parse an EDN history: its ops, and a way from an op's position to its line."""
    lines: list[int] = []

    def line_of(pos: int) -> int | None:
        if not lines:
            lines.extend(_op_lines(text))
        return lines[pos] if pos < len(lines) else None

    forms: list[Any] | None = None
    try:
        ops = _json_ops(text)
    except _NotFast:
        forms = parse_edn(text, path=path)
    if deadline is not None and time.monotonic() > deadline:
        raise CheckTimeout("the time limit ran out while reading the EDN history")
    if forms is None:
        return ops, line_of
    flat = _flat(forms)
    if "#{" not in text:  # no set, so no tuple inside a value: op maps as they are
        try:
            return list(map(op_from_fields, flat, range(len(flat)))), line_of
        except (HistoryError, AttributeError):
            pass  # the loop below names the op and its line
    ops = []
    for pos, form in enumerate(flat):
        try:
            ops.append(_op(form, pos))
        except HistoryError as exc:
            raise HistoryError(exc.message, line=line_of(pos), path=path) from None
    return ops, line_of


def read_edn_ops(text: str, *, path: str | None = None) -> list[Op]:
    """Parse an EDN history and convert it, naming the line of any bad op."""
    return edn_history(text, path=path)[0]


# --- writer -------------------------------------------------------------------

_KEYWORD_OK = re.compile(r"[A-Za-z*+!_?<>=.][A-Za-z0-9*+!_?<>=./:#-]*\Z|-[A-Za-z][\w*+!?<>=.-]*\Z")


def _keyword(s: str) -> str:
    return ":" + s if _KEYWORD_OK.match(s) else _string(s)


def _string(s: str) -> str:
    return '"' + (s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                  .replace("\t", "\\t").replace("\r", "\\r")) + '"'


def write_value(x: Any, *, keywords: bool = False) -> str:
    """EDN text for a Python value; `keywords` writes strings as keywords."""
    if x is None:
        return "nil"
    if x is True:
        return "true"
    if x is False:
        return "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "##NaN"
        if math.isinf(x):
            return "##Inf" if x > 0 else "##-Inf"
        return repr(x)
    if isinstance(x, str):
        return _keyword(x) if keywords else _string(x)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{write_value(k, keywords=isinstance(k, str))} {write_value(v)}"
                               for k, v in x.items()) + "}"
    if isinstance(x, frozenset | set):
        return "#{" + " ".join(write_value(v) for v in x) + "}"
    if isinstance(x, list | tuple):
        return "[" + " ".join(write_value(v) for v in x) + "]"
    return _string(str(x))


def _write_op_value(op: Op) -> str:
    v = op.value
    if isinstance(v, list | tuple) and v and all(
            isinstance(m, list | tuple) and len(m) == 3 and isinstance(m[0], str) for m in v):
        # a transaction: micro-op names are keywords, as Elle expects
        return "[" + " ".join(
            f"[{_keyword(m[0])} {write_value(m[1])} {write_value(m[2])}]" for m in v) + "]"
    return write_value(v)


def _op_to_edn(op: Op) -> str:
    parts = [f":index {op.index}", f":type :{op.type}"]
    if op.process is not None:
        parts.append(f":process {write_value(op.process, keywords=True)}")
    if op.f is not None:
        parts.append(f":f {_keyword(op.f)}")
    for k, val in op.extra.items():
        parts.append(f"{_keyword(k)} {write_value(val)}")
    parts.append(f":value {_write_op_value(op)}")
    if op.time is not None:
        parts.append(f":time {op.time}")
    if op.node is not None:
        parts.append(f":node {_string(op.node)}")
    if op.instance is not None:
        parts.append(f":instance {_string(op.instance)}")
    if op.error is not None:
        parts.append(f":error {write_value(op.error)}")
    return "{" + ", ".join(parts) + "}"


def ops_to_edn(ops: Iterable[Op]) -> str:
    """A history as EDN, one op map per line (what Elle, Knossos and Porcupine read).

    :type and :f are keywords, micro-op names in transactions are keywords,
    every other string stays a string.
    """
    return "".join(_op_to_edn(op) + "\n" for op in ops)
