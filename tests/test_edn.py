"""EDN reader/writer: values, Jepsen histories, round trips and errors with lines."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfhood.checkers.edn import edn_to_ops, ops_to_edn, parse_edn, read_edn_ops
from selfhood.checkers.history import Op
from selfhood.errors import HistoryError

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"


def test_scalars_and_collections() -> None:
    forms = parse_edn(
        '; a comment\n{:a "x\\n\\"y\\u0041", :b #{1 [2 3]}, :c #inst "2020-01-01",'
        " :d [1 2.5 -3 +4 1/2 7N 1.5M 1e3 nil true false sym], :e (1 (2)), :f {:g {:h :i}}}"
        " #_ [discarded] 42 \\a"
    )
    assert forms == [
        {
            "a": 'x\n"yA',
            "b": frozenset({1, (2, 3)}),
            "c": "2020-01-01",
            "d": [1, 2.5, -3, 4, 0.5, 7, 1.5, 1000.0, None, True, False, "sym"],
            "e": [1, [2]],
            "f": {"g": {"h": "i"}},
        },
        42,
        "a",
    ]


@pytest.mark.parametrize("tail", ["; {:type :ok, :f :read}", "; {:type :ok, :f :read}\n",
                                  ";; two\n; comments\n\n"])
def test_a_comment_on_the_last_line_is_no_data(tail: str) -> None:
    text = "{:type :invoke, :process 0, :f :write, :value 1}\n" + tail
    assert parse_edn(text) == [{"type": "invoke", "process": 0, "f": "write", "value": 1}]
    assert parse_edn(tail) == []


def test_special_floats_and_vector_keys() -> None:
    (m,) = parse_edn("{[1 2] ##Inf, :n ##-Inf}")
    assert m[(1, 2)] == math.inf
    assert m["n"] == -math.inf
    with pytest.raises(HistoryError, match="##NaN is no usable value"):
        parse_edn("{:time 1}\n{:value ##NaN}")


def test_one_vector_or_one_map_per_line_give_the_same_ops() -> None:
    lines = (
        "{:index 0, :type :invoke, :process 1, :f :txn, :value [[:append 1 2] [:r 1 nil]]}\n"
        "{:index 1, :type :ok, :process 1, :f :txn, :value [[:append 1 2] [:r 1 [2]]]}\n"
    )
    vec = "[" + lines + "]"
    a = edn_to_ops(parse_edn(lines))
    b = edn_to_ops(parse_edn(vec))
    assert a == b
    assert a[1].value == [["append", 1, 2], ["r", 1, [2]]]
    assert a[1].type == "ok" and a[1].f == "txn" and a[1].process == 1


def test_missing_keys_are_tolerated() -> None:
    ops = read_edn_ops("{:type :invoke :value [[:r 1 nil]]}\n{:type :ok :value [[:r 1 []]]}")
    assert [o.index for o in ops] == [0, 1]
    assert ops[0].process is None and ops[0].f is None and ops[0].time is None
    assert ops[1].value == [["r", 1, []]]


def test_extra_keys_are_kept_and_written_back() -> None:
    ops = read_edn_ops('{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}')
    assert ops[0].extra == {"key": "0"}
    assert ops[0].value == "x 0 0 y"
    assert read_edn_ops(ops_to_edn(ops)) == ops


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("{:type :ok}\n{:type :ok\n", 2, "never closed"),
        ("[1 2}", 1, "closes"),
        ('{:type :ok}\n\n"abc', 3, "unterminated string"),
        ("{:a}", 1, "odd number"),
        ("\n\n ]", 3, "unexpected"),
        ("{:type :ok}\n{:type :oops}", 2, "'type' must be"),
        ("{:type :ok :index \"a\"}", 1, "'index' must be"),
        ("{:type :ok}\n 12x", 2, "malformed number"),
        ("#_", 1, "no form after"),
        ('"\\q"', 1, "escape"),
        ("{:type :ok}\n[1 2]", 2, "expected an op map"),
    ],
)
def test_malformed_input_names_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(HistoryError) as err:
        read_edn_ops(text, path="h.edn")
    assert err.value.line == line
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"h.edn:{line}:")


def test_peer_files_parse() -> None:
    for name, n in [("si-without-g-single.edn", 8), ("paper-example.edn", 8),
                    ("huge-scc.edn", 20602)]:
        ops = read_edn_ops((PEERS / "elle" / name).read_text(), path=name)
        assert len(ops) == n
    paper = read_edn_ops((PEERS / "elle" / "paper-example.edn").read_text())
    assert paper[1].process is None and paper[1].f is None
    assert paper[3].value == [["append", 255, 8], ["r", 253, [1, 3, 4]]]


def test_huge_scc_last_op_keeps_its_error() -> None:
    # parse speed is measured in bench/bench_txn.py, not asserted here
    ops = read_edn_ops((PEERS / "elle" / "huge-scc.edn").read_text())
    assert ops[-1].type == "fail"
    assert ops[-1].error == ["no-client", "Connection refused"]


def test_kv_peer_file_parses() -> None:
    ops = read_edn_ops((PEERS / "porcupine" / "kv" / "c01-ok.txt").read_text())
    assert ops[0].f == "append" and ops[0].extra["key"] == "0"


_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False), st.text(max_size=8),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=12,
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["invoke", "ok", "fail", "info"]),
            st.one_of(st.none(), st.integers(0, 50)),
            st.one_of(st.none(), st.sampled_from(["txn", "read", "write", "cas"])),
            _value,
            st.one_of(st.none(), st.integers(0, 10**12)),
        ),
        max_size=6,
    )
)
def test_writer_round_trips(
    rows: list[tuple[str, int | None, str | None, object, int | None]],
) -> None:
    ops = [Op(index=i, type=t, process=p, f=f, value=v, time=tm)  # type: ignore[arg-type]
           for i, (t, p, f, v, tm) in enumerate(rows)]
    back = read_edn_ops(ops_to_edn(ops))
    assert back == ops


def test_txn_values_round_trip_with_keyword_micro_ops() -> None:
    op = Op(index=0, type="ok", process=3, f="txn",
            value=[["append", 1, 2], ["r", 1, [1, 2]], ["w", "k", None]])
    text = ops_to_edn([op])
    assert "[:append 1 2]" in text and "[:r 1 [1 2]]" in text and '[:w "k" nil]' in text
    assert read_edn_ops(text) == [op]


# --- the fast path reads exactly what the general reader reads -----------------------------

_atom_text = st.one_of(
    st.integers(-10**20, 10**20).map(str), st.sampled_from(
        ["nil", "true", "false", ":r", ":append", ":type", ":ok", "sym", "1.5", "-0", "+3",
         "7N", "1.5M", "1/2", "##Inf", "#inst \"2020\"", "#_ 5", "\\a", "\"s t\"", "\"q\\\"\"",
         "\"a;b\"", "\"\"", "12x", ":", "#{1 2}", "#{}", "()", "{}"]))


def _edn_text(draw: st.DrawFn) -> str:
    def form(depth: int) -> str:
        if depth > 3 or draw(st.booleans()):
            return draw(_atom_text)
        kind = draw(st.sampled_from(["[", "(", "{", "#{"]))
        items = [form(depth + 1) for _ in range(draw(st.integers(0, 4)))]
        close = {"[": "]", "(": ")", "{": "}", "#{": "}"}[kind]
        sep = draw(st.sampled_from([" ", ", ", "\n", "  ; c\n"]))
        return kind + sep.join(items) + close
    head = draw(st.sampled_from(["", "; header \"quoted\"\n", ";; a\n;b\n"]))
    return head + "\n".join(form(0) for _ in range(draw(st.integers(0, 4))))


@given(st.composite(_edn_text)())
def test_fast_and_general_readers_agree(text: str) -> None:
    from selfhood.checkers import edn

    try:
        general: object = edn._parse_with_starts(text, None)[0]
    except HistoryError as exc:
        general = ("error", exc.line)
    try:
        fast: object = edn._fast_forms(text)
    except edn._NotFast:
        fast = general  # the general reader handles it: nothing to compare
    assert repr(fast) == repr(general)
    got: object
    try:
        got = parse_edn(text)
    except HistoryError as exc:
        got = ("error", exc.line)
    assert repr(got) == repr(general)


# --- the JSON route reads exactly what the general reader reads, or stands aside ----------

_plain_atom = st.sampled_from(
    ["nil", "true", "false", ":r", ":append", ":ok", ":nil", "0", "-7", "1.5", str(2**63),
     '"n1"', '"a, :b c"', '"{:a 1}"'])
_odd_atom = st.sampled_from(
    [":a:b", "::a", ":", "null", "nilx", "sym", "+3", "7N", "1.", "1e400", "12x", "01",
     str(10**30), '""', '"x\ny"', '"t\tu"'])


def _op_value(draw: st.DrawFn, canonical: bool, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(_plain_atom if canonical or draw(st.integers(0, 2)) else _odd_atom)
    open_, close = ("[", "]") if canonical or draw(st.booleans()) else draw(
        st.sampled_from([("{", "}"), ("#{", "}")]))
    sep = " " if canonical else draw(st.sampled_from([" ", ", ", ",", "  ", "\n"]))
    items = [_op_value(draw, canonical, depth + 1) for _ in range(draw(st.integers(0, 4)))]
    return open_ + sep.join(items) + close


_FIELD_VALUES = {":process": ["0", "12", ":nemesis", "nil"], ":f": [":txn", ":read", "nil"],
                 ":time": ["0", "-5", "123456789"], ":node": ['"n1"', "nil"]}


def _op_history(draw: st.DrawFn) -> str:
    """Op maps one per line as Clojure prints them, now and then with something odd."""
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        canonical = draw(st.integers(0, 3)) > 0
        keys = draw(st.lists(st.sampled_from(
            [":index", ":process", ":f", ":value", ":time", ":node", ":error"] + (
                [] if canonical else [":x", '"type"', "7", ":type"])), max_size=6, unique=True))
        keys = [":type", *keys] if canonical or draw(st.booleans()) else keys
        entries = []
        for k in keys:
            if k == ":type":
                v = draw(st.sampled_from([":invoke", ":ok", ":fail", ":info"] + (
                    [] if canonical else [":bad", "nil"])))
            elif k == ":index":
                v = str(len(lines)) if canonical else draw(st.sampled_from(["-1", "nil", ":a"]))
            elif canonical and k in _FIELD_VALUES:
                v = draw(st.sampled_from(_FIELD_VALUES[k]))
            else:
                v = _op_value(draw, canonical)
            entries.append(k + (" " if canonical else draw(st.sampled_from([" ", "  ", ","])))
                           + v)
        sep = ", " if canonical else draw(st.sampled_from([", ", " ", ",", ",\n"]))
        lines.append("{" + sep.join(entries) + "}")
    between = draw(st.sampled_from(["\n", "\n", " ", "\n\n"]))
    return draw(st.sampled_from(["", "\n"])) + between.join(lines) + draw(
        st.sampled_from(["", "\n"]))


def _general_ops(text: str) -> object:
    from selfhood.checkers import edn

    try:
        return edn_to_ops(edn._parse_with_starts(text, None)[0])
    except HistoryError:
        return "error"


@given(st.composite(_op_history)())
def test_json_route_and_general_reader_agree(text: str) -> None:
    from selfhood.checkers import edn

    try:
        fast: object = edn._json_ops(text)
    except edn._NotFast:
        return  # the other readers take it
    assert repr(fast) == repr(_general_ops(text))


@pytest.mark.parametrize("text", [
    "{:type :ok, :value [:a,5]}",            # an EDN comma inside a vector
    "{:type :ok, :value [:a :b]}",           # a keyword before ']'
    "{:type :ok, :process :nemesis}",        # a keyword before '}'
    "{:type :ok, :value [1 :]}",             # a lone ':'
    "{:type :ok, :value null}",              # a symbol JSON would read as nil
    "{:type :ok, :value [:a\n:b]}",          # a keyword before a newline
    "{:type :ok, :value :a:b}",              # a colon inside a keyword
    "{:type :ok, :value {:a 1}}",            # a map inside a value
    "{:type :ok, :value [1 2], :node \"n1\"}",
    "{:type :ok, :value " + "[" * 150 + "]" * 150 + "}",
    "{:type :ok, :value " + "[" * 60 + "\n" + "]" * 60 + "}",
    "{:type :ok, :value 123456789012345678901234567890}",
    "{:type :ok, :value [:r 1 nil], :x 1}",  # an extra key
    "{:type :ok :value 1}",                  # entries without the comma
])
def test_json_route_edge_cases_read_as_the_general_reader_does(text: str) -> None:
    try:
        got: object = read_edn_ops(text)
    except HistoryError:
        got = "error"
    assert repr(got) == repr(_general_ops(text))
