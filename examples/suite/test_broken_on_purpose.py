"""Deliberately broken examples: what a failure looks like (off unless asked for).

Run them with ``SELFHOOD_SHOW_BROKEN=1 pytest test_broken_on_purpose.py``:
each fails, and the message says what went wrong in words (the first fork,
the anomaly cycle), not a JSON dump.
"""

from __future__ import annotations

import os

import pytest

from selfhood import Op, make_spec
from selfhood.testing import assert_same_instance, assert_valid

pytestmark = pytest.mark.skipif(not os.environ.get("SELFHOOD_SHOW_BROKEN"),
                                reason="broken on purpose; set SELFHOOD_SHOW_BROKEN=1 to see")


def test_eventual_replicas_fork_an_agent(selfhood_run) -> None:
    """Eventual consistency lets two replicas show two different pasts of one agent."""
    run = selfhood_run(make_spec(name="broken", modes=("eventual",), time_limit_s=2.0,
                                 quiesce_ms=500))
    assert_same_instance(run, "eventual")


def test_write_skew_is_not_serializable() -> None:
    """Two transactions each read what the other then changes: a G2 cycle."""
    history = [
        Op(0, "invoke", 0, "txn", [["append", "x", 1], ["r", "y", None]]),
        Op(1, "invoke", 1, "txn", [["append", "y", 1], ["r", "x", None]]),
        Op(2, "ok", 0, "txn", [["append", "x", 1], ["r", "y", []]]),
        Op(3, "ok", 1, "txn", [["append", "y", 1], ["r", "x", []]]),
    ]
    assert_valid(history, model="list-append", consistency="serializable")
