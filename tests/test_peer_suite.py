"""The peer suite (../shared/peers/suite): every published verdict, read in place.

`expected.json` lists 182 histories that Knossos, Elle, Porcupine, Jepsen's
Kafka tests and elle-cli publish, with 202 checks (model, consistency model,
verdict, anomaly types that must be reported); its README says how each
verdict was derived. Each check here is one `selfhood check` as a user would
run it: the file read in its format, then the model's checker. A verdict must
match exactly (no false positive, no false negative, no unknown).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from selfhood.checkers.api import check_history
from selfhood.checkers.formats import read_history

SUITE = Path(__file__).resolve().parents[2] / "shared" / "peers" / "suite"
#: generous: the slowest entry (Elle's unfindable-g-single, 60k ops) takes a few seconds
TIME_LIMIT_S = 120.0


def _checks() -> list[Any]:
    doc = json.loads((SUITE / "expected.json").read_text())
    out = []
    for entry in doc["histories"]:
        for n, check in enumerate(entry["checks"]):
            label = f"{entry['path']}[{check['consistency'] or 'default'}]"
            out.append(pytest.param(entry, check, id=label if n == 0 else f"{label}#{n}"))
    return out


CHECKS = _checks()


def test_the_suite_is_all_there() -> None:
    assert len(CHECKS) == 202
    assert len({c.values[0]["path"] for c in CHECKS}) == 182  # type: ignore[index]


@pytest.mark.parametrize(("entry", "check"), CHECKS)
def test_published_verdict(entry: dict[str, Any], check: dict[str, Any]) -> None:
    ops = read_history(SUITE / entry["path"], entry["format"])
    r = check_history(ops, model=entry["model"], consistency=check["consistency"],
                      time_limit_s=TIME_LIMIT_S)
    assert r.valid is check["valid"], (r.valid, r.anomaly_types, r.unknown_reasons)
    missing = [a for a in check["anomalies"] if a not in r.anomaly_types]
    assert not missing, (missing, r.anomaly_types)
