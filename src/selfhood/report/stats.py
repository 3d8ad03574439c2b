"""Means, 95 % confidence intervals and two-sample differences (pure, stdlib only).

Intervals use Student's t (the samples are a handful of seeds, not
hundreds); a difference between two sweeps is Welch's interval, so unequal
variances and seed counts are fine. One sample has a mean and no interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: two-sided 95 % Student t quantiles by degrees of freedom
_T95: Final = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
               8: 2.306, 9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145,
               15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080,
               22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
               29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(df: float) -> float:
    """The 97.5th percentile of Student's t with `df` degrees of freedom (table, rounded down
    to the nearest tabulated df, so the interval is never too narrow)."""
    if df < 1:
        return math.inf
    best = 1.960
    for k in sorted(_T95, reverse=True):
        if df >= k:
            return _T95[k] if k < 120 or df < 1000 else best
    return _T95[1]


@dataclass(frozen=True, slots=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    n: int
    sd: float

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def show(self, fmt: str = ".3f") -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.mean:{fmt}} (1 run)"
        return f"{self.mean:{fmt}} ± {self.half:{fmt}}"


def mean_ci(xs: Sequence[float]) -> Estimate:
    """Mean and 95 % t-interval of a sample."""
    n = len(xs)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, math.nan)
    m = statistics.fmean(xs)
    if n == 1:
        return Estimate(m, m, m, 1, 0.0)
    sd = statistics.stdev(xs)
    h = t95(n - 1) * sd / math.sqrt(n)
    return Estimate(m, m - h, m + h, n, sd)


@dataclass(frozen=True, slots=True)
class Difference:
    diff: float
    lo: float
    hi: float
    decided: bool  # both samples have >= 2 values

    @property
    def differs(self) -> bool:
        """The 95 % interval of B - A excludes zero."""
        return self.decided and (self.lo > 0 or self.hi < 0)

    def show(self, fmt: str = ".3f") -> str:
        if not self.decided:
            return f"{self.diff:+{fmt}} (too few runs for an interval)"
        tag = "differs" if self.differs else "no clear difference"
        return f"{self.diff:+{fmt}} [{self.lo:+{fmt}}, {self.hi:+{fmt}}] {tag}"


def welch(a: Estimate, b: Estimate) -> Difference:
    """95 % Welch interval of b.mean - a.mean."""
    d = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        return Difference(d, d, d, False)
    va, vb = a.sd ** 2 / a.n, b.sd ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(d, d, d, True)
    df = (va + vb) ** 2 / ((va ** 2 / (a.n - 1) if va else 0) + (vb ** 2 / (b.n - 1) if vb else 0)
                           or 1e-300)
    h = t95(df) * se
    return Difference(d, d - h, d + h, True)
