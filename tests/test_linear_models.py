"""Model options (initial value, fail rule, nil reads), kv `write`, and the mutex and
multi-register models, both ways, with the brute-force oracle as cross-check and
Knossos's own files (unmodified) as the reference verdicts."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfhood.checkers.formats import read_history
from selfhood.checkers.history import Op
from selfhood.checkers.linear import REGISTRY, ModelOptions, check_linearizable
from selfhood.checkers.oracle import brute_linearizable
from selfhood.errors import CheckerError, SpecError

SUITE = Path(__file__).resolve().parents[2] / "shared" / "peers" / "suite"
KNOSSOS = SUITE / "knossos" / "orig" / "cas-register"
FIXTURES = Path(__file__).parent / "fixtures" / "knossos"
Row = tuple[Any, str, str | None, Any]


def history(*rows: Row, errors: dict[int, Any] | None = None) -> list[Op]:
    return [Op(index=i, type=t, process=p, f=f, value=v,  # type: ignore[arg-type]
               error=(errors or {}).get(i)) for i, (p, t, f, v) in enumerate(rows)]


def lin(ops: list[Op], model: str, **opts: Any) -> Any:
    return check_linearizable(ops, model, options=ModelOptions.make(**opts)).valid


# --- options ---------------------------------------------------------------------------------


def test_initial_value_sets_the_state_before_any_write() -> None:
    ops = history((0, "invoke", "read", None), (0, "ok", "read", 0))
    assert lin(ops, "register") is False  # nil by default
    assert lin(ops, "register", initial=0, has_initial=True) is True
    cas = history((0, "invoke", "cas", [0, 1]), (0, "ok", "cas", [0, 1]))
    assert lin(cas, "cas-register") is False
    assert lin(cas, "cas-register", initial=0, has_initial=True) is True
    kv = history((0, "invoke", "get", ["k", None]), (0, "ok", "get", ["k", "x"]))
    assert lin(kv, "kv") is False and lin(kv, "kv", initial="x", has_initial=True) is True
    st_ = history((0, "invoke", "read", None), (0, "ok", "read", [1]))
    assert lin(st_, "set") is False and lin(st_, "set", initial=[1], has_initial=True) is True
    with pytest.raises(SpecError):
        lin(st_, "set", initial=3, has_initial=True)


def test_fail_rule_observe_reads_a_failed_cas_as_a_mismatch_drop_ignores_it() -> None:
    # the register holds 0; a cas 0->1 that fails without an error contradicts that
    ops = history((0, "invoke", "write", 0), (0, "ok", "write", 0),
                  (1, "invoke", "cas", [0, 1]), (1, "fail", "cas", [0, 1]))
    assert lin(ops, "cas-register") is False
    assert lin(ops, "cas-register", fail="drop") is True
    # a failed write never has an effect under either rule
    w = history((0, "invoke", "write", 1), (0, "fail", "write", 1),
                (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert lin(w, "register") is False and lin(w, "register", fail="drop") is False
    with pytest.raises(SpecError):
        ModelOptions.make(fail="maybe")


def test_nil_read_any_accepts_a_nil_read_in_every_state() -> None:
    ops = history((0, "invoke", "write", 3), (0, "ok", "write", 3),
                  (1, "invoke", "read", None), (1, "ok", "read", None))
    assert lin(ops, "register") is False
    assert lin(ops, "register", nil_read="any") is True
    # a non-nil read is still checked
    bad = history((0, "invoke", "write", 3), (0, "ok", "write", 3),
                  (1, "invoke", "read", None), (1, "ok", "read", 4))
    assert lin(bad, "register", nil_read="any") is False
    with pytest.raises(SpecError):
        ModelOptions.make(nil_read="sometimes")


def test_kv_accepts_write_as_put() -> None:
    """The docs list `write` for kv; it used to raise 'no operation write'."""
    ops = history((0, "invoke", "write", ["k", "a"]), (0, "ok", "write", ["k", "a"]),
                  (0, "invoke", "get", ["k", None]), (0, "ok", "get", ["k", "a"]))
    assert check_linearizable(ops, "kv").valid is True
    stale = history((0, "invoke", "write", ["k", "a"]), (0, "ok", "write", ["k", "a"]),
                    (0, "invoke", "get", ["k", None]), (0, "ok", "get", ["k", ""]))
    assert check_linearizable(stale, "kv").valid is False


# --- Knossos's own files -------------------------------------------------------------------------


def _knossos_files() -> list[Path]:
    return sorted(KNOSSOS.glob("*/*.edn"))


@pytest.mark.skipif(not KNOSSOS.is_dir(), reason="peer suite not present")
@pytest.mark.parametrize("opts", [
    {"fail": "drop"},
    {"fail": "drop", "initial": 0, "has_initial": True, "nil_read": "any"},  # (cas-register 0)
])
def test_unmodified_knossos_files_get_knossos_verdicts(opts: dict[str, Any]) -> None:
    files = _knossos_files()
    assert len(files) == 120
    wrong = []
    for f in files:
        want = f.parent.name == "good"
        got = check_linearizable(read_history(f), "cas-register",
                                 options=ModelOptions.make(**opts), time_limit_s=30).valid
        if got is not want:
            wrong.append((f.name, got))
    assert wrong == []


@pytest.mark.skipif(not KNOSSOS.is_dir(), reason="peer suite not present")
def test_knossos_files_differ_under_the_observe_rule() -> None:
    """Why the option exists: read as observations, nine good files fail."""
    bad = [f.name for f in _knossos_files() if f.parent.name == "good"
           and check_linearizable(read_history(f), "cas-register", time_limit_s=30).valid
           is False]
    assert len(bad) == 9 and "memstress3-54.edn" in bad


# --- mutex -------------------------------------------------------------------------------------


def test_mutex_valid_and_invalid() -> None:
    ok = history((0, "invoke", "acquire", None), (0, "ok", "acquire", None),
                 (1, "invoke", "acquire", None),
                 (0, "invoke", "release", None), (0, "ok", "release", None),
                 (1, "ok", "acquire", None))
    assert check_linearizable(ok, "mutex").valid is True
    both = history((0, "invoke", "acquire", None), (0, "ok", "acquire", None),
                   (1, "invoke", "acquire", None), (1, "ok", "acquire", None))
    r = check_linearizable(both, "mutex")
    assert r.valid is False
    assert "the mutex in state locked" in r.anomalies["nonlinearizable"][0]
    # a crashed release may have happened
    crash = history((0, "invoke", "acquire", None), (0, "ok", "acquire", None),
                    (0, "invoke", "release", None), (0, "info", "release", None),
                    (1, "invoke", "acquire", None), (1, "ok", "acquire", None))
    assert check_linearizable(crash, "mutex").valid is True
    # a failed release had no effect
    failed = history((0, "invoke", "acquire", None), (0, "ok", "acquire", None),
                     (0, "invoke", "release", None), (0, "fail", "release", None),
                     (1, "invoke", "acquire", None), (1, "ok", "acquire", None))
    assert check_linearizable(failed, "mutex").valid is False
    with pytest.raises(CheckerError):
        check_linearizable(history((0, "invoke", "read", None), (0, "ok", "read", 1)), "mutex")


# --- multi-register ---------------------------------------------------------------------------


def txn(*mops: tuple[str, str, Any]) -> list[list[Any]]:
    return [list(m) for m in mops]


def test_multi_register_valid_and_invalid() -> None:
    ok = history((0, "invoke", "txn", txn(("write", "x", 1), ("write", "y", 1))),
                 (0, "ok", "txn", txn(("write", "x", 1), ("write", "y", 1))),
                 (1, "invoke", "txn", txn(("read", "x", None), ("read", "y", None))),
                 (1, "ok", "txn", txn(("read", "x", 1), ("read", "y", 1))))
    assert check_linearizable(ok, "multi-register").valid is True
    # a read that sees half of an atomic two-key write
    torn = history((0, "invoke", "txn", txn(("write", "x", 1), ("write", "y", 1))),
                   (0, "ok", "txn", txn(("write", "x", 1), ("write", "y", 1))),
                   (1, "invoke", "txn", txn(("read", "x", None), ("read", "y", None))),
                   (1, "ok", "txn", txn(("read", "x", 1), ("read", "y", None))))
    assert check_linearizable(torn, "multi-register").valid is False
    # Knossos's model: nil reads are legal in every state
    assert check_linearizable(torn, "multi-register",
                              options=ModelOptions.make(nil_read="any")).valid is True
    with pytest.raises(CheckerError):
        check_linearizable(history((0, "invoke", "txn", [["cas", "x", 1]]),
                                   (0, "ok", "txn", [["cas", "x", 1]])), "multi-register")


def test_knossos_multi_register_and_mutex_files() -> None:
    """Knossos's own data/ files, unmodified (tests/fixtures/knossos/README.md)."""
    ops = read_history(FIXTURES / "multi-register-good.edn")
    opts = ModelOptions.make(initial=0, has_initial=True)  # its header: x=0 and y=0
    assert check_linearizable(ops, "multi-register", options=opts).valid is True
    assert check_linearizable(ops, "multi-register").valid is False  # nil start: x=0 unseen
    first = next(i for i, o in enumerate(ops) if o.type == "ok")
    bad = list(ops)
    bad[first] = Op(ops[first].index, "ok", ops[first].process, "txn", [["read", "x", 9]])
    assert check_linearizable(bad, "multi-register", options=opts).valid is False
    mutex = read_history(FIXTURES / "mutex-bad-etcd.edn")
    r = check_linearizable(mutex, "mutex")
    assert r.valid is False and "acquire" in r.anomalies["nonlinearizable"][0]


