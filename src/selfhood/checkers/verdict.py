"""Three-valued verdicts and checker results (pure).

valid | invalid | unknown. When results combine, invalid beats unknown and
unknown beats valid: a time limit never turns into a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def compose(results: Mapping[str, CheckResult]) -> CheckResult:
    """Several checkers' results as one (Jepsen's checker/compose).

    The verdict combines (invalid > unknown > valid); anomalies, ruled-out
    models and unknown reasons are the union, as the `selfhood check`
    contract reports them (an explanation two checkers both give, such as the
    same divergent final reads found by "convergence" and "crdt", is listed
    once). Details are never merged: each checker's stay under its name, with
    its own verdict and anomaly types, so two checkers cannot overwrite each
    other's keys and each finding can be traced to its checker. A checker
    whose details are already one entry under its own name (`{"crdt": {...}}`)
    is not nested twice.
    """
    out = CheckResult(valid=combine_validity(r.valid for r in results.values()))
    for name, r in results.items():
        for k, v in r.anomalies.items():
            known = set(out.anomalies.get(k, ()))
            out.anomalies.setdefault(k, []).extend(e for e in v if e not in known)
        out.not_ |= r.not_
        out.unknown_reasons.extend(r.unknown_reasons)
        own = r.details[name] if set(r.details) == {name} else r.details
        out.details[name] = ({**own, "valid": r.valid, "anomaly_types": r.anomaly_types}
                             if isinstance(own, dict) else own)
    return out
