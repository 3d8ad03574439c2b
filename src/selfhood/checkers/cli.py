"""`selfhood check`: judge any history file.

Contract (issue 4): exit 0 valid, 1 invalid, 2 unknown, 64 usage error, 65
unreadable or malformed history; ``--json`` prints exactly one object with
the keys valid, model, consistency, anomaly_types, anomalies, not, ops,
elapsed_s. Errors are one line on stderr (selfhood.cli.main maps
HistoryError to 65 and SpecError to 64), never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from selfhood.checkers.api import (
    CONSISTENCY,
    EXTRA_CONSISTENCY,
    MODELS,
    KeyOrder,
    ModelOptions,
    check_history,
    check_options,
    resolve_consistency,
)
from selfhood.checkers.formats import FORMATS
from selfhood.checkers.history import paused_gc
from selfhood.checkers.linear import FAIL_RULES, NIL_READS
from selfhood.checkers.verdict import CheckResult
from selfhood.errors import CheckerError, CheckTimeout, HistoryError, SpecError

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2


def _exit_code(valid: Any) -> int:
    if valid is True:
        return EXIT_VALID
    if valid is False:
        return EXIT_INVALID
    return EXIT_UNKNOWN


def _verdict_word(valid: Any) -> str:
    return {True: "VALID", False: "INVALID"}.get(valid, "UNKNOWN")


def to_json(result: CheckResult, *, model: str, consistency: list[str], ops: int,
            elapsed_s: float) -> dict[str, Any]:
    """The `--json` object, exactly the contract's keys."""
    return {
        "valid": result.valid,
        "model": model,
        "consistency": consistency,
        "anomaly_types": result.anomaly_types,
        "anomalies": {k: [str(e) for e in v] for k, v in sorted(result.anomalies.items())},
        "not": sorted(result.not_),
        "ops": ops,
        "elapsed_s": round(elapsed_s, 6),
    }


def render_human(result: CheckResult, *, path: str, model: str, consistency: list[str],
                 ops: int, elapsed_s: float, max_examples: int = 8) -> str:
    """Verdict line, then each anomaly type with its explanations."""
    under = ", ".join(consistency) if consistency else f"the {model} model's checks"
    lines = [f"{_verdict_word(result.valid)}: {path} ({model}, {ops} ops) under {under} "
             f"[{elapsed_s:.3f} s]"]
    for name in result.anomaly_types:
        cases = result.anomalies[name]
        lines.append(f"  {name} ({len(cases)}):")
        for e in cases[:max_examples]:
            lines.append("    - " + str(e).replace("\n", "\n      "))
        if len(cases) > max_examples:
            lines.append(f"    ... and {len(cases) - max_examples} more")
    if result.not_:
        lines.append("  ruled out: " + ", ".join(sorted(result.not_)))
    for reason in result.unknown_reasons:
        lines.append(f"  unknown: {reason}")
    return "\n".join(lines)


#: formats whose `:fail` means "certainly did not happen", with nothing observed (Jepsen's
#: definition, which Knossos applies by dropping them); others observe a cas mismatch
_DROPS_FAILS = ("edn", "json")


def default_fail_rule(fmt: str) -> str:
    """The --fail default for a history read in `fmt`: "drop" for Jepsen's EDN and
    elle-cli's JSON, else "observe"."""
    return "drop" if fmt in _DROPS_FAILS else "observe"


def parse_value(text: str) -> Any:
    """An --initial-value: EDN (Jepsen's notation) first, then JSON."""
    from selfhood.checkers.edn import parse_edn

    try:
        forms = parse_edn(text)
        if len(forms) == 1:
            return forms[0]
    except HistoryError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SpecError(f"--initial-value {text!r} is not one EDN or JSON value") from None


@click.command("check")
@click.argument("history", metavar="HISTORY")
@click.option("--model", "model", required=True, type=click.Choice(MODELS),
              help="How to read the history.")
@click.option("--consistency", "consistency", multiple=True, metavar="C",
              help="Consistency model to check (repeatable): "
                   + " | ".join(CONSISTENCY)
                   + ". Default: strict-serializable for txn models, linearizable for the "
                     "search models, none for counter, bank, long-fork, queue and kafka. "
                     "Also accepted: " + ", ".join(EXTRA_CONSISTENCY)
                   + ".")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="History format: jsonl (ours), json (elle-cli's array of ops), edn, "
                   "jepsen-log.")
