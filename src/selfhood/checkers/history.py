"""The history model (pure): Jepsen-shaped operations.

An op is one invocation or completion. `fail` means the operation certainly
had no effect; `info` (and an invoke that never completes) means the outcome
is unknown and a checker must allow both. Keys other than `type` may be
absent in histories that come from elsewhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

OpType = Literal["invoke", "ok", "fail", "info"]


@dataclass(frozen=True, slots=True)
class Op:
    """One history entry, as in Jepsen: invoke | ok | fail | info."""

    index: int
    type: OpType
    process: Any = None
    f: str | None = None
    value: Any = None
    time: int | None = None
    node: str | None = None
    instance: str | None = None
    error: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pair:
    """An invocation and its completion (None if it never completed).

    `completion.type` decides: ok = happened, fail = certainly did not,
    info / None = indeterminate.
    """

    invoke: Op
    completion: Op | None

    @property
    def ok(self) -> bool:
        return self.completion is not None and self.completion.type == "ok"

    @property
    def failed(self) -> bool:
        return self.completion is not None and self.completion.type == "fail"

    @property
    def indeterminate(self) -> bool:
        return self.completion is None or self.completion.type == "info"


def pair_ops(ops: Sequence[Op]) -> list[Pair]:
    """Pair each invoke with the next completion of the same process.

    A completion with no open invoke on its process is kept as a pair whose
    invoke is the completion itself (some recorders log only completions).
    """
    open_by_process: dict[Any, int] = {}
    pairs: list[Pair | None] = []
    for op in ops:
        if op.type == "invoke":
            if op.process in open_by_process:
                # previous invoke never completed: it stays indeterminate
                pass
            open_by_process[op.process] = len(pairs)
            pairs.append(Pair(op, None))
        else:
            slot = open_by_process.pop(op.process, None)
            if slot is None:
                pairs.append(Pair(op, op))
            else:
                inv = pairs[slot]
                assert inv is not None
                pairs[slot] = Pair(inv.invoke, op)
    return [p for p in pairs if p is not None]


def is_final(op: Op) -> bool:
    """A final read (after heal and quiescence): f "final-read", or any op marked final."""
    return op.f == "final-read" or bool(op.extra.get("final"))


def freeze(x: Any) -> Hashable:
    """A value made usable as a key: lists/tuples -> tuples, dicts -> sorted (str key, value)
    tuples, sets -> frozensets, recursively (ints and strs, the common case, returned at once)."""
    if type(x) is int or type(x) is str:
        return x
    if isinstance(x, list | tuple):
        return tuple(freeze(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in x.items()))
    if isinstance(x, set | frozenset):
        return frozenset(freeze(v) for v in x)
    return x  # type: ignore[no-any-return]


def reindex(ops: Iterable[Op]) -> list[Op]:
    """Give ops dense indices in file order (input from elsewhere may lack them)."""
    out = []
    for i, op in enumerate(ops):
        if op.index != i:
            op = Op(i, op.type, op.process, op.f, op.value, op.time, op.node,
                    op.instance, op.error, op.extra)
        out.append(op)
    return out
