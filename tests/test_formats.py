"""History formats: JSONL, Jepsen EDN and Jepsen log lines in; JSONL and EDN out.

Round trips must preserve every op, detection must pick the right reader,
and malformed input must raise HistoryError naming the line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfhood.checkers.formats import (
    detect_format,
    ops_to_jsonl,
    parse_history,
    parse_jepsen_log,
    parse_jsonl,
    read_history,
    write_edn,
    write_jsonl,
)
from selfhood.checkers.history import Op, pair_ops
from selfhood.errors import HistoryError

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"

LOG = (
    "2016-01-01 INFO  jepsen.core - Running test\n"
    "INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]\n"
    "INFO  jepsen.util - 1   :invoke :write  4\n"
    "INFO  jepsen.util - 3\t:fail\t:cas\t[3 0]\n"
    "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 0\t:fail\t:read\t:timed-out\n"
    "INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n"
    "INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n"
    "java.lang.Exception: something went wrong\n"
)


def test_jepsen_log_lines() -> None:
    ops = parse_jepsen_log(LOG)
    assert [(o.process, o.type, o.f, o.value, o.error) for o in ops] == [
        (3, "invoke", "cas", [3, 0], None),
        (1, "invoke", "write", 4, None),
        (3, "fail", "cas", [3, 0], None),
        (0, "invoke", "read", None, None),
        (0, "fail", "read", None, "timed-out"),
        (1, "info", "write", None, "timed-out"),
        ("nemesis", "info", "start", None, None),
    ]
    assert [o.index for o in ops] == list(range(7))
    assert ops[0].extra["line"] == 2  # explanations can point at the log line
    assert detect_format(LOG) == "jepsen-log"


def test_jepsen_log_bad_value_names_the_line() -> None:
    with pytest.raises(HistoryError, match=r"^x\.log:3:"):
        parse_jepsen_log("INFO  jepsen.util - 1\t:invoke\t:write\t1\n"
                         "INFO  jepsen.util - 1\t:ok\t:write\t1\n"
                         "INFO  jepsen.util - 2\t:invoke\t:cas\t[1 2\n", path="x.log")


def test_jsonl_reader_tolerates_absent_keys() -> None:
    ops = parse_jsonl('{"type": "invoke", "f": "read"}\n\n{"type": "ok", "value": 3}\n')
    assert [(o.index, o.type, o.f, o.value, o.process, o.time) for o in ops] == [
        (0, "invoke", "read", None, None, None), (1, "ok", None, 3, None, None)]


@pytest.mark.parametrize(("text", "line", "message"), [
    ('{"type": "invoke"}\n{"type": "ok", \n', 2, "invalid JSON"),
    ('{"type": "invoke"}\n\n[1, 2]\n', 3, "expected a JSON object"),
    ('{"type": "done"}\n', 1, "'type' must be one of"),
    ('{"type": "ok", "index": "7"}\n', 1, "'index' must be a non-negative integer"),
    ('{"type": "ok", "time": "noon"}\n', 1, "'time' must be a finite number"),
])
def test_malformed_jsonl_names_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(HistoryError, match=message) as err:
        parse_jsonl(text, path="h.jsonl")
    assert err.value.line == line
    assert str(err.value).startswith(f"h.jsonl:{line}:")


def test_detect_format() -> None:
    assert detect_format('\n{"type": "invoke", "f": "read"}\n') == "jsonl"
    assert detect_format("{:type :invoke, :f :read}\n") == "edn"
    assert detect_format("; a comment\n{:type :ok}\n") == "edn"
    assert detect_format("[{:type :ok}]") == "edn"
    assert detect_format("\n  \n") == "jsonl" and parse_history("\n") == []
    with pytest.raises(HistoryError):
        detect_format("hello world\n")
    with pytest.raises(HistoryError, match="unknown history format"):
        parse_history("{}", "yaml")


def _sample() -> list[Op]:
    return [
        Op(0, "invoke", 0, "txn", [["append", "x", 1], ["r", "y", None]], time=10,
           node="n1", instance="i-1"),
        Op(1, "ok", 0, "txn", [["append", "x", 1], ["r", "y", [1, 2]]], time=25, node="n1",
           instance="i-1"),
        Op(2, "invoke", 1, "cas", [3, 4], time=30),
        Op(3, "info", 1, "cas", [3, 4], time=90, error="timed-out"),
        Op(4, "invoke", 2, "read", None, time=91, extra={"key": "k 1"}),
        Op(5, "ok", 2, "read", "a \"quoted\"\nvalue", time=95, extra={"key": "k 1"}),
    ]


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_jsonl(_sample(), path)
    assert read_history(path) == _sample()
    assert read_history(path, "jsonl") == _sample()


def test_edn_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    write_edn(_sample(), path)
    text = path.read_text()
    assert ":type :invoke" in text and "[:append" in text
    assert detect_format(text) == "edn"
    assert read_history(path) == _sample()


_values = st.recursive(
    st.none() | st.integers(-10**12, 10**12) | st.text(max_size=8) | st.booleans(),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)


@given(st.lists(st.tuples(st.sampled_from(["invoke", "ok", "fail", "info"]),
                          st.integers(0, 5), st.sampled_from(["read", "write", "cas"]),
                          _values, st.none() | st.integers(0, 10**15)), max_size=12))
def test_round_trips_preserve_every_op(rows: list[tuple[str, int, str, object, int | None]]
                                       ) -> None:
    ops = [Op(i, typ, p, f, v, time=t) for i, (typ, p, f, v, t)  # type: ignore[arg-type]
           in enumerate(rows)]
    assert parse_history(ops_to_jsonl(ops), "jsonl") == ops
    from selfhood.checkers.edn import ops_to_edn
    assert parse_history(ops_to_edn(ops), "edn") == ops


def test_read_history_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot read history"):
        read_history(tmp_path / "missing.jsonl")
    bad = tmp_path / "bin.jsonl"
    bad.write_bytes(b'{"type": "ok"}\n\xff\xfe\n')
    with pytest.raises(HistoryError, match="not UTF-8") as err:
        read_history(bad)
    assert err.value.line == 2
    edn = tmp_path / "bad.edn"
    edn.write_text("{:type :invoke, :f :read}\n{:type :ok, :f :read\n")
    with pytest.raises(HistoryError) as err:
        read_history(edn)
    assert err.value.line is not None


def test_peer_files_read_in_place() -> None:
    etcd = read_history(PEERS / "porcupine" / "jepsen" / "etcd_000.log")
    assert len(etcd) == 170 and etcd[0].f == "read"
    kv = read_history(PEERS / "porcupine" / "kv" / "c01-ok.txt")
    assert kv[0].extra["key"] == "0" and kv[0].f == "append"
    assert all(p.completion is not None for p in pair_ops(kv))
    paper = read_history(PEERS / "elle" / "paper-example.edn")
    assert paper and all(op.type in ("invoke", "ok", "fail", "info") for op in paper)


# --- the bulk readers decode in pieces of whole lines: the seams change nothing ---------

_piece_line = st.sampled_from([
    '{"index":0,"type":"invoke","process":1,"f":"txn","value":[["r",1,null]]}',
    '{"type":"ok","process":1,"f":"txn","value":[["r",1,[1,2]],["append",2,3]],"time":5}',
    '{"type":"info","process":"nemesis","value":null}', "", " ", '{"type":"ok","x":1}',
    '{"type":"bad"}', "[1]", '{"type":"ok","value":"a\u2028b"}'])


@given(st.lists(_piece_line, max_size=12), st.integers(1, 200),
       st.sampled_from(["\n", "\r\n"]))
def test_jsonl_pieces_read_as_line_by_line(lines: list[str], piece: int, end: str) -> None:
    from selfhood.checkers import formats

    text = end.join(lines)
    saved = formats._PIECE
    try:
        formats._PIECE = piece
        fast = formats._jsonl_fast(text)
    finally:
        formats._PIECE = saved
    try:
        # a blank first line sends it down the per-line path
        slow: object = formats._jsonl_ops("\n" + text, None, None)[0]
    except HistoryError:
        slow = "error"
    if fast is not None:  # else the per-line path reads it: nothing to compare
        assert repr(fast) == repr(slow)


def test_edn_pieces_read_as_one_text() -> None:
    from selfhood.checkers import edn

    ops = [Op(i, "ok" if i % 2 else "invoke", i % 3, "txn", [["append", i, i], ["r", i, [1, i]]],
              time=i, node="n1" if i % 5 == 0 else None) for i in range(300)]
    text = edn.ops_to_edn(ops)
    unindexed = re.sub(r":index \d+, ", "", text)  # positions stand in for indices
    assert ":index" not in unindexed
    saved = edn._PIECE
    try:
        for piece in (1, 7, 100, 1 << 15):
            edn._PIECE = piece
            assert edn._json_ops(text) == ops
            assert edn._json_ops(unindexed) == ops
    finally:
        edn._PIECE = saved
