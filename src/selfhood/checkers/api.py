"""One entry point for every checker (pure): `check_history`, and the model registry.

The model names how to read the history; the consistency models name what to
check. Transactional models (list-append, rw-register) go to the Elle-class
checker, the search models (`linear.REGISTRY`: register, cas-register, kv,
set, mutex, multi-register) to the Porcupine-class one, Jepsen's checker
models (counter, bank, long-fork, queue: `checkers.jepsen`) to their own
checks, kafka to the log checks. Session guarantees and convergence are
available by name for the models the session checker reads; "crdt" (the
eventual mode's merge rules, `checkers.crdt`) for list-append, rw-register,
register and set. Combinations that make no sense (serializable for a
register, linearizable for a Kafka log, a model Elle's lattice names but no
anomaly can falsify) are rejected with a SpecError rather than silently
ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from selfhood.checkers.crdt import CRDT_MODELS
from selfhood.checkers.elle import models as cm
from selfhood.checkers.history import NEMESIS, TXN_MODELS, Op
from selfhood.checkers.jepsen import MODELS as JEPSEN_MODELS
from selfhood.checkers.linear import DEFAULT_OPTIONS, ModelOptions
from selfhood.checkers.linear import MODELS as SEARCH_MODELS
from selfhood.checkers.session import SESSION_MODELS
from selfhood.checkers.verdict import UNKNOWN, CheckResult, compose
from selfhood.errors import SpecError

__all__ = [
    "CONSISTENCY",
    "CRDT_MODELS",
    "DEFAULT_CONSISTENCY",
    "EXTRA_CONSISTENCY",
    "JEPSEN_MODELS",
    "MODELS",
    "SINGLE_MODELS",
    "TXN_MODELS",
    "KeyOrder",
    "ModelOptions",
    "check_history",
    "check_options",
    "resolve_consistency",
]

#: models checked by the linearizability search (`linear.REGISTRY`)
SINGLE_MODELS: tuple[str, ...] = SEARCH_MODELS
MODELS: tuple[str, ...] = (*TXN_MODELS, *SINGLE_MODELS, *JEPSEN_MODELS, "kafka")

SINGLE_CONSISTENCY: tuple[str, ...] = ("linearizable", "sequential")
#: every transactional model of Elle's lattice that prohibits an anomaly (cm.TXN_MODELS)
TXN_CONSISTENCY: tuple[str, ...] = cm.TXN_MODELS
#: the consistency models of the `selfhood check` contract
CONSISTENCY: tuple[str, ...] = (*SINGLE_CONSISTENCY, *TXN_CONSISTENCY)
SESSION: tuple[str, ...] = ("read-your-writes", "monotonic-reads", "monotonic-writes",
                            "writes-follow-reads")
#: checks beyond the contract, accepted by name for the models the session checker reads
#: ("crdt": the eventual mode's convergence plus CRDT merge rules, for CRDT_MODELS only)
EXTRA_CONSISTENCY: tuple[str, ...] = (*SESSION, "convergence", "crdt")

#: models that read --initial-value, and those that read --nil-read any
INITIAL_VALUE_MODELS: tuple[str, ...] = (*SINGLE_MODELS, "counter", "bank")
NIL_READ_MODELS: tuple[str, ...] = ("register", "cas-register", "multi-register")

DEFAULT_CONSISTENCY: dict[str, tuple[str, ...]] = {
    **{m: ("strict-serializable",) for m in TXN_MODELS},
    **{m: ("linearizable",) for m in SINGLE_MODELS},
    **{m: () for m in JEPSEN_MODELS},
    "kafka": (),
}


@dataclass(frozen=True, slots=True)
class KeyOrder:
    """Elle's rw-register version-order assumptions (`:linearizable-keys?`,
    `:sequential-keys?`, `:wfr-keys?`): each lets the checker infer more
    version orders, and so find more anomalies, if the store promises it."""

    linearizable_keys: bool = False
    sequential_keys: bool = False
    wfr_keys: bool = False

    def any(self) -> bool:
        return self.linearizable_keys or self.sequential_keys or self.wfr_keys


def _canonical(c: str) -> str:
    return cm.MODEL_ALIASES.get(c, c)


def resolve_consistency(model: str, consistency: Sequence[str] | str | None) -> list[str]:
    """The consistency models to check (defaults filled in), or SpecError."""
    if model not in MODELS:
        raise SpecError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if isinstance(consistency, str):
        consistency = [consistency]
    cs = list(dict.fromkeys(consistency or DEFAULT_CONSISTENCY[model]))
    for c in cs:
        if model == "kafka" or model in JEPSEN_MODELS:
            what = "its log checks (lost-write, duplicate, ...)" if model == "kafka" \
                else "its checks (docs/checkers.md)"
            raise SpecError(f"--consistency {c} makes no sense for the {model} model: "
                            f"{what} take no consistency model")
        canon = _canonical(c)
        if canon in cm.UNCHECKABLE:
            raise SpecError(f"{c} is in Elle's lattice but prohibits no anomaly a checker can "
                            f"find, so no history could fail it; use serializable or "
                            f"strict-serializable")
        if c not in SINGLE_CONSISTENCY and canon not in TXN_CONSISTENCY \
                and c not in EXTRA_CONSISTENCY:
            raise SpecError(f"unknown consistency model {c!r}; expected one of "
                            f"{', '.join(CONSISTENCY + EXTRA_CONSISTENCY)}")
        if model in SINGLE_MODELS and canon in TXN_CONSISTENCY:
            raise SpecError(f"{c} is a transactional model; the single-object model {model} "
                            f"is checked for {' or '.join(SINGLE_CONSISTENCY)}")
        if model in TXN_MODELS and c in SINGLE_CONSISTENCY:
            raise SpecError(f"{c} is a single-object model; for {model} transactions use "
                            f"strict-serializable (which implies it) or serializable")
        if c in EXTRA_CONSISTENCY and model not in SESSION_MODELS:
            raise SpecError(f"--consistency {c} is defined for "
                            f"{', '.join(sorted(SESSION_MODELS))}, not {model}")
        if c == "crdt" and model not in CRDT_MODELS:
            raise SpecError(f"--consistency crdt is defined for {', '.join(CRDT_MODELS)} "
                            f"(the eventual mode's merge rules), not {model}")
    return cs


def check_options(model: str, options: ModelOptions, key_order: KeyOrder | None = None
                  ) -> None:
    """SpecError for an option the model does not read (rather than ignoring it)."""
    if key_order is not None and key_order.any() and model != "rw-register":
        raise SpecError("--linearizable-keys, --sequential-keys and --wfr-keys are "
                        f"rw-register version-order assumptions, not for {model}")
    if options.has_initial and model not in INITIAL_VALUE_MODELS:
        raise SpecError(f"--initial-value is read by {', '.join(INITIAL_VALUE_MODELS)}, "
                        f"not {model}")
    if options.nil_read != "value" and model not in NIL_READ_MODELS:
        raise SpecError(f"--nil-read {options.nil_read} is read by "
                        f"{', '.join(NIL_READ_MODELS)}, not {model}")


def check_history(ops: Sequence[Op], *, model: str,
                  consistency: Sequence[str] | str | None = None,
                  time_limit_s: float | None = None,
                  options: ModelOptions = DEFAULT_OPTIONS,
                  key_order: KeyOrder | None = None) -> CheckResult:
    """Check a history against every requested consistency model, composed.

    `options` say how to read the ops (initial value, fail rule, nil reads:
    `linear.ModelOptions`); `key_order` holds Elle's rw-register
    assumptions. The result's details carry "model" and "consistency" (the
    list actually checked) and each checker's own details and verdict under
    its name: "elle" (transactions), "linearizable" / "sequential", "session",
    "convergence", "crdt", "kafka", or the Jepsen model's name (as Jepsen's
    checker/compose). Invalid beats unknown beats valid when parts combine.
    """
    cs = resolve_consistency(model, consistency)
    check_options(model, options, key_order)
    if all(op.process == NEMESIS for op in ops):  # the same answer for every model
        empty = CheckResult(valid=UNKNOWN, unknown_reasons=[
            "the history has no client operations: nothing to check"])
        empty.details.update({"model": model, "consistency": cs})
        return empty
    # each checker's result under its name (compose keeps them apart)
    results: dict[str, CheckResult] = {}
    if model == "kafka":
        from selfhood.checkers.kafka_log import check_kafka
        results["kafka"] = check_kafka(ops)
    if model in JEPSEN_MODELS:
        from selfhood.checkers.jepsen import check_jepsen
        results[model] = check_jepsen(ops, model, options=options)
    core = [c for c in cs if c in CONSISTENCY or _canonical(c) in TXN_CONSISTENCY]
    session = [c for c in cs if c in SESSION]
    if core and model in TXN_MODELS:
        from selfhood.checkers.txn import check_txn
        ko = key_order or KeyOrder()
        results["elle"] = check_txn(ops, workload=model, consistency=tuple(core),
                                    time_limit_s=time_limit_s, wfr_keys=ko.wfr_keys,
                                    sequential_keys=ko.sequential_keys,
                                    linearizable_keys=ko.linearizable_keys)
    elif core:
        from selfhood.checkers.linear import check_linearizable
        for c in core:
            results[c] = check_linearizable(ops, model, consistency=c,
                                            time_limit_s=time_limit_s, options=options)
    initial = options.initial if options.has_initial else None
    if session:
        from selfhood.checkers.session import check_session
        results["session"] = check_session(ops, model=model, guarantees=session,
                                           initial=initial)
    if "convergence" in cs:
        from selfhood.checkers.staleness import check_convergence
        results["convergence"] = check_convergence(ops, model=model)
    if "crdt" in cs:
        from selfhood.checkers.crdt import check_crdt
        results["crdt"] = check_crdt(ops, model=model)
    out = compose(results) if results else CheckResult(valid=True)
    details: dict[str, Any] = {"model": model, "consistency": cs}
    out.details.update(details)
    return out
