"""Jepsen's checker models (counter, bank, long-fork, queue) both ways, through the CLI
and against the brute-force oracle on small random histories."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfhood.checkers.api import check_history
from selfhood.checkers.formats import write_edn
from selfhood.checkers.history import Op
from selfhood.checkers.jepsen import check_bank, check_counter, check_long_fork, check_queue
from selfhood.checkers.linear import ModelOptions
from selfhood.checkers.oracle import brute_linearizable, brute_serializable
from selfhood.cli import main as cli_main
from selfhood.errors import CheckerError, SpecError

Row = tuple[Any, str, str, Any]
SLOW_OK = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def history(*rows: Row) -> list[Op]:
    return [Op(index=i, type=t, process=p, f=f, value=v)  # type: ignore[arg-type]
            for i, (p, t, f, v) in enumerate(rows)]


def seq(*ops: tuple[Any, str, Any, Any]) -> list[Op]:
    """Sequential ops (process, f, invoke value, ok value): each completes at once."""
    rows: list[Row] = []
    for p, f, v, out in ops:
        rows += [(p, "invoke", f, v), (p, "ok", f, out)]
    return history(*rows)


# --- counter -------------------------------------------------------------------------------


def test_counter_within_bounds_and_out_of_bounds() -> None:
    ok = history((0, "invoke", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", 1),
                 (0, "ok", "add", 1), (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check_counter(ok).valid is True
    # a concurrent add may or may not be seen
    assert check_counter(history((0, "invoke", "add", 2), (1, "invoke", "read", None),
                                 (1, "ok", "read", 0), (0, "ok", "add", 2))).valid is True
    # after an acknowledged add, a read of less is too low; more than attempted too high
    low = seq((0, "add", 3, 3), (1, "read", None, 2))
    r = check_counter(low)
    assert r.valid is False and "between 3" in r.anomalies["counter-out-of-bounds"][0]
    assert check_counter(seq((0, "add", 3, 3), (1, "read", None, 4))).valid is False
    # a failed add never counts; a crashed one may
    failed = history((0, "invoke", "add", 5), (0, "fail", "add", 5),
                     (1, "invoke", "read", None), (1, "ok", "read", 5))
    assert check_counter(failed).valid is False
    crashed = history((0, "invoke", "add", 5), (0, "info", "add", 5),
                      (1, "invoke", "read", None), (1, "ok", "read", 5))
    assert check_counter(crashed).valid is True
    # a negative increment moves the bounds the other way; --initial-value starts elsewhere
    assert check_counter(seq((0, "add", -2, -2), (1, "read", None, -2))).valid is True
    start = ModelOptions.make(initial=10, has_initial=True)
    assert check_counter(seq((0, "read", None, 10)), options=start).valid is True
    assert check_counter(seq((0, "read", None, 10))).valid is False
    with pytest.raises(CheckerError):
        check_counter(seq((0, "add", "x", "x")))


def counter_history(rnd: random.Random, n: int) -> list[Op]:
    pending: dict[int, Op] = {}
    rows: list[Row] = []
    started = 0
    while started < n or pending:
        p = rnd.randrange(3)
        if p in pending:
            inv = pending.pop(p)
            t = rnd.choice(["ok", "ok", "fail", "info"]) if inv.f == "add" else "ok"
            rows.append((p, t, inv.f or "", inv.value if inv.f == "add" else rnd.randint(0, 4)))
        elif started < n:
            started += 1
            f = rnd.choice(["add", "read"])
            inv = Op(0, "invoke", p, f, rnd.randint(0, 2) if f == "add" else None)
            pending[p] = inv
            rows.append((p, "invoke", f, inv.value))
    return history(*rows)


@SLOW_OK
@given(seed=st.integers(0, 2**32), n=st.integers(1, 6))
def test_counter_bounds_never_reject_a_linearizable_history(seed: int, n: int) -> None:
    ops = counter_history(random.Random(seed), n)
    if brute_linearizable(ops, "counter"):
        assert check_counter(ops).valid is True, ops


# --- bank --------------------------------------------------------------------------------------


def test_bank_reads() -> None:
    init = ModelOptions.make(initial={0: 10, 1: 10}, has_initial=True)
    ok = seq((0, "transfer", {"from": 0, "to": 1, "amount": 3}, None),
             (1, "read", None, {0: 7, 1: 13}))
    assert check_bank(ok, options=init).valid is True
    wrong = seq((1, "read", None, {0: 7, 1: 10}))
    r = check_bank(wrong, options=init)
    assert r.anomaly_types == ["wrong-total"] and "summing to 17" in r.anomalies["wrong-total"][0]
    assert check_bank(seq((1, "read", None, {0: -1, 1: 21})), options=init).anomaly_types == \
        ["negative-value"]
    assert check_bank(seq((1, "read", None, {0: 10, 1: 10, 2: 0})), options=init
                      ).anomaly_types == ["unexpected-key"]
    assert check_bank(seq((1, "read", None, {0: None, 1: 10})), options=init
                      ).anomaly_types == ["nil-balance"]
    # without --initial-value, the first read sets the accounts and the total
    inferred = seq((0, "read", None, {"a": 5, "b": 5}), (1, "read", None, {"a": 4, "b": 5}))
    r = check_bank(inferred)
    assert r.anomaly_types == ["wrong-total"]
    assert r.details["bank"]["total_from"].startswith("the first ok read")
    assert check_bank(history()).valid == "unknown"


def bank_history(rnd: random.Random, n: int) -> list[Op]:
    """Concurrent transfers and reads on a real (sequential) bank that refuses overdrafts;
    each op takes effect at its invocation, so the history is linearizable."""
    bal = {"0": 4, "1": 4}
    pending: dict[int, tuple[str, Any]] = {}
    rows: list[Row] = []
    started = 0
    while started < n or pending:
        p = rnd.randrange(3)
        if p in pending:
            f, out = pending.pop(p)
            rows.append((p, out[0], f, out[1]))
        elif started < n:
            started += 1
            if rnd.random() < 0.5:
                frm = rnd.choice(["0", "1"])
                to = "1" if frm == "0" else "0"
                v = {"from": frm, "to": to, "amount": rnd.randint(1, 5)}
                if bal[frm] >= v["amount"]:
                    bal[frm] -= v["amount"]
                    bal[to] += v["amount"]
                    pending[p] = ("transfer", ("ok", v))
                else:
                    pending[p] = ("transfer", ("fail", v))
                rows.append((p, "invoke", "transfer", v))
            else:
                pending[p] = ("read", ("ok", dict(bal)))
                rows.append((p, "invoke", "read", None))
    return history(*rows)


@SLOW_OK
@given(seed=st.integers(0, 2**32), n=st.integers(1, 6), damage=st.booleans())
def test_bank_agrees_with_the_oracle(seed: int, n: int, damage: bool) -> None:
    ops = bank_history(random.Random(seed), n)
    init = {"0": 4, "1": 4}
    reads = [i for i, o in enumerate(ops) if o.type == "ok" and o.f == "read"]
    if damage and reads:
        i = reads[seed % len(reads)]
        ops[i] = Op(ops[i].index, "ok", ops[i].process, "read",
                    {**ops[i].value, "0": ops[i].value["0"] + 1})
    damaged = damage and bool(reads)
    assert brute_linearizable(ops, "bank", initial=init, has_initial=True) is not damaged
    verdict = check_bank(ops, options=ModelOptions.make(initial=init, has_initial=True)).valid
    assert verdict == ("unknown" if not reads else not damaged)


# --- long-fork ----------------------------------------------------------------------------------


def _w(p: int, k: int) -> list[Row]:
    return [(p, "invoke", "write", [["w", k, 1]]), (p, "ok", "write", [["w", k, 1]])]


def _r(p: int, seen: dict[int, Any]) -> list[Row]:
    return [(p, "invoke", "read", [["r", k, None] for k in seen]),
            (p, "ok", "read", [["r", k, v] for k, v in seen.items()])]


def test_long_fork_found_and_ordered_reads_pass() -> None:
    fork = history(*_w(0, 1), *_w(1, 2), *_r(2, {1: 1, 2: None}), *_r(3, {1: None, 2: 1}))
    r = check_long_fork(fork)
    assert r.valid is False and r.anomaly_types == ["long-fork"]
    assert r.not_ == {"snapshot-isolation", "prefix"}
    assert "saw 1 but not 2" in r.anomalies["long-fork"][0]
    ordered = history(*_w(0, 1), *_r(2, {1: 1, 2: None}), *_w(1, 2), *_r(3, {1: 1, 2: 1}))
    assert check_long_fork(ordered).valid is True
    twice = history(*_w(0, 1), *_w(1, 1), *_r(2, {1: 1}))
    assert check_long_fork(twice).valid == "unknown"
    with pytest.raises(CheckerError):
        check_long_fork(history(*_w(0, 1), (1, "invoke", "read", [["r", 1, None]]),
                                (1, "ok", "read", [["r", 1, 1]]),
                                (2, "invoke", "read", [["r", 1, None]]),
                                (2, "ok", "read", [["r", 1, 2]])))


def long_fork_history(rnd: random.Random, n: int) -> list[Op]:
    """Writes of fresh keys 1..3 and group reads, interleaved, with random views."""
    rows: list[Row] = []
    keys = [1, 2, 3]
    rnd.shuffle(keys)
    pending: dict[int, list[Row]] = {}
    for i in range(n):
        p = i
        if rnd.random() < 0.5 and keys:
            k = keys.pop()
            inv, ok = _w(p, k)
        else:
            seen = {k: rnd.choice([None, 1]) for k in (1, 2, 3)}
            inv, ok = _r(p, seen)
        rows.append(inv)
        pending[p] = [ok]
        if rnd.random() < 0.5:
            q = rnd.choice(list(pending))
            rows += pending.pop(q)
    for rest in pending.values():
        rows += rest
    return history(*rows)


@SLOW_OK
@given(seed=st.integers(0, 2**32), n=st.integers(1, 5))
def test_a_long_fork_is_never_serializable(seed: int, n: int) -> None:
    ops = long_fork_history(random.Random(seed), n)
    if check_long_fork(ops).valid is False:
        assert brute_serializable(ops, "rw-register") is False, ops


# --- queue ----------------------------------------------------------------------------------------


def test_total_queue() -> None:
    ok = seq((0, "enqueue", 1, 1), (0, "enqueue", 2, 2), (1, "dequeue", None, 1),
             (1, "drain", None, [2]))
    assert check_queue(ok).valid is True
    lost = seq((0, "enqueue", 1, 1), (0, "enqueue", 2, 2), (1, "drain", None, [2]))
    r = check_queue(lost)
    assert r.anomaly_types == ["lost"] and r.details["queue"]["lost"] == 1
    dup = seq((0, "enqueue", 1, 1), (1, "dequeue", None, 1), (1, "drain", None, [1]))
    assert check_queue(dup).anomaly_types == ["duplicated"]
    unexpected = seq((0, "enqueue", 1, 1), (1, "drain", None, [1, 9]))
    assert check_queue(unexpected).anomaly_types == ["unexpected"]
    # a crashed enqueue may come out (recovered); a failed one may not
    rec = history((0, "invoke", "enqueue", 1), (0, "info", "enqueue", 1),
                  (1, "invoke", "drain", None), (1, "ok", "drain", [1]))
    r = check_queue(rec)
    assert r.valid is True and r.details["queue"]["recovered"] == 1
    failed = history((0, "invoke", "enqueue", 1), (0, "fail", "enqueue", 1),
                     (1, "invoke", "drain", None), (1, "ok", "drain", [1]))
    assert check_queue(failed).anomaly_types == ["unexpected"]
    with pytest.raises(CheckerError):
        check_queue(history((1, "invoke", "drain", None), (1, "info", "drain", None)))


def queue_history(rnd: random.Random, n: int) -> list[Op]:
    """Random concurrent enqueues/dequeues with random outcomes, then a final drain."""
    rows: list[Row] = []
    pending: dict[int, tuple[str, Any]] = {}
    started = 0
    while started < n or pending:
        p = rnd.randrange(3)
        if p in pending:
            f, v = pending.pop(p)
            if f == "enqueue":
                rows.append((p, rnd.choice(["ok", "ok", "fail", "info"]), f, v))
            else:
                rows.append((p, "ok", f, rnd.choice([None, 1, 2, 3])))
        elif started < n:
            started += 1
            f = rnd.choice(["enqueue", "dequeue"])
            v = started if f == "enqueue" else None
            pending[p] = (f, v)
            rows.append((p, "invoke", f, v))
    left = rnd.sample([1, 2, 3, 4], rnd.randint(0, 3))
    rows += [(9, "invoke", "drain", None), (9, "ok", "drain", left)]
    return history(*rows)


@SLOW_OK
@given(seed=st.integers(0, 2**32), n=st.integers(1, 5))
def test_total_queue_accepts_every_linearizable_drained_history(seed: int, n: int) -> None:
    ops = queue_history(random.Random(seed), n)
    if brute_linearizable(ops, "queue"):
        assert check_queue(ops).valid is True, ops


# --- through check_history and the CLI ------------------------------------------------------------


def test_models_refuse_consistency_and_foreign_options() -> None:
    ops = seq((0, "add", 1, 1), (0, "read", None, 1))
    assert check_history(ops, model="counter").valid is True
    with pytest.raises(SpecError):
        check_history(ops, model="counter", consistency="linearizable")
    with pytest.raises(SpecError):
        check_history(ops, model="queue", options=ModelOptions.make(initial=1, has_initial=True))
    with pytest.raises(SpecError):
        check_history(ops, model="counter", options=ModelOptions.make(nil_read="any"))
    assert check_history([], model="queue").valid == "unknown"


@pytest.mark.parametrize(("model", "ops", "extra", "code", "anomaly"), [
    ("counter", seq((0, "add", 3, 3), (1, "read", None, 2)), [], 1, "counter-out-of-bounds"),
    ("counter", seq((0, "add", 3, 3), (1, "read", None, 3)), [], 0, None),
    ("bank", seq((0, "read", None, {0: 5, 1: 4})), ["--initial-value", "{0 5 1 5}"], 1,
     "wrong-total"),
    ("bank", seq((0, "read", None, {0: 5, 1: 5})), ["--initial-value", "{0 5 1 5}"], 0, None),
    ("long-fork", history(*_w(0, 1), *_w(1, 2), *_r(2, {1: 1, 2: None}),
                          *_r(3, {1: None, 2: 1})), [], 1, "long-fork"),
    ("queue", seq((0, "enqueue", 1, 1), (1, "drain", None, [])), [], 1, "lost"),
    ("queue", seq((0, "enqueue", 1, 1), (1, "drain", None, [1])), [], 0, None),
])
def test_cli_checks_each_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str,
                               ops: list[Op], extra: list[str], code: int,
                               anomaly: str | None) -> None:
    path = tmp_path / "h.edn"
    write_edn(ops, path)
    with pytest.raises(SystemExit) as exc:
        cli_main(["check", str(path), "--model", model, "--json", *extra])
    text = capsys.readouterr().out
    assert exc.value.code == code, text
    out = json.loads(text)
    assert out["model"] == model
    assert (anomaly in out["anomaly_types"]) if anomaly else out["anomaly_types"] == []