@click.option("--time-limit", "time_limit", type=float, default=None, metavar="S",
              help="Seconds for the whole check (reading, graph building, search) before "
                   "it gives up and reports unknown.")
@click.option("--initial-value", "initial", default=None, metavar="V",
              help="State before any op, an EDN or JSON value (e.g. 0, nil, [1 2], "
                   "{0 10 1 10} for bank). Default: the model's own (nil for registers).")
@click.option("--fail", "fail_rule", type=click.Choice(FAIL_RULES), default=None,
              help="How to read :fail ops: drop every one (Jepsen, Knossos) or observe a "
                   "cas fail without an error as a compare mismatch (Porcupine's etcd logs). "
                   "Default: drop for EDN, observe for JSON lines and Jepsen logs.")
@click.option("--nil-read", "nil_read", type=click.Choice(NIL_READS), default="value",
              show_default=True,
              help="An ok read of nil is the value nil, or (any) an unknown value legal in "
                   "every state, as Knossos's register models read it.")
@click.option("--linearizable-keys", is_flag=True,
              help="rw-register: assume each key is linearizable (Elle's linearizable-keys?).")
@click.option("--sequential-keys", is_flag=True,
              help="rw-register: assume each key is sequentially consistent "
                   "(Elle's sequential-keys?).")
@click.option("--wfr-keys", is_flag=True,
              help="rw-register: assume writes follow reads within a txn (Elle's wfr-keys?).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(history: str, model: str, consistency: tuple[str, ...],
          fmt: str, time_limit: float | None, initial: str | None, fail_rule: str | None,
          nil_read: str, linearizable_keys: bool, sequential_keys: bool, wfr_keys: bool,
          as_json: bool) -> None:
    """Check HISTORY (JSON lines, elle-cli JSON, Jepsen EDN or a Jepsen log) against a
    consistency model.

    Exit status: 0 valid, 1 invalid, 2 unknown (time limit, or nothing to check),
    64 usage error, 65 unreadable or malformed history (path:line: and what is wrong).
    """
    from selfhood.checkers.formats import load_history

    if time_limit is not None and not time_limit > 0:
        raise SpecError(f"--time-limit must be a positive number of seconds, got {time_limit}")
    cs_in = [c.strip() for item in consistency for c in item.split(",") if c.strip()]
    cs = resolve_consistency(model, cs_in or None)  # usage errors before any reading
    key_order = KeyOrder(linearizable_keys, sequential_keys, wfr_keys)

    def model_options(fail: str) -> ModelOptions:
        return ModelOptions.make(
            initial=None if initial is None else parse_value(initial),
            has_initial=initial is not None, fail=fail, nil_read=nil_read)

    check_options(model, model_options(fail_rule or "observe"), key_order)
    started = time.monotonic()
    deadline = None if time_limit is None else started + time_limit
    n_ops = 0
    with paused_gc():
        try:
            parsed = load_history(history, fmt, deadline=deadline)
            n_ops = len(parsed.ops)
            options = model_options(fail_rule or default_fail_rule(parsed.format))
            left = None if deadline is None else max(deadline - time.monotonic(), 1e-3)
            result = check_history(parsed.ops, model=model, consistency=cs, time_limit_s=left,
                                   options=options, key_order=key_order)
        except CheckTimeout as exc:
            result = CheckResult(valid="unknown", unknown_reasons=[str(exc)])
        except HistoryError as exc:
            if exc.path is not None:
                raise
            # the file parsed, but an op does not fit the model (e.g. a :cas in a kv history)
            line = None if exc.op_index is None else parsed.line_of_index(exc.op_index)
            raise HistoryError(f"history does not fit model {model}: {exc.message}",
                               path=history, line=line) from None
        except SpecError:
            raise
        except CheckerError as exc:
            raise HistoryError(f"history does not fit model {model}: {exc}",
                               path=history) from None
        except RecursionError:
            raise HistoryError("values nest too deeply to check", path=history) from None
    elapsed = time.monotonic() - started
    if as_json:
        click.echo(json.dumps(to_json(result, model=model, consistency=cs, ops=n_ops,
                                      elapsed_s=elapsed), default=str))
    else:
        click.echo(render_human(result, path=history, model=model, consistency=cs,
                                ops=n_ops, elapsed_s=elapsed))
    # sys.exit, not ctx.exit: non-standalone click would turn ctx.exit into a return value
    sys.exit(_exit_code(result.valid))
