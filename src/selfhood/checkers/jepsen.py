"""Jepsen's checker models (pure): counter, bank, long-fork and queue.

Unlike the search models (`linear`), each is a direct check over the history,
as Jepsen defines it, one function per model, each returning a CheckResult
whose anomaly names follow Jepsen's error types:

- counter (`jepsen.checker/counter`): ops `add` (value: the increment) and
  `read` (value: the count). Every `ok` read must lie between the lower
  bound (increments acknowledged before the read was invoked) and the upper
  bound (increments not known to have failed, invoked before the read
  returned). Jepsen allows only non-negative increments; a negative one is
  accepted here and moves the bounds the other way. Anomaly: `counter-out-of-bounds`.
- bank (`jepsen.tests.bank`): `read` returns a map account -> balance;
  `transfer` ops are not checked themselves. Every `ok` read must name only
  known accounts (`unexpected-key`), no nil balance (`nil-balance`), sum to
  the total (`wrong-total`) and hold no negative balance (`negative-value`).
  The accounts and total come from `--initial-value` (a map of initial
  balances) or, without it, from the first `ok` read (said in details).
- long-fork (`jepsen.tests.long-fork`): write txns `[[w k v]]` (one write
  per key) and read txns `[[r k v] ...]`. Reads of the same key set must be
  totally ordered by what they saw; two reads where one saw x but not y and
  the other y but not x are a `long-fork` (ruled out by snapshot isolation
  and prefix consistency; allowed by parallel snapshot isolation). A key
  written twice makes the verdict unknown, as in Jepsen.
- queue (`jepsen.checker/total-queue`): `enqueue v`, `dequeue` (value: the
  element), `drain` (value: the elements). What goes in must come out:
  `lost` (acknowledged enqueues never dequeued), `unexpected` (dequeued but
  never enqueued) and, beyond Jepsen's verdict, which only reports them,
  `duplicated` (dequeued more often than enqueued) are invalid. An enqueue
  that failed certainly did not happen, so its value coming out is
  unexpected (Jepsen counts every invoke as an attempt). A nil dequeue (an
  empty queue) dequeues nothing. Meaningful only when the history ends with
  a full drain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from itertools import pairwise
from typing import Any

from selfhood.checkers.history import Op, Pair, freeze, pair_ops
from selfhood.checkers.linear import DEFAULT_OPTIONS, ModelOptions
from selfhood.checkers.verdict import UNKNOWN, CheckResult
from selfhood.errors import CheckerError

__all__ = ["MODELS", "check_bank", "check_counter", "check_jepsen", "check_long_fork",
           "check_queue"]

MAX_SHOWN = 20  # explanations kept per anomaly type (the count is in details)


def _client_pairs(ops: Sequence[Op]) -> list[Pair]:
    return [p for p in pair_ops([o for o in ops if o.process != "nemesis"])]


def _number(op: Op, v: Any, what: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise CheckerError(f"op {op.index}: a counter {what} must be a number, got {v!r}")
    return v


def _add(result: CheckResult, name: str, text: str, counts: Counter[str]) -> None:
    counts[name] += 1
    if counts[name] <= MAX_SHOWN:
        result.add(name, text)


# --- counter ----------------------------------------------------------------------------------


def check_counter(ops: Sequence[Op], *, options: ModelOptions = DEFAULT_OPTIONS
                  ) -> CheckResult:
    """Jepsen's counter: each ok read within [acknowledged, attempted] increments."""
    start = options.initial if options.has_initial else 0
    start = _number(Op(-1, "ok"), start, "--initial-value")
    client = [o for o in ops if o.process != "nemesis"]
    pairs = pair_ops(client)
    fate: dict[int, Op | None] = {id(p.invoke): p.completion for p in pairs}
    lower = upper = start
    at_invoke: dict[Any, tuple[int | float, Op]] = {}
    result = CheckResult(valid=True)
    counts: Counter[str] = Counter()
    reads = 0
    for op in client:
        if op.f == "add":
            v = _number(op, op.value, "increment")
            if op.type == "invoke":
                comp = fate.get(id(op))
                if comp is not None and comp.type == "fail":
                    continue
                if v >= 0:
                    upper += v
                else:
                    lower += v
            elif op.type == "ok":
                if v >= 0:
                    lower += v
                else:
                    upper += v
        elif op.f == "read":
            if op.type == "invoke":
                at_invoke[op.process] = (lower, op)
            elif op.type == "ok":
                lo, _ = at_invoke.pop(op.process, (lower, op))
                got = _number(op, op.value, "read")
                reads += 1
                if not lo <= got <= upper:
                    _add(result, "counter-out-of-bounds",
                         f"op {op.index} (process {op.process!r}) read {got}, but the counter "
                         f"was between {lo} (increments acknowledged before the read began) "
                         f"and {upper} (increments attempted before it returned)", counts)
            else:
                at_invoke.pop(op.process, None)
        elif op.type == "invoke":
            raise CheckerError(f"op {op.index}: the counter model has no operation {op.f!r} "
                               "(add, read)")
    result.valid = not result.anomalies
    result.details["counter"] = {"reads": reads, "errors": dict(counts)}
    return result