# --- brute-force cross-check -------------------------------------------------------------------


def random_history(rnd: random.Random, model: str, n: int) -> list[Op]:
    """n ops by three processes, interleaved at random, with random outcomes and values."""
    pending: dict[int, tuple[str, Any]] = {}
    rows: list[Row] = []
    errors: dict[int, Any] = {}
    started = 0
    while started < n or pending:
        p = rnd.randrange(3)
        if p in pending:
            f, v = pending.pop(p)
            t = rnd.choice(["ok", "ok", "ok", "fail", "info"])
            if t == "ok" and f in ("read", "txn"):
                v = _observed(rnd, model, v)
            if t == "fail" and rnd.random() < 0.3:
                errors[len(rows)] = "refused"
            rows.append((p, t, f, v))
        elif started < n:
            started += 1
            f, v = _invocation(rnd, model)
            pending[p] = (f, v)
            rows.append((p, "invoke", f, v))
    return history(*rows, errors=errors)


def _invocation(rnd: random.Random, model: str) -> tuple[str, Any]:
    if model == "mutex":
        return rnd.choice(["acquire", "release"]), None
    if model == "multi-register":
        keys = rnd.sample(["x", "y"], rnd.randint(1, 2))
        return "txn", [[rnd.choice(["read", "write"]), k, rnd.randint(0, 2)] for k in keys]
    f = rnd.choice(["read", "write", "cas"])
    return f, [rnd.randint(0, 2), rnd.randint(0, 2)] if f == "cas" else rnd.randint(0, 2)


