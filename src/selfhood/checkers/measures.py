"""Sample statistics shared by every checker and report (pure): the one home of
percentiles.

Nearest-rank percentiles, as Jepsen's and HdrHistogram's reports use them: the
q-th percentile of n sorted values is the ceil(q/100 * n)-th smallest, always a
value that was measured, never an interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TypeVar

__all__ = ["distribution", "nearest_rank", "percentile"]

T = TypeVar("T")


def nearest_rank(s: Sequence[T], q: float) -> T:
    """The q-th percentile (nearest rank) of an already sorted, non-empty sample."""
    return s[max(1, math.ceil(q / 100 * len(s))) - 1]


def percentile(xs: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (0 for no data)."""
    s = sorted(xs)
    return float(nearest_rank(s, q)) if s else 0.0


def distribution(xs: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max (nearest rank) and mean of a sample; zeros when empty."""
    if not xs:
        return {"n": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0.0}
    s = sorted(xs)
    return {"n": len(s), "p50": nearest_rank(s, 50), "p90": nearest_rank(s, 90),
            "p99": nearest_rank(s, 99), "max": s[-1], "mean": sum(s) / len(s)}