# --- bank -------------------------------------------------------------------------------------


def _balances(op: Op) -> dict[str, Any]:
    if not isinstance(op.value, dict):
        raise CheckerError(f"op {op.index}: a bank read returns a map account -> balance, "
                           f"got {op.value!r}")
    return {str(k): v for k, v in op.value.items()}


def check_bank(ops: Sequence[Op], *, options: ModelOptions = DEFAULT_OPTIONS) -> CheckResult:
    """Jepsen's bank checker over every ok read."""
    reads = [o for o in ops if o.process != "nemesis" and o.type == "ok" and o.f == "read"]
    result = CheckResult(valid=True)
    counts: Counter[str] = Counter()
    source = "--initial-value"
    if options.has_initial:
        if not isinstance(options.initial, dict):
            raise CheckerError(f"--initial-value for bank is a map account -> balance, got "
                               f"{options.initial!r}")
        init = {str(k): v for k, v in options.initial.items()}
    elif reads:
        init = _balances(reads[0])
        source = f"the first ok read (op {reads[0].index})"
    else:
        init = {}
    if any(not _is_num(v) for v in init.values()):
        raise CheckerError(f"bank: the balances of {source} must be numbers: {init!r}")
    accounts = set(init)
    total = sum(init.values())
    for op in reads:
        bal = _balances(op)
        who = f"op {op.index} (process {op.process!r})"
        unexpected = sorted(set(bal) - accounts)
        nils = sorted(k for k, v in bal.items() if v is None)
        if unexpected:
            _add(result, "unexpected-key", f"{who} read accounts {unexpected} that are not "
                 f"among the {len(accounts)} accounts of {source}", counts)
        elif nils:
            _add(result, "nil-balance", f"{who} read nil balances for accounts {nils}", counts)
        elif any(not _is_num(v) for v in bal.values()):
            raise CheckerError(f"op {op.index}: bank balances must be numbers: {op.value!r}")
        elif sum(bal.values()) != total:
            _add(result, "wrong-total", f"{who} read balances summing to "
                 f"{sum(bal.values())}, but the total is {total} ({source})", counts)
        elif any(v < 0 for v in bal.values()):
            neg = sorted(k for k, v in bal.items() if v < 0)
            _add(result, "negative-value", f"{who} read negative balances for accounts "
                 f"{neg}", counts)
    result.valid = not result.anomalies
    if not reads:
        result.valid = UNKNOWN
        result.unknown_reasons.append("the history has no ok read")
    result.details["bank"] = {"reads": len(reads), "accounts": len(accounts),
                              "total": total, "total_from": source, "errors": dict(counts)}
    return result


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# --- long-fork --------------------------------------------------------------------------------


def _mops(op: Op) -> list[tuple[str, Hashable, Any]]:
    v = op.value
    if not isinstance(v, list | tuple) or not all(
            isinstance(m, list | tuple) and len(m) == 3 and m[0] in ("r", "w", "read", "write")
            for m in v):
        raise CheckerError(f"op {op.index}: a long-fork op is a txn of [r k v] or [w k v] "
                           f"micro-ops, got {v!r}")
    return [("r" if m[0] in ("r", "read") else "w", freeze(m[1]), freeze(m[2])) for m in v]


def check_long_fork(ops: Sequence[Op]) -> CheckResult:
    """Reads of one key group must be totally ordered by the writes they saw."""
    result = CheckResult(valid=True)
    counts: Counter[str] = Counter()
    written: dict[Hashable, int] = {}
    twice: list[Hashable] = []
    groups: dict[frozenset[Hashable], list[tuple[frozenset[Hashable], Op]]] = {}
    values: dict[Hashable, tuple[Any, Op]] = {}
    n_reads = 0
    for pair in _client_pairs(ops):
        inv, comp = pair.invoke, pair.completion
        mops = _mops(inv)
        if all(f == "w" for f, _, _ in mops):
            for _, k, _ in mops:
                if k in written:
                    twice.append(k)
                written[k] = inv.index
            continue
        if any(f == "w" for f, _, _ in mops):
            raise CheckerError(f"op {inv.index}: a long-fork txn either reads or writes one "
                               "key, not both")
        if comp is None or comp.type != "ok":
            continue
        seen = _mops(comp)
        saw = set()
        for _, k, v in seen:
            if v is None:
                continue
            saw.add(k)
            prev = values.setdefault(k, (v, comp))
            if prev[0] != v:
                raise CheckerError(f"op {comp.index}: read {k!r} = {v!r}, but op "
                                   f"{prev[1].index} read {prev[0]!r}: the long-fork check "
                                   "assumes one write per key")
        keys = frozenset(k for _, k, _ in seen)
        groups.setdefault(keys, []).append((frozenset(saw), comp))
        n_reads += 1
    forks = 0
    for keys, reads in groups.items():
        # reads of one group are totally ordered iff, sorted by how much they saw,
        # each one's view contains the previous one's; a consecutive pair that is
        # not is incomparable (neither view contains the other)
        reads.sort(key=lambda r: len(r[0]))
        for (a, op_a), (b, op_b) in pairwise(reads):
            if a <= b:
                continue
            forks += 1
            x = sorted(a - b, key=repr)[0]
            y = sorted(b - a, key=repr)[0]
            _add(result, "long-fork",
                 f"op {op_a.index} (process {op_a.process!r}) saw {x!r} but not {y!r}, and "
                 f"op {op_b.index} (process {op_b.process!r}) saw {y!r} but not {x!r}: the "
                 f"writes to keys {sorted(keys, key=repr)} were seen in two orders", counts)
    if result.anomalies:
        result.valid = False
        result.not_ = {"snapshot-isolation", "prefix"}
    elif twice:
        result.valid = UNKNOWN
        result.unknown_reasons.append(f"key {twice[0]!r} is written more than once; the "
                                      "long-fork check assumes one write per key")
    result.details["long-fork"] = {"reads": n_reads, "groups": len(groups),
                                   "forks": forks, "keys_written": len(written)}
    return result


