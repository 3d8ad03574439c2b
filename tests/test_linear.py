"""The Porcupine-class checker in both directions, on hand-built and generated histories.

Hand-built: valid and invalid histories per model, the stale read that is
sequentially consistent but not linearizable, indeterminate ops, keyed
registers, the store-buffer history that shows sequential consistency is not
local, and the time limit. Generated (hypothesis): histories produced by
running a real register under random concurrency and crashes are always
valid; replacing one read with a value nobody wrote is always caught; and on
small random histories a brute-force oracle agrees with the search.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfhood.checkers.history import Op, Pair, pair_ops
from selfhood.checkers.linear import check_linearizable
from selfhood.errors import CheckerError, SpecError
from selfhood.strategies import histories

Row = tuple[Any, str, str, Any] | tuple[Any, str, str, Any, dict[str, Any]]


def history(*rows: Row, error: dict[int, Any] | None = None) -> list[Op]:
    """Rows of (process, type, f, value[, extra]) in history order."""
    ops = []
    for i, row in enumerate(rows):
        extra = row[4] if len(row) == 5 else {}
        ops.append(Op(index=i, type=row[1], process=row[0], f=row[2],  # type: ignore[arg-type]
                      value=row[3], error=(error or {}).get(i), extra=dict(extra)))
    return ops


def both(ops: list[Op], model: str = "register") -> tuple[Any, Any]:
    lin = check_linearizable(ops, model).valid
    seq = check_linearizable(ops, model, consistency="sequential").valid
    return lin, seq


# --- register -------------------------------------------------------------------------------


def test_valid_register_history_passes() -> None:
    ops = history((0, "invoke", "write", 1), (1, "invoke", "read", None),
                  (1, "ok", "read", None), (0, "ok", "write", 1),
                  (1, "invoke", "read", None), (1, "ok", "read", 1),
                  (0, "invoke", "write", 2), (0, "ok", "write", 2))
    result = check_linearizable(ops, "register")
    assert result.valid is True
    assert result.anomalies == {} and result.not_ == set()
    assert both(ops) == (True, True)


def test_read_of_a_value_never_written_is_neither_linearizable_nor_sequential() -> None:
    ops = history((0, "invoke", "write", 1), (0, "ok", "write", 1),
                  (1, "invoke", "read", None), (1, "ok", "read", 7))
    lin = check_linearizable(ops, "register")
    seq = check_linearizable(ops, "register", consistency="sequential")
    assert lin.valid is False and lin.anomaly_types == ["nonlinearizable"]
    assert seq.valid is False and seq.anomaly_types == ["nonsequential"]
    assert lin.not_ == {"linearizable"}
    assert seq.not_ == {"sequential", "linearizable"}


def test_stale_read_after_completed_write_is_sequential_but_not_linearizable() -> None:
    # p0's write of 1 completes; afterwards p1 still reads the initial nil.
    ops = history((0, "invoke", "write", 1), (0, "ok", "write", 1),
                  (1, "invoke", "read", None), (1, "ok", "read", None))
    lin = check_linearizable(ops, "register")
    assert lin.valid is False
    assert both(ops) == (False, True)
    explanation = lin.anomalies["nonlinearizable"][0]
    assert "op 2" in explanation and "read → nil" in explanation
    stuck = lin.details["linearizable"]["stuck"]
    # the write may not go first: it would overwrite nil, which the read still needs
    assert stuck["states"] == ["nil"]
    assert [p["op"] for p in stuck["pending"]] == [0]
    assert "overwrites nil" in stuck["pending"][0]["reason"]


def test_stuck_point_names_the_read_that_cannot_be_placed() -> None:
    ops = history((0, "invoke", "write", 1), (0, "ok", "write", 1),
                  (1, "invoke", "read", None), (1, "ok", "read", 7))
    stuck = check_linearizable(ops, "register").details["linearizable"]["stuck"]
    assert stuck["linearized"] == 1 and stuck["prefix"] == [0] and stuck["states"] == ["1"]
    assert [p["op"] for p in stuck["pending"]] == [2]
    assert stuck["pending"][0]["reason"].startswith("impossible in every state reached")


def test_stale_read_on_the_same_process_breaks_program_order() -> None:
    ops = history((0, "invoke", "write", 1), (0, "ok", "write", 1),
                  (0, "invoke", "read", None), (0, "ok", "read", None))
    assert both(ops) == (False, False)


def test_concurrent_read_may_see_old_or_new_value() -> None:
    for seen in (None, 1):
        ops = history((0, "invoke", "write", 1), (1, "invoke", "read", None),
                      (1, "ok", "read", seen), (0, "ok", "write", 1))
        assert both(ops) == (True, True)


def test_read_cannot_go_back_in_time() -> None:
    ops = history((0, "invoke", "write", 1), (0, "ok", "write", 1),
                  (0, "invoke", "write", 2), (0, "ok", "write", 2),
                  (1, "invoke", "read", None), (1, "ok", "read", 2),
                  (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert both(ops) == (False, False)


# --- indeterminate ops -------------------------------------------------------------------------


@pytest.mark.parametrize("completion", ["info", "dangling", "timed-out"])
def test_indeterminate_write_may_take_effect_later_or_never(completion: str) -> None:
    def with_write(*rest: Row) -> list[Op]:
        rows: list[Row] = [(0, "invoke", "write", 1)]
        err: dict[int, Any] = {}
        if completion == "info":
            rows.append((0, "info", "write", 1))
        elif completion == "timed-out":
            rows.append((0, "fail", "write", 1))
            err[1] = "timed-out"
        return history(*rows, *rest, error=err)

    # it took effect long after its invocation ...
    assert both(with_write((1, "invoke", "read", None), (1, "ok", "read", None),
                           (1, "invoke", "read", None), (1, "ok", "read", 1)), "register") \
        == (True, True)
    # ... or never
    assert both(with_write((1, "invoke", "read", None), (1, "ok", "read", None))) == (True, True)
    # but once seen it cannot be unseen
    assert both(with_write((1, "invoke", "read", None), (1, "ok", "read", 1),
                           (1, "invoke", "read", None), (1, "ok", "read", None))) \
        == (False, False)


def test_failed_write_had_no_effect() -> None:
    ops = history((0, "invoke", "write", 1), (0, "fail", "write", 1),
                  (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert both(ops) == (False, False)


def test_indeterminate_op_in_sequential_mode_does_not_bind_later_ops_of_its_process() -> None:
    # p0's write of 1 is unknown; p0 then writes 2; p1 reads 2 then 1: the
    # unknown write may land after the later one (it was still in flight).
    ops = history((0, "invoke", "write", 1), (0, "info", "write", 1),
                  (0, "invoke", "write", 2), (0, "ok", "write", 2),
                  (1, "invoke", "read", None), (1, "ok", "read", 2),
                  (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert both(ops) == (True, True)


# --- cas-register (etcd semantics) --------------------------------------------------------------


def test_cas_register_ok_and_observed_mismatch() -> None:
    ok = history((0, "invoke", "write", 0), (0, "ok", "write", 0),
                 (1, "invoke", "cas", [0, 1]), (1, "ok", "cas", [0, 1]),
                 (2, "invoke", "cas", [0, 5]), (2, "fail", "cas", [0, 5]),
                 (0, "invoke", "read", None), (0, "ok", "read", 1))
    assert both(ok, "cas-register") == (True, True)
    # a :fail :cas is an observed mismatch, not a dropped op: here the register did hold 0
    bad = history((0, "invoke", "write", 0), (0, "ok", "write", 0),
                  (1, "invoke", "cas", [0, 1]), (1, "fail", "cas", [0, 1]))
    assert both(bad, "cas-register") == (False, True)  # sequentially, the cas may go first
    same_process = history((0, "invoke", "write", 0), (0, "ok", "write", 0),
                           (0, "invoke", "cas", [0, 1]), (0, "fail", "cas", [0, 1]))
    assert both(same_process, "cas-register") == (False, False)
    # the same failure with an error (refused, no compare happened) is simply no effect
    refused = history((0, "invoke", "write", 0), (0, "ok", "write", 0),
                      (1, "invoke", "cas", [0, 1]), (1, "fail", "cas", [0, 1]),
                      error={3: "unavailable"})
    assert both(refused, "cas-register") == (True, True)


def test_cas_that_succeeded_on_a_wrong_value_is_caught() -> None:
    ops = history((0, "invoke", "write", 3), (0, "ok", "write", 3),
                  (1, "invoke", "cas", [2, 4]), (1, "ok", "cas", [2, 4]))
    lin = check_linearizable(ops, "cas-register")
    assert lin.valid is False
    assert "cas 2→4 → ok" in lin.anomalies["nonlinearizable"][0]


def test_register_model_rejects_cas() -> None:
    ops = history((0, "invoke", "cas", [0, 1]), (0, "ok", "cas", [0, 1]))
    with pytest.raises(CheckerError, match="no operation 'cas'"):
        check_linearizable(ops, "register")


def test_unknown_model_or_consistency_is_a_spec_error() -> None:
    with pytest.raises(SpecError):
        check_linearizable([], "queue")
    with pytest.raises(SpecError):
        check_linearizable([], "register", consistency="causal")


# --- keyed registers, kv and set ------------------------------------------------------------------


def test_keyed_registers_are_independent_and_the_failing_key_is_named() -> None:
    ops = history((0, "invoke", "write", ["x", 1]), (0, "ok", "write", ["x", 1]),
                  (1, "invoke", "read", ["y", None]), (1, "ok", "read", ["y", None]),
                  (1, "invoke", "read", ["x", None]), (1, "ok", "read", ["x", 1]),
                  (2, "invoke", "cas", ["x", [1, 2]]), (2, "ok", "cas", ["x", [1, 2]]))
    result = check_linearizable(ops, "cas-register")
    assert result.valid is True
    assert result.details["linearizable"]["partitions"] == 2
    bad = [*ops, *history((1, "invoke", "read", ["y", None]), (1, "ok", "read", ["y", 9]))]
    result = check_linearizable(bad, "cas-register")
    assert result.valid is False
    assert result.details["linearizable"]["failed_partition"] == "'y'"
    assert "for key 'y'" in result.anomalies["nonlinearizable"][0]


def test_sequential_consistency_is_not_local() -> None:
    # The store-buffer shape: each key alone is sequentially consistent, the
    # whole history is not (both reads miss the other process's earlier write).
    ops = history((0, "invoke", "write", ["x", 1]), (1, "invoke", "write", ["y", 1]),
                  (0, "ok", "write", ["x", 1]), (1, "ok", "write", ["y", 1]),
                  (0, "invoke", "read", ["y", None]), (1, "invoke", "read", ["x", None]),
                  (0, "ok", "read", ["y", None]), (1, "ok", "read", ["x", None]))
    for key in ("x", "y"):
        one = [op for op in ops if op.value[0] == key]
        assert check_linearizable(one, "register", consistency="sequential").valid is True
    assert check_linearizable(ops, "register", consistency="sequential").valid is False


def test_kv_append_semantics_like_porcupine() -> None:
    k = {"key": "a"}
    ops = history((0, "invoke", "append", "x", k), (1, "invoke", "append", "y", k),
                  (0, "ok", "append", "x", k), (1, "ok", "append", "y", k),
                  (2, "invoke", "get", None, k), (2, "ok", "get", "yx", k),
                  (2, "invoke", "put", "z", k), (2, "ok", "put", "z", k),
                  (2, "invoke", "get", None, {"key": "b"}), (2, "ok", "get", "", {"key": "b"}))
    assert both(ops, "kv") == (True, True)
    bad = [*ops, *history((0, "invoke", "get", None, k), (0, "ok", "get", "yxz", k))]
    assert both(bad, "kv") == (False, False)


def test_set_add_and_read() -> None:
    ops = history((0, "invoke", "add", 1), (1, "invoke", "add", 2),
                  (0, "ok", "add", 1), (2, "invoke", "read", None),
                  (2, "ok", "read", [1]), (1, "ok", "add", 2),
                  (2, "invoke", "read", None), (2, "ok", "read", [2, 1]))
    assert both(ops, "set") == (True, True)
    lost = [*ops, *history((0, "invoke", "read", None), (0, "ok", "read", [2]))]
    assert both(lost, "set") == (False, False)


def test_a_set_read_holding_an_element_twice_is_no_set_state() -> None:
    ops = history((0, "invoke", "add", 1), (0, "ok", "add", 1),
                  (1, "invoke", "read", None), (1, "ok", "read", [1, 1]))
    assert both(ops, "set") == (False, False)
    once = [*ops[:2], *history((1, "invoke", "read", None), (1, "ok", "read", [1]))]
    assert both(once, "set") == (True, True)


def test_nemesis_ops_are_ignored() -> None:
    ops = history(("nemesis", "info", "start-partition", None),
                  (0, "invoke", "write", 1), (0, "ok", "write", 1),
                  ("nemesis", "info", "stop-partition", "healed"))
    assert check_linearizable(ops, "register").valid is True


# --- time limit ---------------------------------------------------------------------------


def _hopeless(writers: int, key: Any = None) -> list[Op]:
    """Concurrent writes of 0..n-1, then one process reads 3 and then 5: not
    linearizable, but only after trying every subset of the other writes
    (both 3 and 5 would have to be written last)."""
    def v(x: Any) -> Any:
        return x if key is None else [key, x]
    rows: list[Row] = [(p, "invoke", "write", v(p)) for p in range(writers)]
    rows += [(p, "ok", "write", v(p)) for p in range(writers)]
    rows += [(99, "invoke", "read", v(None)), (99, "ok", "read", v(3)),
             (99, "invoke", "read", v(None)), (99, "ok", "read", v(5))]
    return history(*rows)


def _long_valid(n: int) -> list[Op]:
    rows: list[Row] = []
    for i in range(n):
        rows += [(i % 3, "invoke", "write", i), (i % 3, "ok", "write", i)]
    return history(*rows)


def test_time_limit_gives_unknown_never_a_guess() -> None:
    result = check_linearizable(_hopeless(26), "register", time_limit_s=0.2)
    assert result.valid == "unknown"
    assert result.anomalies == {}
    assert result.unknown_reasons and "time limit" in result.unknown_reasons[0]
    assert result.details["linearizable"]["unknown_partitions"] == ["nil"]
    # any search stops at its first slice once the limit has passed
    long = _long_valid(3000)
    for consistency in ("linearizable", "sequential"):
        r = check_linearizable(long, "register", consistency=consistency, time_limit_s=1e-9)
        assert r.valid == "unknown", consistency
        assert r.anomalies == {}


def test_without_the_limit_the_same_shapes_are_decided() -> None:
    assert check_linearizable(_hopeless(8), "register").valid is False
    # sequentially it is fine: the reader may run before the other writes
    assert check_linearizable(_hopeless(8), "register", consistency="sequential").valid is True
    assert both(_long_valid(3000)) == (True, True)


def test_time_limit_keeps_an_illegal_partition_found_elsewhere() -> None:
    # one hopeless key plus one cheaply illegal key: invalid beats unknown
    easy = history((50, "invoke", "write", ["e", 1]), (50, "ok", "write", ["e", 1]),
                   (51, "invoke", "read", ["e", None]), (51, "ok", "read", ["e", 2]))
    result = check_linearizable(_hopeless(26, "h") + easy, "register", time_limit_s=5)
    assert result.valid is False
    assert result.details["linearizable"]["failed_partition"] == "'e'"


# --- generated histories ------------------------------------------------------------------


@st.composite
def executed_histories(draw: st.DrawFn, max_ops: int = 14) -> list[Op]:
    """Run clients against a real cas-register: each op takes effect at one
    moment between its invocation and completion; a crashed op (info) may or
    may not have taken effect, and its process never returns."""
    n_proc = draw(st.integers(1, 4))
    n_ops = draw(st.integers(1, max_ops))
    register: Any = None
    ops: list[Op] = []
    phase: dict[int, tuple[str, Any, str]] = {}  # process -> (f, value, stage)
    alive = list(range(n_proc))
    started = 0

    def emit(p: int, typ: str, f: str, v: Any) -> None:
        ops.append(Op(len(ops), typ, p, f, v))  # type: ignore[arg-type]

    while alive and (started < n_ops or phase):
        p = draw(st.sampled_from(alive))
        if p not in phase:
            if started >= n_ops:
                continue
            f = draw(st.sampled_from(["read", "write", "cas"]))
            v: Any = (None if f == "read" else draw(st.integers(0, 3)) if f == "write"
                      else [draw(st.integers(0, 3)), draw(st.integers(0, 3))])
            emit(p, "invoke", f, v)
            phase[p] = (f, v, "invoked")
            started += 1
            continue
        f, v, stage = phase[p]
        if stage == "invoked":  # the op takes effect now
            if f == "read":
                v = register
            elif f == "write":
                register = v
            else:
                hit = register == v[0]
                if hit:
                    register = v[1]
                stage = "ok" if hit else "fail"
            phase[p] = (f, v, stage if f == "cas" else "ok")
            continue
        del phase[p]
        if draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()):
            emit(p, "info", f, v)  # crashed after the effect
            alive.remove(p)
        else:
            emit(p, stage, f, v)
    return ops


@given(executed_histories())
def test_executed_histories_are_always_valid(ops: list[Op]) -> None:
    assert check_linearizable(ops, "cas-register").valid is True
    assert check_linearizable(ops, "cas-register", consistency="sequential").valid is True


@given(executed_histories(), st.data())
def test_a_read_of_a_value_nobody_wrote_is_caught(ops: list[Op], data: st.DataObject) -> None:
    reads = [i for i, op in enumerate(ops) if op.type == "ok" and op.f == "read"]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    ops[i] = Op(ops[i].index, "ok", ops[i].process, "read", 99)
    assert check_linearizable(ops, "cas-register").valid is False
    assert check_linearizable(ops, "cas-register", consistency="sequential").valid is False


MODEL_NAMES = ["register", "cas-register", "kv", "set"]


@given(st.data(), st.sampled_from(MODEL_NAMES))
def test_executed_histories_of_every_model_are_valid(data: st.DataObject, model: str) -> None:
    ops = data.draw(histories(model))
    assert check_linearizable(ops, model).valid is True
    assert check_linearizable(ops, model, consistency="sequential").valid is True


@given(st.data(), st.sampled_from(MODEL_NAMES))
def test_a_read_nobody_could_see_is_caught_in_every_model(data: st.DataObject,
                                                           model: str) -> None:
    ops = data.draw(histories(model))
    reads = [i for i, op in enumerate(ops)
             if op.type == "ok" and op.f in ("read", "get")]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    op = ops[i]
    bogus: Any = {"kv": "never written", "set": [-1]}.get(model, 99)
    value = [op.value[0], bogus] if model in ("register", "cas-register") else bogus
    ops[i] = Op(op.index, "ok", op.process, op.f, value, extra=op.extra)
    assert check_linearizable(ops, model).valid is False
    assert check_linearizable(ops, model, consistency="sequential").valid is False


_READS = {"read", "get"}


def _oracle(ops: list[Op], consistency: str, model: str = "cas-register",
            replay: Any = None) -> bool:
    """Brute force: try every order of the ops that took (or may have taken) effect."""
    pairs = pair_ops(ops)
    pos = {id(op): n for n, op in enumerate(ops)}
    entries = []
    for pr in pairs:
        comp = pr.completion
        if comp is not None and comp.type == "fail" and pr.invoke.f != "cas":
            continue
        sure = comp is not None and comp.type in ("ok", "fail")
        if pr.invoke.f in _READS and not sure:
            continue
        ret = pos[id(comp)] if sure and comp is not None else 10**9
        entries.append((pos[id(pr.invoke)], ret, pr, sure))
    sure_entries = [e for e in entries if e[3]]
    maybe = [e for e in entries if not e[3]]
    for k in range(len(maybe) + 1):
        for extra in itertools.combinations(maybe, k):
            chosen = sure_entries + list(extra)
            for perm in itertools.permutations(chosen):
                if _order_ok(perm, consistency) and (replay or _replay)(perm, model):
                    return True
    return False


def _order_ok(perm: tuple[Any, ...], consistency: str) -> bool:
    for a, b in itertools.combinations(perm, 2):  # a placed before b
        if consistency == "linearizable":
            if b[1] < a[0]:
                return False
        elif a[2].invoke.process == b[2].invoke.process and a[3] and b[3] and b[0] < a[0]:
            return False
        elif consistency == "sequential" and a[2].invoke.process == b[2].invoke.process \
                and not a[3] and b[3] and b[0] < a[0]:
            return False  # an unknown op comes after its process's earlier ops
    return True


def _replay(perm: tuple[Any, ...], model: str) -> bool:
    state: Any = {"kv": "", "set": frozenset()}.get(model)
    for _, _, pr, sure in perm:
        f, v = pr.invoke.f, pr.invoke.value
        if f in _READS:
            seen = pr.completion.value
            if model == "kv":
                seen = seen or ""
            elif model == "set":
                seen = frozenset(seen)
            if seen != state:
                return False
        elif f in ("write", "put"):
            state = v
        elif f == "append":
            state += v
        elif f == "add":
            state = state | {v}
        else:
            hit = state == v[0]
            if sure and hit != (pr.completion.type == "ok"):
                return False
            if hit:
                state = v[1]
    return True



# model -> (update ops, update value, read op, read result)
_SHAPES: dict[str, tuple[list[str], Any, str, Any]] = {
    "cas-register": (["write", "cas"], None, "read", st.sampled_from([None, 0, 1])),
    "kv": (["put", "append"], st.sampled_from(["a", "b"]), "get",
           st.sampled_from([None, "", "a", "b", "ab", "ba", "aa", "bab"])),
    "set": (["add"], st.integers(0, 2), "read",
            st.lists(st.integers(0, 2), max_size=3, unique=True)),
}


@st.composite
def random_histories(draw: st.DrawFn, model: str = "cas-register") -> list[Op]:
    """Arbitrary small histories (mostly invalid): random outcomes and values."""
    updates, update_value, read_f, read_result = _SHAPES[model]
    ops: list[Op] = []
    open_: dict[int, tuple[str, Any]] = {}
    for _ in range(draw(st.integers(2, 10))):
        p = draw(st.integers(0, 2))
        if p in open_:
            f, v = open_.pop(p)
            typ = draw(st.sampled_from(["ok", "ok", "ok", "fail", "info"]))
            if f == read_f:
                typ = "ok" if typ == "fail" else typ
                v = draw(read_result)
            ops.append(Op(len(ops), typ, p, f, v))  # type: ignore[arg-type]
        else:
            f = draw(st.sampled_from([read_f, *updates]))
            if f == read_f:
                v = None
            elif f == "write":
                v = draw(st.integers(0, 1))
            elif f == "cas":
                v = [draw(st.integers(0, 1)), draw(st.integers(0, 1))]
            else:
                v = draw(update_value)
            open_[p] = (f, v)
            ops.append(Op(len(ops), "invoke", p, f, v))
    # info ends a process in Jepsen; keep the oracle's world the same
    seen_info: set[int] = set()
    out: list[Op] = []
    for op in ops:
        if op.process in seen_info:
            continue
        if op.type == "info":
            seen_info.add(op.process)
        out.append(Op(len(out), op.type, op.process, op.f, op.value))
    return out


def _replay_keyed(perm: tuple[Any, ...], model: str) -> bool:
    """Keyed values ([k v] / a `key` field): one independent object per key."""
    by_key: dict[Any, list[Any]] = {}
    for e in perm:
        inv = e[2].invoke
        k = inv.extra["key"] if "key" in inv.extra else inv.value[0]
        by_key.setdefault(k, []).append(e)
    for es in by_key.values():
        plain = []
        for c, r, pr, sure in es:
            inv, comp = pr.invoke, pr.completion
            if "key" not in inv.extra:
                inv = Op(inv.index, inv.type, inv.process, inv.f, inv.value[1])
                if comp is not None:
                    comp = Op(comp.index, comp.type, comp.process, comp.f, comp.value[1])
            plain.append((c, r, Pair(inv, comp), sure))
        if not _replay(tuple(plain), model):
            return False
    return True


@st.composite
def random_keyed_histories(draw: st.DrawFn, model: str) -> list[Op]:
    """Small random histories over two keys: [k v] values for registers, a
    `key` field for kv and set."""
    ops = draw(random_histories(model))
    keys: dict[int, Any] = {}
    out = []
    for op in ops:
        k = keys.setdefault(op.process, 0) if op.type != "invoke" else None
        if op.type == "invoke":
            k = keys[op.process] = draw(st.sampled_from(["a", "b"]))
        if model == "cas-register":
            out.append(Op(op.index, op.type, op.process, op.f, [k, op.value]))
        else:
            out.append(Op(op.index, op.type, op.process, op.f, op.value, extra={"key": k}))
    return out


@given(st.data(), st.sampled_from(["linearizable", "sequential"]),
       st.sampled_from(sorted(_SHAPES)))
def test_brute_force_oracle_agrees_on_keyed_histories(data: st.DataObject, consistency: str,
                                                      model: str) -> None:
    ops = data.draw(random_keyed_histories(model))
    got = check_linearizable(ops, model, consistency=consistency).valid
    assert got is _oracle(ops, consistency, model, _replay_keyed)


@given(st.data(), st.sampled_from(["linearizable", "sequential"]),
       st.sampled_from(sorted(_SHAPES)))
def test_brute_force_oracle_agrees(data: st.DataObject, consistency: str, model: str) -> None:
    ops = data.draw(random_histories(model))
    got = check_linearizable(ops, model, consistency=consistency).valid
    assert got is _oracle(ops, consistency, model)
