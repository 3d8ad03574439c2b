"""Malformed and hostile histories: exit 65 naming path:line: and what is wrong, or a
documented rule; never VALID by accident, never a traceback, never unbounded work.

Every case goes through `selfhood check` in-process (selfhood.cli.main), as a user
would run it. The property test at the end damages valid histories at random and
asserts a typed outcome only.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfhood.checkers.edn import ops_to_edn
from selfhood.checkers.formats import detect_format, ops_to_jsonl, read_history
from selfhood.checkers.history import Op
from selfhood.cli import main

SUITE = Path(__file__).resolve().parents[2] / "shared" / "peers" / "suite"


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["check", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


REGISTER = ('{"type":"invoke","process":0,"f":"write","value":1,"time":1}\n'
            '{"type":"ok","process":0,"f":"write","value":1,"time":2}\n'
            '{"type":"invoke","process":1,"f":"read","value":null,"time":3}\n'
            '{"type":"ok","process":1,"f":"read","value":1,"time":4}\n')


def test_the_base_register_history_is_valid(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert check(capsys, write(tmp_path, "h.jsonl", REGISTER), "--model", "register")[0] == 0


# --- well-formedness ------------------------------------------------------------------------

def _lines(*edits: tuple[int, str]) -> str:
    lines = REGISTER.splitlines()
    for n, text in edits:
        lines[n] = text
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "line", "fragment"), [
    (_lines((1, '{"index":0,"type":"ok","process":0,"f":"write","value":1,"time":2}'),
            (0, '{"index":0,"type":"invoke","process":0,"f":"write","value":1,"time":1}')),
     2, "index 0 repeats the index 0 of line 1"),
    (_lines((0, '{"index":5,"type":"invoke","process":0,"f":"write","value":1,"time":1}')),
     2, "index 1 is below the index 5 of line 1"),
    (_lines((1, '{"type":"ok","process":0,"f":"write","value":1,"time":-7}')),
     2, "time -7 is before the time 1 of line 1"),
    (_lines((2, '{"type":"invoke","process":0,"f":"read","value":null,"time":3}'),
            (1, '{"type":"invoke","process":1,"f":"write","value":1,"time":2}')),
     3, "process 0 invokes again while its invocation at line 1"),
    (_lines((1, '{"type":"ok","process":0,"f":"read","value":1,"time":2}')),
     2, "ok completion of 'read' for the invocation of 'write' at line 1"),
    (_lines((2, '{"type":"ok","process":2,"f":"read","value":null,"time":3}')),
     3, "ok completion for process 2, which has no invocation outstanding"),
])
def test_malformed_history_is_exit_65_naming_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int,
        fragment: str) -> None:
    path = write(tmp_path, "h.jsonl", text)
    for model in ("register", "cas-register", "kv", "set"):
        code, out, err = check(capsys, path, "--model", model)
        assert code == 65 and out == ""
        assert err.startswith(f"error: {path}:{line}: "), err
        assert fragment in err


def test_documented_tolerances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # negative times (only order matters, as in Porcupine's int64 timestamps) and times
    # that run backwards between processes (the file order is the real-time order, as
    # Jepsen's workers stamp an op just before it enters the history)
    text = _lines((0, '{"type":"invoke","process":0,"f":"write","value":1,"time":-5}'),
                  (2, '{"type":"invoke","process":1,"f":"read","value":null,"time":-9}'))
    assert check(capsys, write(tmp_path, "t.jsonl", text), "--model", "register")[0] == 0
    # nemesis ops pair loosely; completions without any invocation (Elle's test style)
    text = ('{"type":"info","process":"nemesis","f":"start"}\n'
            '{"type":"info","process":"nemesis","f":"start"}\n' + REGISTER)
    assert check(capsys, write(tmp_path, "n.jsonl", text), "--model", "register")[0] == 0
    oks = ('{"type":"ok","f":"txn","value":[["append","x",1]]}\n'
           '{"type":"ok","f":"txn","value":[["r","x",[1]]]}\n')
    assert check(capsys, write(tmp_path, "e.jsonl", oks), "--model", "list-append")[0] == 0


@pytest.mark.parametrize("model", ["register", "cas-register", "kv", "set", "list-append",
                                   "rw-register", "kafka"])
def test_an_empty_history_is_unknown_for_every_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str) -> None:
    for text in ("", "\n\n", '{"type":"info","process":"nemesis","f":"start"}\n'):
        code, out, _ = check(capsys, write(tmp_path, "e.jsonl", text), "--model", model)
        assert code == 2, (text, out)
        assert "unknown: the history has no client operations" in out


def test_jsonl_read_as_a_jepsen_log_is_an_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "h.jsonl", REGISTER)
    code, _, err = check(capsys, path, "--model", "register", "--format", "jepsen-log")
    assert code == 65
    assert "no Jepsen log op line" in err and "looks like JSON lines" in err


@pytest.mark.parametrize(("value", "fragment"), [
    ('[["append","x",{"a":1}]]', "holds a map or set"),
    ('[["r",{"k":1},null]]', "holds a map or set"),
    ('[["append","x",[1,{"a":1}]]]', "holds a map or set"),
    ('5', "must be a list of [f k v] micro-ops"),
    ('[["append","x"]]', "malformed micro-op"),
])
@pytest.mark.parametrize("model", ["list-append", "rw-register"])
def test_bad_micro_ops_are_exit_65_with_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, fragment: str,
        model: str) -> None:
    if model == "rw-register":
        value = value.replace('"append"', '"w"')
    text = ('{"type":"invoke","process":0,"f":"txn","value":[["r","y",null]]}\n'
            '{"type":"ok","process":0,"f":"txn","value":[["r","y",[]]]}\n'
            f'{{"type":"invoke","process":0,"f":"txn","value":{value}}}\n'
            f'{{"type":"ok","process":0,"f":"txn","value":{value}}}\n')
    code, _, err = check(capsys, write(tmp_path, "t.jsonl", text), "--model", model)
    assert code == 65, err
    assert re.match(r"error: .*t\.jsonl:[34]: history does not fit model", err), err
    assert fragment in err


def test_kafka_on_list_append_transactions_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ('{"type":"invoke","process":0,"f":"txn","value":[["append","x",1]]}\n'
            '{"type":"ok","process":0,"f":"txn","value":[["append","x",1]]}\n')
    code, _, err = check(capsys, write(tmp_path, "t.jsonl", text), "--model", "kafka")
    assert code == 65 and ":2: history does not fit model kafka" in err
    text = ('{"type":"invoke","process":0,"f":"send","value":7}\n'
            '{"type":"ok","process":0,"f":"send","value":7}\n')
    code, _, err = check(capsys, write(tmp_path, "s.jsonl", text), "--model", "kafka")
    assert code == 65 and "[key message]" in err


# --- hostile input: a typed error, bounded work ------------------------------------------------

@pytest.mark.parametrize(("name", "text", "line", "fragment"), [
    ("nan.edn", "{:type :invoke, :process 0, :f :read, :time ##NaN}\n", 1, "##NaN"),
    ("nanv.edn", "{:type :invoke, :process 0, :f :read}\n{:type :ok, :process 0, :f :read, "
                 ":value ##NaN}\n", 2, "##NaN"),
    ("inf.edn", "{:type :invoke, :process 0, :f :read, :time ##Inf}\n", 1,
     "'time' must be a finite number"),
    ("big.edn", "{:type :invoke, :process 0, :f :read, :time 1e400}\n", 1,
     "'time' must be a finite number"),
    ("huge.jsonl", '{"type":"invoke","process":0,"f":"read","time":1e400}\n', 1,
     "invalid JSON"),
    ("nan.jsonl", '{"type":"invoke","process":0,"f":"read","time":NaN}\n', 1, "invalid JSON"),
    ("t64.jsonl", '{"type":"invoke","process":0,"f":"read","time":9223372036854775808}\n', 1,
     "does not fit in 64 bits"),
    ("digits.edn", "{:type :invoke, :process 0, :f :read, :value " + "9" * 5000 + "}\n", 1,
     "integer literal of 5000 digits"),
    ("digits.jsonl", '{"type":"invoke","process":0,"f":"read","value":' + "9" * 5000 + "}\n",
     1, "invalid JSON"),
    ("deep.edn", "{:type :ok, :value " + "[" * 100_000 + "]" * 100_000 + "}\n", 1,
     "nest deeper than 100"),
    ("deep.jsonl", '{"type":"ok","value":' + "[" * 100_000 + "]" * 100_000 + "}\n", 1,
     "nest too deeply"),
    ("proc.jsonl", '{"type":"invoke","process":[1],"f":"read"}\n', 1, "'process' must be"),
    ("bool.jsonl", '{"type":"invoke","index":true,"f":"read"}\n', 1, "'index' must be"),
])
def test_hostile_values_are_typed_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, line: int,
        fragment: str) -> None:
    path = write(tmp_path, name, text)
    code, out, err = check(capsys, path, "--model", "register")
    assert code == 65 and out == ""
    assert err.startswith(f"error: {path}:{line}: "), err
    assert fragment in err


def test_a_non_regular_file_is_refused(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(capsys, "/dev/zero", "--model", "register")
    assert code == 65 and "not a regular file" in err
    code, _, err = check(capsys, str(tmp_path), "--model", "register")
    assert code == 65 and "a directory" in err


def test_time_limit_covers_reading_and_building(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rows = []
    for i in range(20_000):
        rows.append(Op(2 * i, "invoke", i % 7, "txn", [["append", i % 50, i], ["r", i % 50, None]],
                       time=2 * i))
        rows.append(Op(2 * i + 1, "ok", i % 7, "txn", [["append", i % 50, i], ["r", i % 50, None]],
                       time=2 * i + 1))
    path = write(tmp_path, "big.jsonl", ops_to_jsonl(rows))
    code, out, _ = check(capsys, path, "--model", "list-append", "--time-limit", "0.001")
    assert code == 2
    assert "time limit ran out" in out


# --- formats -----------------------------------------------------------------------------------

def test_elle_cli_json_arrays_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = [{"type": "invoke", "f": "txn", "value": [["w", "x", 2]], "process": 0, "index": 1},
           {"type": "ok", "f": "txn", "value": [["w", "x", 2]], "process": 0, "index": 2},
           {"type": "invoke", "f": "txn", "value": [["r", "x", None]], "process": 0, "index": 3},
           {"type": "ok", "f": "txn", "value": [["r", "x", 3]], "process": 0, "index": 4}]
    text = "[" + ",\n".join(json.dumps(o) for o in ops) + "]\n"
    path = write(tmp_path, "rw.json", text)
    assert detect_format(text) == "json"
    code, out, _ = check(capsys, path, "--model", "rw-register")
    assert code == 1 and "garbage-read" in out  # 3 was never written (elle-cli's own file)
    ok = text.replace('["r", "x", 3]', '["r", "x", 2]')
    assert check(capsys, write(tmp_path, "ok.json", ok), "--model", "rw-register")[0] == 0
    # an error in the array names the element's line
    bad = text.replace('"type": "ok", "f": "txn", "value": [["r"', '"type": "done", "f": "txn",'
                       ' "value": [["r"')
    code, _, err = check(capsys, write(tmp_path, "bad.json", bad), "--model", "rw-register")
    assert code == 65 and ":4: 'type' must be one of" in err


def test_detection_names_what_it_saw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "h.txt", "\n\nhello world\n")
    code, _, err = check(capsys, path, "--model", "register")
    assert code == 65
    assert f"{path}:3: cannot tell the history format" in err and "'hello world'" in err


def test_same_ops_from_every_format(tmp_path: Path) -> None:
    ops = read_history(write(tmp_path, "h.jsonl", REGISTER))
    arr = "[" + ",".join(REGISTER.splitlines()) + "]"
    assert read_history(write(tmp_path, "h.json", arr)) == ops
    assert read_history(write(tmp_path, "h.edn", ops_to_edn(ops))) == ops


# --- random damage: a verdict or a typed error, nothing else ------------------------------------

def _valid_texts() -> list[tuple[str, str, str]]:
    out = [("h.jsonl", REGISTER, "register")]
    if SUITE.is_dir():
        for rel, model in (("porcupine/set-1.edn", "set"),
                           ("elle/list-append/g1a.edn", "list-append"),
                           ("jepsen/kafka/duplicate.edn", "kafka"),
                           ("knossos/cas-register/good/cas-register-bug.edn", "cas-register")):
            p = SUITE / rel
            if p.exists():
                out.append((p.name, p.read_text()[:4000], model))
    la = [Op(0, "invoke", 0, "txn", [["append", "x", 1], ["r", "y", None]], time=1),
          Op(1, "ok", 0, "txn", [["append", "x", 1], ["r", "y", [2]]], time=2),
          Op(2, "invoke", 1, "txn", [["append", "y", 2], ["r", "x", None]], time=3),
          Op(3, "ok", 1, "txn", [["append", "y", 2], ["r", "x", [1]]], time=4)]
    out.append(("la.jsonl", ops_to_jsonl(la), "list-append"))
    out.append(("la.edn", ops_to_edn(la), "rw-register"))
    return out


VALID = _valid_texts()
_SWAPS = ['"ok"', '"invoke"', "null", "[]", "{}", '"x"', "-1", "1.5", "[[1]]", ":ok", "nil",
          "#{1}", '{"a":1}', "1e400", "##NaN", "true"]


def _damage(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    kind = rng.randrange(6)
    if kind == 0 and text:  # truncate anywhere
        return text[: rng.randrange(len(text))]
    if kind == 1 and lines:  # duplicate a line
        i = rng.randrange(len(lines))
        return "".join([*lines[: i + 1], lines[i], *lines[i + 1:]])
    if kind == 2 and lines:  # drop a line
        i = rng.randrange(len(lines))
        return "".join(lines[:i] + lines[i + 1:])
    if kind == 3 and lines:  # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    tokens = re.split(r"([\s,:{}\[\]]+)", text)  # change a value's type
    if len(tokens) > 1:
        i = rng.randrange(0, len(tokens), 2)
        tokens[i] = rng.choice(_SWAPS)
    return "".join(tokens)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.sampled_from(range(len(VALID))), st.integers(0, 2**32), st.integers(1, 3))
def test_random_damage_gives_a_verdict_or_a_typed_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], which: int, seed: int,
        rounds: int) -> None:
    name, text, model = VALID[which]
    rng = random.Random(seed)
    for _ in range(rounds):
        text = _damage(text, rng)
    path = write(tmp_path, name, text)
    code, out, err = check(capsys, path, "--model", model, "--time-limit", "20")
    assert code in (0, 1, 2, 65), (code, err)
    if code == 65:
        assert err.startswith(f"error: {path}:") and err.count("\n") == 1, err
    else:
        assert out.split(":")[0] in ("VALID", "INVALID", "UNKNOWN"), out
