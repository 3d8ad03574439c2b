"""Three-valued verdicts and checker results (pure).

valid | invalid | unknown. When results combine, invalid beats unknown and
unknown beats valid: a time limit never turns into a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Validity = bool | Literal["unknown"]
UNKNOWN: Literal["unknown"] = "unknown"


def combine_validity(values: Iterable[Validity]) -> Validity:
    """invalid > unknown > valid."""
    out: Validity = True
    for v in values:
        if v is False:
            return False
        if v == UNKNOWN:
            out = UNKNOWN
    return out


@dataclass(slots=True)
class CheckResult:
    """What one checker (or a composition) concluded about a history.

    `anomalies` maps an anomaly name (Elle's names where they exist) to
    human-readable explanations; `not_` lists consistency models ruled out;
    `unknown_reasons` says which parts hit a limit; `details` holds
    checker-specific data (distributions, stuck points) for reports.
    """

    valid: Validity
    anomalies: dict[str, list[str]] = field(default_factory=dict)
    not_: set[str] = field(default_factory=set)
    unknown_reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def anomaly_types(self) -> list[str]:
        return sorted(self.anomalies)

    def add(self, name: str, explanation: str) -> None:
        self.anomalies.setdefault(name, []).append(explanation)


def compose(results: Iterable[CheckResult]) -> CheckResult:
    """Merge several results into one (Jepsen's checker/compose)."""
    rs = list(results)
    out = CheckResult(valid=combine_validity(r.valid for r in rs))
    for r in rs:
        for k, v in r.anomalies.items():
            out.anomalies.setdefault(k, []).extend(v)
        out.not_ |= r.not_
        out.unknown_reasons.extend(r.unknown_reasons)
        out.details.update(r.details)
    return out
