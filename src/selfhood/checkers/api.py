"""One entry point for every checker (pure): `check_history`.

The model names how to read the history; the consistency models name what to
check. Transactional models (list-append, rw-register) go to the Elle-class
checker, single-object models (register, cas-register, kv, set) to the
Porcupine-class one, kafka to the log checks. Session guarantees and
convergence are available for every model but kafka, by name; "crdt" (the
eventual mode's merge rules, `checkers.crdt`) for list-append, rw-register,
register and set. Combinations
that make no sense (serializable for a register, linearizable for a Kafka
log) are rejected with a SpecError rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selfhood.checkers.history import Op
from selfhood.checkers.verdict import CheckResult, compose
from selfhood.errors import SpecError

__all__ = [
    "CONSISTENCY",
    "CRDT_MODELS",
    "DEFAULT_CONSISTENCY",
    "EXTRA_CONSISTENCY",
    "MODELS",
    "SINGLE_MODELS",
    "TXN_MODELS",
    "check_history",
    "resolve_consistency",
]

TXN_MODELS: tuple[str, ...] = ("list-append", "rw-register")
SINGLE_MODELS: tuple[str, ...] = ("register", "cas-register", "kv", "set")
MODELS: tuple[str, ...] = (*TXN_MODELS, *SINGLE_MODELS, "kafka")

SINGLE_CONSISTENCY: tuple[str, ...] = ("linearizable", "sequential")
TXN_CONSISTENCY: tuple[str, ...] = (
    "strict-serializable", "serializable", "strong-session-serializable",
    "snapshot-isolation", "repeatable-read", "read-committed", "read-uncommitted",
)
#: the consistency models of the `selfhood check` contract
CONSISTENCY: tuple[str, ...] = (*SINGLE_CONSISTENCY, *TXN_CONSISTENCY)
SESSION: tuple[str, ...] = ("read-your-writes", "monotonic-reads", "monotonic-writes",
                            "writes-follow-reads")
#: checks beyond the contract, accepted by name for every model but kafka ("crdt": the
#: eventual mode's convergence plus CRDT merge rules, for CRDT_MODELS only)
EXTRA_CONSISTENCY: tuple[str, ...] = (*SESSION, "convergence", "crdt")
CRDT_MODELS: tuple[str, ...] = ("list-append", "rw-register", "register", "set")

DEFAULT_CONSISTENCY: dict[str, tuple[str, ...]] = {
    **{m: ("strict-serializable",) for m in TXN_MODELS},
    **{m: ("linearizable",) for m in SINGLE_MODELS},
    "kafka": (),
}


def resolve_consistency(model: str, consistency: Sequence[str] | str | None) -> list[str]:
    """The consistency models to check (defaults filled in), or SpecError."""
    if model not in MODELS:
        raise SpecError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if isinstance(consistency, str):
        consistency = [consistency]
    cs = list(dict.fromkeys(consistency or DEFAULT_CONSISTENCY[model]))
    for c in cs:
        if c not in CONSISTENCY and c not in EXTRA_CONSISTENCY:
            raise SpecError(f"unknown consistency model {c!r}; expected one of "
                            f"{', '.join(CONSISTENCY + EXTRA_CONSISTENCY)}")
        if model == "kafka":
            raise SpecError(f"--consistency {c} makes no sense for the kafka model: its log "
                            f"checks (lost-write, duplicate, ...) take no consistency model")
        if model in SINGLE_MODELS and c in TXN_CONSISTENCY:
            raise SpecError(f"{c} is a transactional model; the single-object model {model} "
                            f"is checked for {' or '.join(SINGLE_CONSISTENCY)}")
        if c == "crdt" and model not in CRDT_MODELS:
            raise SpecError(f"--consistency crdt is defined for {', '.join(CRDT_MODELS)} "
                            f"(the eventual mode's merge rules), not {model}")
    return cs


def check_history(ops: Sequence[Op], *, model: str,
                  consistency: Sequence[str] | str | None = None,
                  time_limit_s: float | None = None) -> CheckResult:
    """Check a history against every requested consistency model, composed.

    The result's details carry "model" and "consistency" (the list actually
    checked). Invalid beats unknown beats valid when parts combine.
    """
    cs = resolve_consistency(model, consistency)
    results: list[CheckResult] = []
    if model == "kafka":
        from selfhood.checkers.kafka_log import check_kafka
        results.append(check_kafka(ops))
    core = [c for c in cs if c in CONSISTENCY]
    session = [c for c in cs if c in SESSION]
    if core and model in TXN_MODELS:
        from selfhood.checkers.txn import check_txn
        results.append(check_txn(ops, workload=model, consistency=tuple(core),
                                 time_limit_s=time_limit_s))
    elif core:
        from selfhood.checkers.linear import check_linearizable
        for c in core:
            results.append(check_linearizable(ops, model, consistency=c,
                                              time_limit_s=time_limit_s))
    if session:
        from selfhood.checkers.session import check_session
        results.append(check_session(ops, model=model, guarantees=session))
    if "convergence" in cs:
        from selfhood.checkers.staleness import check_convergence
        results.append(check_convergence(ops, model=model))
    if "crdt" in cs:
        from selfhood.checkers.crdt import check_crdt
        results.append(check_crdt(ops, model=model))
    out = compose(results) if results else CheckResult(valid=True)
    details: dict[str, Any] = {"model": model, "consistency": cs}
    out.details.update(details)
    return out