def _observed(rnd: random.Random, model: str, v: Any) -> Any:
    if model == "multi-register":
        return [[f, k, rnd.choice([None, 0, 1, 2]) if f == "read" else x] for f, k, x in v]
    if model == "cas-register" and isinstance(v, list):
        return v
    return rnd.choice([None, 0, 1, 2])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), n=st.integers(1, 6),
       model=st.sampled_from(["mutex", "multi-register", "cas-register"]),
       fail=st.sampled_from(["observe", "drop"]), nil=st.sampled_from(["value", "any"]),
       init=st.sampled_from([None, 0]))
def test_oracle_agrees_on_options_and_new_models(seed: int, n: int, model: str, fail: str,
                                                 nil: str, init: Any) -> None:
    ops = random_history(random.Random(seed), model, n)
    has = init is not None and model != "mutex"
    opts = ModelOptions.make(initial=init, has_initial=has, fail=fail, nil_read=nil)
    for c in ("linearizable", "sequential"):
        assert check_linearizable(ops, model, consistency=c, options=opts).valid == \
            brute_linearizable(ops, model, c, initial=init, has_initial=has, fail_rule=fail,
                               nil_read=nil), (c, ops)


def test_every_model_is_registered_with_its_functions() -> None:
    assert set(REGISTRY) == {"register", "cas-register", "kv", "set", "mutex",
                             "multi-register"}
    for m in REGISTRY.values():
        assert callable(m.init) and callable(m.compile) and m.noun


def test_expected_json_lists_the_rewritten_knossos_files() -> None:
    if not (SUITE / "expected.json").is_file():
        pytest.skip("peer suite not present")
    hist = json.loads((SUITE / "expected.json").read_text())["histories"]
    assert sum(1 for h in hist if h["path"].startswith("knossos/cas-register/")) == 121
