"""ExperimentSpec: plain data, validated, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfhood.errors import SpecError
from selfhood.spec import (
    DEFAULT_SPEC,
    ExperimentSpec,
    NemesisOp,
    canonical,
    dumps,
    load_spec,
    parse_list,
    spec_from_mapping,
    with_overrides,
)


def test_default_spec_round_trips_through_json(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(dumps(DEFAULT_SPEC))
    assert load_spec(p) == DEFAULT_SPEC


def test_toml_spec_with_schedule(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(
        'name = "t1"\nseed = 9\nmodes = ["eventual"]\n\n[net]\nloss = 0.01\n\n'
        '[[schedule]]\nat_ms = 100\nf = "crash"\nvalue = "r1"\n'
    )
    spec = load_spec(p)
    assert spec.name == "t1" and spec.seed == 9 and spec.modes == ("eventual",)
    assert spec.net.loss == 0.01
    assert spec.schedule == (NemesisOp(at_ms=100, f="crash", value="r1"),)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"concurrency": "x"}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"modes": ["sequential", "bogus"]}, "modes.1"),
        ({"modes": []}, "modes"),
        ({"router": "random"}, "router"),
        ({"nemesis": ["meteor"]}, "nemesis.0"),
        ({"net": {"loss": 1.5}}, "net.loss"),
        ({"workload": {"frobs": 1}}, "workload.frobs"),
        ({"bogus": 1}, "bogus"),
        ({"schedule": [{"at_ms": 5, "f": "zap"}]}, "schedule.0.f"),
        ({"sharded_memory": True, "shards": 1}, "sharded_memory"),
        # schedule values: each op's value is checked against the topology
        ({"schedule": [{"at_ms": 5, "f": "crash", "value": "r9"}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "pause", "value": {"r0": 1}}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "resume", "value": ["r0"]}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "partition", "value": "halves"}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "partition", "value": {"pattern": "zigzag"}}]},
         "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "partition",
                        "value": {"groups": [["r0", "r7"], ["log"]]}}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "partition", "value": {"groups": "r0"}}]},
         "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "heal"}, {"at_ms": 6, "f": "skew", "value": {"r0": "x"}}]},
         "schedule.1.value"),
        ({"schedule": [{"at_ms": 5, "f": "skew", "value": {"r5": 100}}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "skew", "value": 100}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "skew", "value": {"r0": 1e300}}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 10**12, "f": "heal"}]}, "schedule.0.at_ms"),
        ({"schedule": [{"at_ms": 5, "f": "heal", "value": 3}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "kill-broker", "value": True}]}, "schedule.0.value"),
        ({"schedule": [{"at_ms": 5, "f": "kill-broker", "value": 10**30}]}, "schedule.0.value"),
        # every number is bounded; nan and infinities are refused
        ({"net": {"delay_ms_max": 1e308}}, "net.delay_ms_max"),
        ({"net": {"delay_ms_max": float("nan")}}, "net.delay_ms_max"),
        ({"net": {"loss": float("nan")}}, "net.loss"),
        ({"rate": float("inf")}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"time_limit_s": float("nan")}, "time_limit_s"),
        ({"time_limit_s": float("inf")}, "time_limit_s"),
        ({"workload": {"memory": float("inf")}}, "workload.memory"),
        ({"workload": {"probe": float("nan")}}, "workload.probe"),
        ({"nemesis_interval_ms": 10**15}, "nemesis_interval_ms"),
        ({"fault_duration_ms": 10**15}, "fault_duration_ms"),
        ({"op_timeout_ms": 10**15}, "op_timeout_ms"),
        ({"quiesce_ms": 10**15}, "quiesce_ms"),
        ({"seed": 2**70}, "seed"),
        # the name is one path segment of the store
        ({"name": ".."}, "name"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_bad_fields_are_named(data: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError, match=f"`{field}`"):
        spec_from_mapping(data)


def test_json_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{\n  "seed": 1,\n  "concurrency": "many"\n}\n')
    with pytest.raises(SpecError, match=r"bad\.json:3: spec field `concurrency`"):
        load_spec(p)
    p.write_text('{\n  "seed": 1,\n')
    with pytest.raises(SpecError, match=r"bad\.json:3:\d+: malformed JSON"):
        load_spec(p)


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("seed = 1\nmodes = [\n")
    with pytest.raises(SpecError, match="line"):
        load_spec(p)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"json or \.toml"):
        load_spec(tmp_path / "s.yaml")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.json")


def test_overrides_revalidate() -> None:
    s = with_overrides(DEFAULT_SPEC, seed=3, modes=("eventual",), concurrency=None)
    assert s.seed == 3 and s.modes == ("eventual",) and s.concurrency == DEFAULT_SPEC.concurrency
    with pytest.raises(SpecError, match="`replicas`"):
        with_overrides(DEFAULT_SPEC, replicas=0)


def test_parse_list() -> None:
    assert parse_list("--modes", "sequential, eventual", ("sequential", "eventual")) == (
        "sequential", "eventual")
    assert parse_list("--nemesis", "none", ("crash",)) == ()
    with pytest.raises(SpecError, match="--modes"):
        parse_list("--modes", "strong", ("sequential",))


def test_spec_is_frozen_plain_data() -> None:
    spec = ExperimentSpec()
    with pytest.raises(AttributeError):
        spec.seed = 2  # type: ignore[misc]
    assert json.loads(dumps(spec))["modes"] == ["sequential", "eventual"]
    assert spec.replica_names == ("r0", "r1", "r2")


def test_good_schedule_values_are_accepted() -> None:
    spec = spec_from_mapping({"schedule": [
        {"at_ms": 1, "f": "partition", "value": {"pattern": "isolate", "node": "r1"}},
        {"at_ms": 2, "f": "partition", "value": {"pattern": "bridge",
                                                 "groups": [["r0", "r1"], ["r1", "r2", "log"]]}},
        {"at_ms": 3, "f": "heal"}, {"at_ms": 4, "f": "skew", "value": {"r2": -250.5}},
        {"at_ms": 5, "f": "unskew"}, {"at_ms": 6, "f": "pause", "value": "r0"},
        {"at_ms": 7, "f": "resume", "value": "r0"}, {"at_ms": 8, "f": "rebalance"},
        {"at_ms": 9, "f": "partition", "value": {"pattern": "majority-ring"}},
        {"at_ms": 10, "f": "crash", "value": "r2"}, {"at_ms": 11, "f": "restart", "value": "r2"}],
        "time_limit_s": 0.5, "modes": ["eventual"]})
    assert spec.schedule is not None and len(spec.schedule) == 11
    # what validation accepts, the simulator runs (no ChaosError at run time)
    from selfhood.chaos.runner import simulate_mode

    history = simulate_mode(spec, "eventual").history
    assert sum(op.process == "nemesis" for op in history) >= 2 * 11


def test_canonical_sorts_keys_recursively() -> None:
    value = {"pattern": "halves", "groups": [["r1", "r0"]], "a": {"z": 1, "b": 2}}
    out = canonical(value)
    assert list(out) == ["a", "groups", "pattern"] and list(out["a"]) == ["b", "z"]
    assert out["groups"] == [["r1", "r0"]]  # lists keep their order


def test_spec_json_never_holds_infinity(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text('{"rate": Infinity}')
    with pytest.raises(SpecError, match="`rate`"):
        load_spec(p)
    p.write_text('{"net": {"delay_ms_max": 1e999}}')
    with pytest.raises(SpecError, match=r"`net\.delay_ms_max`"):
        load_spec(p)