# --- queue --------------------------------------------------------------------------------------


def check_queue(ops: Sequence[Op]) -> CheckResult:
    """Jepsen's total queue: no loss, nothing unexpected, and no duplicates."""
    attempts: Counter[Hashable] = Counter()
    acked: Counter[Hashable] = Counter()
    dequeued: Counter[Hashable] = Counter()
    first_seen: dict[Hashable, Op] = {}
    for pair in _client_pairs(ops):
        inv, comp = pair.invoke, pair.completion
        if inv.f == "enqueue":
            v = freeze(inv.value)
            if comp is None or comp.type != "fail":
                attempts[v] += 1
            if comp is not None and comp.type == "ok":
                acked[v] += 1
        elif inv.f in ("dequeue", "drain"):
            if comp is None or comp.type == "fail":
                continue
            if comp.type == "info":
                if inv.f == "drain":
                    raise CheckerError(f"op {inv.index}: a crashed drain (info) cannot be "
                                       "checked: which elements it took is unknown")
                continue
            got = comp.value if inv.f == "drain" else [comp.value]
            if not isinstance(got, list | tuple):
                raise CheckerError(f"op {comp.index}: a drain returns a list, got {got!r}")
            for x in got:
                if x is None:
                    continue
                v = freeze(x)
                dequeued[v] += 1
                first_seen.setdefault(v, comp)
        elif inv.type == "invoke" or comp is None:
            raise CheckerError(f"op {inv.index}: the queue model has no operation {inv.f!r} "
                               "(enqueue, dequeue, drain)")
    # an enqueue that failed certainly did not happen, so dequeuing its value is
    # unexpected (Jepsen counts every invoke as an attempt)
    lost = acked - dequeued
    unexpected = Counter({v: n for v, n in dequeued.items() if v not in attempts})
    duplicated = (dequeued - attempts) - unexpected
    recovered = (dequeued & attempts) - acked
    result = CheckResult(valid=True)
    counts: Counter[str] = Counter()
    for v, n in sorted(lost.items(), key=lambda kv: repr(kv[0])):
        _add(result, "lost", f"{v!r} was enqueued and acknowledged {acked[v]} time(s) but "
             f"dequeued {dequeued[v]} time(s): {n} lost", counts)
    for v in sorted(unexpected, key=repr):
        _add(result, "unexpected", f"{v!r} was dequeued (first by op {first_seen[v].index}) "
             "but never enqueued", counts)
    for v in sorted(duplicated, key=repr):
        _add(result, "duplicated", f"{v!r} was dequeued {dequeued[v]} times but enqueued "
             f"{attempts[v]} time(s) (first dequeue: op {first_seen[v].index})", counts)
    result.valid = not result.anomalies
    result.details["queue"] = {
        "attempted": sum(attempts.values()), "acknowledged": sum(acked.values()),
        "dequeued": sum(dequeued.values()), "lost": sum(lost.values()),
        "unexpected": sum(unexpected.values()), "duplicated": sum(duplicated.values()),
        "recovered": sum(recovered.values())}
    return result


_CHECKS: dict[str, Callable[[Sequence[Op], ModelOptions], CheckResult]] = {
    "counter": lambda ops, o: check_counter(ops, options=o),
    "bank": lambda ops, o: check_bank(ops, options=o),
    "long-fork": lambda ops, o: check_long_fork(ops),
    "queue": lambda ops, o: check_queue(ops),
}
#: Jepsen's checker models, by name
MODELS: tuple[str, ...] = tuple(_CHECKS)


def check_jepsen(ops: Sequence[Op], model: str, *,
                 options: ModelOptions = DEFAULT_OPTIONS) -> CheckResult:
    """Dispatch to the model's check (an empty history is unknown, as for every model)."""
    result = _CHECKS[model](ops, options)
    if not any(o.process != "nemesis" for o in ops):
        result.valid = UNKNOWN
        result.unknown_reasons.append("the history is empty")
    return result
