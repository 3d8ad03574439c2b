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
