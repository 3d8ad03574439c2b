"""Consistency models and the anomalies they prohibit (pure data + graph walks).

This follows Elle's `elle.consistency-model` (itself built on Adya, Bailis,
Cerone, Daudjee et al.): a DAG of models where `a -> b` means "a history
satisfying a also satisfies b", a DAG of anomalies where `a -> b` means
"finding a is also finding b", and for each model the anomalies it directly
prohibits. A model prohibits every anomaly that *implies* one of its
directly-prohibited anomalies, including those of every model it implies.

Elle's canonical Adya names (PL-1, PL-2, PL-2.99, PL-3, PL-SI, PL-SS) are
written here under their friendly names. Three anomalies are ours, not
Elle's, and documented in docs/checkers-txn.md: `garbage-read` (a read of a
value nobody wrote; prohibited from read-uncommitted up), `reordered-appends`
(a read showing one transaction's appends to a key out of that transaction's
own order, or a later one without an earlier one: a state that never
existed, so also prohibited from read-uncommitted up) and `lost-append`
(an acknowledged append that no read beginning after the acknowledgement
contains; a real-time property, prohibited by strict-serializable and
strong-snapshot-isolation only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from selfhood.errors import SpecError

#: model -> models it implies (a history satisfying the key satisfies these)
MODEL_IMPLIES: Mapping[str, tuple[str, ...]] = {
    "causal-cerone": ("read-atomic",),
    "consistent-view": ("cursor-stability", "monotonic-view"),
    "cursor-stability": ("read-committed",),
    "forward-consistent-view": ("consistent-view",),
    "read-committed": ("read-uncommitted",),
    "serializable": ("repeatable-read", "update-serializable", "snapshot-isolation",
                     "view-serializable"),
    "update-serializable": ("forward-consistent-view",),
    "monotonic-atomic-view": ("read-committed",),
    "monotonic-view": ("read-committed",),
    "monotonic-snapshot-read": ("read-committed",),
    "parallel-snapshot-isolation": ("causal-cerone", "ROLA", "update-atomic"),
    "prefix": ("causal-cerone",),
    "read-atomic": ("monotonic-atomic-view",),
    "repeatable-read": ("cursor-stability", "monotonic-atomic-view"),
    "ROLA": ("read-atomic",),
    "update-atomic": ("read-atomic",),
    "session-serializable": ("1SR",),
    "snapshot-isolation": ("forward-consistent-view", "monotonic-atomic-view",
                           "monotonic-snapshot-read", "parallel-snapshot-isolation", "prefix"),
    "strict-serializable": ("serializable", "linearizable", "snapshot-isolation",
                            "strong-snapshot-isolation", "strong-session-serializable",
                            "session-serializable"),
    "strong-session-read-uncommitted": ("read-uncommitted",),
    "strong-session-read-committed": ("read-committed", "strong-session-read-uncommitted"),
    "strong-read-uncommitted": ("strong-session-read-uncommitted",),
    "strong-read-committed": ("strong-session-read-committed", "strong-read-uncommitted"),
    "strong-session-serializable": ("serializable", "strong-session-snapshot-isolation"),
    "strong-session-snapshot-isolation": ("snapshot-isolation",
                                          "strong-session-read-committed"),
    "strong-snapshot-isolation": ("strong-session-snapshot-isolation", "strong-read-committed"),
    "linearizable": ("sequential",),
    "sequential": ("causal",),
    "causal": ("writes-follow-reads", "PRAM"),
    "PRAM": ("monotonic-reads", "monotonic-writes", "read-your-writes"),
}

#: other names people use for the same model
MODEL_ALIASES: Mapping[str, str] = {
    "PL-1": "read-uncommitted", "PL-2": "read-committed", "PL-2.99": "repeatable-read",
    "PL-3": "serializable", "conflict-serializable": "serializable",
    "PL-CS": "cursor-stability", "PL-FCV": "forward-consistent-view",
    "PL-MSR": "monotonic-snapshot-read", "PL-2L": "monotonic-view",
    "PL-2+": "consistent-view", "PL-3U": "update-serializable",
    "PL-SI": "snapshot-isolation", "PL-SS": "strict-serializable",
    "strong-serializable": "strict-serializable",
    "strong-session-PL-1": "strong-session-read-uncommitted",
    "strong-session-PL-2": "strong-session-read-committed",
    "strong-PL-1": "strong-read-uncommitted", "strong-PL-2": "strong-read-committed",
}

#: model -> anomalies it prohibits directly
DIRECT_PROHIBITED: Mapping[str, tuple[str, ...]] = {
    "causal-cerone": ("internal", "G1a"),
    "cursor-stability": ("G1", "G-cursor", "lost-update"),
    "monotonic-view": ("G1", "G-monotonic"),
    "monotonic-snapshot-read": ("G1", "G-MSR"),
    "consistent-view": ("G1", "G-single"),
    "forward-consistent-view": ("G1", "G-SIb"),
    "parallel-snapshot-isolation": ("internal", "G1a"),
    "serializable": ("G1", "G2", "internal"),
    "read-committed": ("G1",),
    "read-uncommitted": ("G0", "duplicate-elements", "cyclic-versions", "garbage-read",
                         "reordered-appends"),
    "prefix": ("internal", "G1a"),
    "snapshot-isolation": ("internal", "G1", "G-SI", "G-nonadjacent"),
    "read-atomic": ("internal", "G1a", "future-read"),
    "repeatable-read": ("G1", "G2-item", "lost-update"),
    "update-atomic": ("lost-update",),
    "strict-serializable": ("G1", "G1c-realtime", "G2-realtime", "lost-append"),
    "strong-session-read-uncommitted": ("G0-process",),
    "strong-session-read-committed": ("G1c-process",),
    "strong-read-uncommitted": ("G0-realtime",),
    "strong-read-committed": ("G1c-realtime",),
    "strong-session-snapshot-isolation": ("internal", "G1-process", "G-nonadjacent-process"),
    "strong-snapshot-isolation": ("internal", "G1-realtime", "G-nonadjacent-realtime",
                                  "lost-append"),
    "strong-session-serializable": ("G1-process", "G2-process"),
    "update-serializable": ("G1", "G-update"),
}

#: anomaly -> anomalies it implies
ANOMALY_IMPLIES: Mapping[str, tuple[str, ...]] = {
    "G0": ("G1c", "G0-process"),
    "G0-process": ("G1c-process", "G0-realtime"),
    "G0-realtime": ("G1c-realtime",),
    "G1a": ("G1",),
    "G1b": ("G1",),
    "G1c": ("G1", "G1c-process"),
    "G1c-process": ("G1c-realtime", "G1-process"),
    "G1c-realtime": ("G1-realtime",),
    "G1": ("G1-process",),
    "G1-process": ("G1-realtime",),
    "G-single-item": ("G-single", "G-single-item-process", "G-nonadjacent-item"),
    "G-single-item-process": ("G-single-process", "G-single-item-realtime",
                              "G-nonadjacent-item-process"),
    "G-single-item-realtime": ("G-single-realtime", "G-nonadjacent-item-realtime"),
    "G-single": ("G-nonadjacent", "GSIb", "G-single-process"),
    "G-single-process": ("G-nonadjacent-process", "G-single-realtime"),
    "G-single-realtime": ("G-nonadjacent-realtime",),
    "G-nonadjacent-item": ("G-nonadjacent", "G2-item", "G-nonadjacent-item-process"),
    "G-nonadjacent-item-process": ("G-nonadjacent-process", "G2-item-process",
                                   "G-nonadjacent-item-realtime"),
    "G-nonadjacent-item-realtime": ("G2-item-realtime", "G-nonadjacent-realtime"),
    "G-nonadjacent": ("G2", "G-nonadjacent-process"),
    "G-nonadjacent-process": ("G2-process", "G-nonadjacent-realtime"),
    "G-nonadjacent-realtime": ("G2-realtime",),
    "G2": ("G2-process",),
    "G2-item": ("G2", "G2-item-process"),
    "G2-item-process": ("G2-process", "G2-item-realtime"),
    "G2-item-realtime": ("G2-realtime",),
    "G2-process": ("G2-realtime",),
    "GSIa": ("GSI",),
    "GSIb": ("GSI",),
    "incompatible-order": ("G1a",),
    "future-read": ("G1c",),
    "dirty-update": ("G1a",),
    "lost-update": ("write-skew", "G2-item"),
    "write-skew": ("G2",),
}

#: models of the lattice that are not transactional (single-object and session)
SINGLE_OBJECT: frozenset[str] = frozenset({
    "linearizable", "sequential", "causal", "PRAM", "monotonic-reads", "monotonic-writes",
    "read-your-writes", "writes-follow-reads"})


def _all_names() -> set[str]:
    return (set(MODEL_IMPLIES) | {b for bs in MODEL_IMPLIES.values() for b in bs}
            | set(DIRECT_PROHIBITED))


def _walk(start: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        x = todo.pop()
        if x in seen:
            continue
        seen.add(x)
        todo.extend(edges.get(x, ()))
    return seen


def _reverse(edges: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a, bs in edges.items():
        for b in bs:
            out.setdefault(b, []).append(a)
    return out


_MODEL_IMPLIED_BY = _reverse(MODEL_IMPLIES)
_ANOMALY_IMPLIED_BY = _reverse(ANOMALY_IMPLIES)
_PROHIBITED_BY = _reverse(DIRECT_PROHIBITED)


def canonical_model(name: str) -> str:
    """Friendly name for a model; raises SpecError for names we do not know."""
    name = MODEL_ALIASES.get(name, name)
    if name not in _all_names():
        raise SpecError(f"unknown consistency model {name!r}; known: {', '.join(TXN_MODELS)}")
    return name


def implied_anomalies(anomalies: Iterable[str]) -> set[str]:
    """These anomalies plus everything they imply."""
    return _walk(anomalies, ANOMALY_IMPLIES)


def anomalies_implying(anomalies: Iterable[str]) -> set[str]:
    """These anomalies plus every anomaly that would imply one of them."""
    return _walk(anomalies, _ANOMALY_IMPLIED_BY)


def prohibited_anomalies(models: Iterable[str]) -> set[str]:
    """Every anomaly that cannot be present if all these models hold."""
    ms = _walk((canonical_model(m) for m in models), MODEL_IMPLIES)
    direct = [a for m in ms for a in DIRECT_PROHIBITED.get(m, ())]
    return anomalies_implying(direct)


def impossible_models(anomalies: Iterable[str]) -> set[str]:
    """Every model ruled out by the presence of these anomalies."""
    direct = {m for a in implied_anomalies(anomalies) for m in _PROHIBITED_BY.get(a, ())}
    return _walk(direct, _MODEL_IMPLIED_BY)


def weakest_models(models: Iterable[str]) -> list[str]:
    """The subset not implying another member: Elle's `:not` (the rest is `:also-not`)."""
    ms = set(models)
    out = []
    for m in ms:
        below = _walk(MODEL_IMPLIES.get(m, ()), MODEL_IMPLIES)
        if not (below & (ms - {m})):
            out.append(m)
    return sorted(out)


def _checkable() -> tuple[str, ...]:
    """Every transactional model of the lattice that prohibits some anomaly (the
    rest, such as view-serializable or 1SR, prohibit nothing a graph can show)."""
    return tuple(sorted(n for n in _all_names() - SINGLE_OBJECT if prohibited_anomalies([n])))


#: the consistency models `check_txn` accepts (the CLI's list for txn models); aliases
#: (MODEL_ALIASES) are accepted too
TXN_MODELS: tuple[str, ...] = _checkable()
#: lattice models a transactional checker cannot falsify: no anomaly is prohibited
UNCHECKABLE: tuple[str, ...] = tuple(sorted(_all_names() - SINGLE_OBJECT - set(TXN_MODELS)))
