"""One implementation of the named partition patterns, used by every world."""

from __future__ import annotations

import random

import pytest

from selfhood.chaos.nemesis import cut_links, partition_groups
from selfhood.errors import ChaosError
from selfhood.spec import PARTITION_PATTERNS

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
