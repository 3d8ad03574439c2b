"""One implementation of the named partition patterns, used by every world."""

from __future__ import annotations

import random

import pytest

from selfhood.chaos.nemesis import OWNER, cut_links, owner_target, partition_groups
from selfhood.chaos.runner import run_experiment
from selfhood.checkers.formats import parse_jsonl
from selfhood.errors import ChaosError
from selfhood.spec import PARTITION_PATTERNS, ExperimentSpec, NemesisOp, with_overrides

NODES = ("r0", "r1", "r2", "r3", "log")


@pytest.mark.parametrize("pattern", PARTITION_PATTERNS)
def test_a_named_pattern_cuts_exactly_the_links_its_groups_leave_out(pattern: str) -> None:
    groups = partition_groups(pattern, NODES, random.Random(3))
    cut = cut_links({"pattern": pattern}, NODES, random.Random(3))
    assert cut == cut_links({"groups": groups}, NODES, random.Random(0))
    assert cut, pattern  # every pattern cuts something among five nodes
    for a, b in cut:
        assert (b, a) in cut  # symmetric
        assert not any(a in g and b in g for g in groups)


def test_isolate_may_name_its_node() -> None:
    cut = cut_links({"pattern": "isolate", "node": "log"}, NODES, random.Random(1))
    assert cut == {(a, b) for a in NODES for b in NODES if a != b and "log" in (a, b)}


@pytest.mark.parametrize("value,msg", [
    ({"pattern": "zigzag"}, "unknown pattern"),
    ({"groups": [["r0", "r9"]]}, "unknown node 'r9' in group 0"),
    ({"pattern": "isolate", "node": "r9"}, "unknown node"),
    ("halves", "must be a dict"),
])
def test_bad_partition_values_are_typed_errors(value: object, msg: str) -> None:
    with pytest.raises(ChaosError, match=msg):
        cut_links(value, NODES, random.Random(0))


def test_owner_target_names_the_owner_at_the_fault_and_the_same_replica_at_its_heal() -> None:
    remembered: dict[str, str] = {}
    assert owner_target("crash", "r1", "r0", remembered) == "r1"  # a name is itself
    assert remembered == {}
    assert owner_target("restart", OWNER, "r2", remembered) is None  # nothing to heal
    assert owner_target("crash", OWNER, "r0", remembered) == "r0"
    assert owner_target("pause", OWNER, None, remembered) is None  # no owner: a no-op
    assert owner_target("restart", OWNER, "r2", remembered) == "r0"  # the crashed one
    assert remembered == {}


def test_the_simulator_crashes_the_owner_of_partition_0_and_restarts_it() -> None:
    spec = with_overrides(ExperimentSpec(), name="owner", time_limit_s=2.0, quiesce_ms=300,
                          nemesis=(), seed=3, modes=("sequential",), schedule=(
                              NemesisOp(at_ms=500, f="crash", value=OWNER),
                              NemesisOp(at_ms=1200, f="restart", value=OWNER)))
    out = run_experiment(spec, check_time_limit_s=20).outcomes["sequential"]
    history = parse_jsonl(out.files["history.jsonl"])
    done = [(o.f, o.value) for o in history
            if o.process == "nemesis" and o.type == "info" and o.f in ("crash", "restart")]
    # invoked as "owner", completed with whom it meant: the coordinator's first owner of
    # partition 0 is r0, and the restart brings back the replica that was crashed
    assert done == [("crash", OWNER), ("crash", "r0"), ("restart", OWNER),
                    ("restart", "r0")], done
    assert out.summary["stats"]["crashes"] == 1 and out.summary["stats"]["restarts"] == 1
