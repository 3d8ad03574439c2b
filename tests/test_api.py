"""The public API (`from selfhood import ...`), the assertion helpers, the strategies module.

The API wraps the internals; these tests pin what users see: `__all__`
resolves, importing is cheap, a run round-trips through the store, and the
assertions explain a failure in words (both ways: they pass on a good run
and fail on a bad one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import selfhood
from selfhood import (
    Op,
    ResultsError,
    Run,
    SpecError,
    check_history,
    check_identity,
    load_run,
    make_spec,
    run_experiment,
)
from selfhood.checkers.formats import write_jsonl
from selfhood.strategies import HISTORY_MODELS, fault_schedules, histories, specs
from selfhood.testing import (
    assert_kept_promise,
    assert_same_instance,
    assert_valid,
    explain_identity,
)

QUICK = make_spec(name="api", modes=("sequential", "eventual"), time_limit_s=2.0,
                  quiesce_ms=500)


@pytest.fixture(scope="module")
def quick_run() -> Run:
    return run_experiment(QUICK)


def test_every_public_name_resolves_and_import_is_cheap() -> None:
    for name in selfhood.__all__:
        assert getattr(selfhood, name) is not None, name
    code = ("import sys, selfhood; print(sorted(m for m in sys.modules if m.startswith("
            "('selfhood.', 'msgspec', 'hypothesis', 'click', 'aiokafka'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out.replace("'", '"')) == ["selfhood._api", "selfhood.errors"]


def test_make_spec_validates_fields_by_name(tmp_path: Path) -> None:
    assert make_spec(modes=("sequential",)).modes == ("sequential",)
    with pytest.raises(SpecError, match="replicas"):
        make_spec(replicas=0)
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"seed": 9}))
    assert make_spec(f, time_limit_s=1.0).seed == 9
    assert make_spec({"seed": 3}).seed == 3


def test_a_stored_run_round_trips(quick_run: Run, tmp_path: Path) -> None:
    stored = run_experiment(QUICK, store=tmp_path)
    assert stored.path is not None and (stored.path / "report.md").is_file()
    again = load_run(tmp_path / "latest")
    assert again.spec == stored.spec and again.modes == ("sequential", "eventual")
    assert again.results["modes"] == stored.results["modes"]
    for mode in again.modes:  # the simulator is deterministic: same history, same verdicts
        a, b = again.results["modes"][mode], quick_run.results["modes"][mode]
        assert (a["history_sha256"], a["identity"]) == (b["history_sha256"], b["identity"])
    for mode in again.modes:
        assert again.identity(mode).summary() == again.results["modes"][mode]["identity"]
    with pytest.raises(SpecError, match="did not run"):
        again.history("linearizable")
    (stored.path / "eventual" / "history.jsonl").unlink()
    damaged = load_run(stored.path)
    with pytest.raises(ResultsError, match=r"history\.jsonl is missing"):
        damaged.history("eventual")
    with pytest.raises(ResultsError, match=r"no results\.json"):
        load_run(tmp_path)


def test_check_history_and_identity_take_ops_or_a_file(quick_run: Run, tmp_path: Path) -> None:
    bad = [Op(0, "invoke", 0, "write", 1), Op(1, "ok", 0, "write", 1),
           Op(2, "invoke", 1, "read", None), Op(3, "ok", 1, "read", 2)]
    assert check_history(bad, model="register").valid is False
    assert check_history(bad[:2], model="register").valid is True
    f = tmp_path / "h.jsonl"
    write_jsonl(quick_run.history("eventual"), f)
    assert check_identity(f).forks == quick_run.identity("eventual").forks > 0
    assert check_identity(quick_run.history("sequential")).forks == 0


def test_assertions_pass_on_a_good_run_and_explain_a_bad_one(quick_run: Run) -> None:
    assert_same_instance(quick_run, "sequential")
    assert_kept_promise(quick_run, "sequential")
    with pytest.raises(AssertionError) as err:
        assert_same_instance(quick_run, "eventual")
    text = str(err.value)
    assert "did not stay the same instance in mode eventual" in text
    assert "forked: the read at op #" in text and "they part at turn" in text
    assert "{" not in text  # words, not a dump
    assert explain_identity(quick_run.identity("sequential")) == "every instance stayed itself"


def test_assert_valid_shows_the_anomaly_cycle() -> None:
    skew = [Op(0, "invoke", 0, "txn", [["append", "x", 1], ["r", "y", None]]),
            Op(1, "invoke", 1, "txn", [["append", "y", 1], ["r", "x", None]]),
            Op(2, "ok", 0, "txn", [["append", "x", 1], ["r", "y", []]]),
            Op(3, "ok", 1, "txn", [["append", "y", 1], ["r", "x", []]])]
    with pytest.raises(AssertionError, match=r"(?s)NOT serializable.*G2-item cycle T\d -rw->"):
        assert_valid(skew, model="list-append", consistency="serializable")
    assert assert_valid(skew, model="list-append", consistency="read-committed").valid is True


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(HISTORY_MODELS).flatmap(lambda m: st.tuples(st.just(m), histories(m))))
def test_generated_histories_are_valid_and_a_bad_read_is_caught(drawn: tuple) -> None:
    model, ops = drawn
    assert check_history(ops, model=model).valid is not False
    reads = [i for i, o in enumerate(ops) if o.type == "ok" and o.f == "read"]
    if model == "register" and reads:  # a value nobody wrote: no store could return it
        i = reads[0]
        ops[i] = Op(ops[i].index, "ok", ops[i].process, "read", [ops[i].value[0], 99])
        assert check_history(ops, model=model).valid is False


@settings(max_examples=10, deadline=None)
@given(specs(modes=("sequential",)), st.data())
def test_drawn_specs_and_schedules_are_valid_and_heal(spec: selfhood.ExperimentSpec,
                                                      data: st.DataObject) -> None:
    schedule = data.draw(fault_schedules(spec, faults=("crash", "pause", "halves")))
    fs = [s.f for s in schedule]
    assert fs.count("crash") == fs.count("restart") and fs.count("pause") == fs.count("resume")
    assert fs.count("partition") == fs.count("heal")
    assert make_spec(spec, schedule=schedule).schedule == schedule


def test_the_runner_fixture_stores_each_run(selfhood_run: object, selfhood_store: Path) -> None:
    run = selfhood_run(QUICK, modes=("sequential",), time_limit_s=1.0)  # type: ignore[operator]
    assert run.path is not None and run.path.parent == selfhood_store / "api"
    assert load_run(selfhood_store / "latest").results == run.results
