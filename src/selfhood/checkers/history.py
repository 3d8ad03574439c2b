"""The history model (pure): Jepsen-shaped operations.

An op is one invocation or completion. `fail` means the operation certainly
had no effect; `info` (and an invoke that never completes) means the outcome
is unknown and a checker must allow both. Keys other than `type` may be
absent in histories that come from elsewhere.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, cast

import msgspec

from selfhood.errors import HistoryError
from selfhood.slots import slot_maker

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


#: an Op from fields already checked (validating them is the caller's job:
#: op_from_fields), in about a third of the time of ``Op(...)``: readers build one
#: Op per line (10^5 and more), the simulator two per client op
make_op: Callable[[int, OpType, Any, str | None, Any, int | None, str | None, str | None, Any,
                   dict[str, Any]], Op] = slot_maker(Op)


class OpFields(msgspec.Struct, forbid_unknown_fields=True):
    """An op's fields as the JSON readers decode them in bulk: exactly what
    op_from_fields accepts as is (anything else fails to decode, and the reader
    then goes op by op through op_from_fields, which names what is wrong)."""

    type: OpType
    index: Annotated[int, msgspec.Meta(ge=0)] | None = None
    time: Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)] | None = None
    process: int | str | None = None
    f: str | None = None
    value: Any = None
    node: str | None = None
    instance: str | None = None
    error: Any = None


def ops_from_records(recs: Sequence[OpFields], start: int = 0) -> list[Op]:
    """Ops from decoded records, the first at position `start`; a missing index is
    the position."""
    return [make_op(pos if r.index is None else r.index, r.type, r.process, r.f, r.value, r.time,
                    r.node, r.instance, r.error, {}) for pos, r in enumerate(recs, start)]


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


#: Jepsen's fault injector: its ops are not client operations and pair loosely
NEMESIS = "nemesis"

_TYPES = frozenset({"invoke", "ok", "fail", "info"})
_FIELDS = frozenset({"index", "type", "process", "f", "value", "time", "node", "instance",
                     "error"})
#: times are nanoseconds in 64 bits, as in Jepsen and Porcupine
_TIME_BOUND = 1 << 63


def _bad_time(time: Any) -> int:
    """A non-int :time made an int, or HistoryError: a finite float is truncated."""
    if isinstance(time, float) and math.isfinite(time) and -_TIME_BOUND <= time < _TIME_BOUND:
        return int(time)
    if isinstance(time, int) and not isinstance(time, bool):
        raise HistoryError(f"'time' {time} does not fit in 64 bits (nanoseconds)")
    raise HistoryError(f"'time' must be a finite number of nanoseconds, got {time!r}")


def op_from_fields(m: dict[Any, Any], position: int) -> Op:
    """One decoded op map (JSON object or EDN map) -> Op, or HistoryError without a line.

    The one validator of op fields for every reader: `type` is required; `index`
    defaults to the position in the file; `time` is an integer (a finite float is
    truncated) in 64 bits, negative allowed (only order matters, as in Porcupine);
    `process` is an integer or a name; `f` a name. Other keys go to `extra`.
    """
    typ = m.get("type")
    if type(typ) is not str or typ not in _TYPES:
        raise HistoryError(f"'type' must be one of invoke, ok, fail, info; got {typ!r}")
    index = m.get("index", position)
    if type(index) is not int or index < 0:
        raise HistoryError(f"'index' must be a non-negative integer, got {index!r}")
    time = m.get("time")
    if time is not None and (type(time) is not int or not -_TIME_BOUND <= time < _TIME_BOUND):
        time = _bad_time(time)
    process = m.get("process")
    if process is not None and type(process) is not int and type(process) is not str:
        raise HistoryError(f"'process' must be an integer or a name, got {process!r}")
    f = m.get("f")
    if f is not None and type(f) is not str:
        if type(f) is not int:
            raise HistoryError(f"'f' must be a name, got {f!r}")
        f = str(f)
    node = m.get("node")
    instance = m.get("instance")
    extra = {} if _FIELDS.issuperset(m) else {
        str(k): v for k, v in m.items() if k not in _FIELDS}
    return make_op(index, cast(OpType, typ), process, f, m.get("value"), time,
                   None if node is None else str(node),
                   None if instance is None else str(instance), m.get("error"), extra)


class _Malformed(HistoryError):
    """check_well_formed's error: it knows the op's position in the file."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position


def check_well_formed(ops: Sequence[Op], where: Callable[[int], str] | None = None) -> None:
    """Raise HistoryError (a `position` attribute) at the first op that makes `ops` no
    history.

    The rules (docs/checkers.md, "Well-formed histories"): indices strictly
    increase in file order; one process's times never go backwards (between
    processes they may: the file order is the real-time order, as in Jepsen, whose
    workers stamp an op just before it enters the history); a client process (any
    but "nemesis") has at most one outstanding invocation, and every completion
    follows an invocation of its process with the same `f`. A history without any
    invocation is a list of completions (as Elle's tests write them), each its own
    operation. `where(position)` names another op in a message ("line 3"); ops are
    named by position without it.
    """
    name = where or (lambda i: f"op {i}")
    last_index: int | None = None
    last_pos = -1
    paired = any(op.type == "invoke" for op in ops)
    running: dict[Any, int] = {}
    last_time: dict[Any, int] = {}  # process -> its last time
    last_at: dict[Any, int] = {}  # process -> the position of that op
    for pos, op in enumerate(ops):
        if last_index is not None and op.index <= last_index:
            again = "repeats" if op.index == last_index else "is below"
            raise _Malformed(pos, f"index {op.index} {again} the index {last_index} of "
                               f"{name(last_pos)}: indices must increase in file order")
        last_index, last_pos = op.index, pos
        process = op.process
        time = op.time
        if time is not None:
            before = last_time.get(process)
            if before is not None and time < before:
                raise _Malformed(pos,
                    f"time {time} is before the time {before} of {name(last_at[process])}, "
                    f"an earlier op of process {process!r}: one process's times cannot go "
                    "backwards")
            last_time[process] = time
            last_at[process] = pos
        if not paired or process == NEMESIS:
            continue
        if op.type == "invoke":
            if process in running:
                raise _Malformed(pos,
                    f"process {process!r} invokes again while its invocation at "
                    f"{name(running[process])} has not completed (a process runs one "
                    "operation at a time; a crashed one is replaced by a new process)")
            running[process] = pos
            continue
        inv_pos = running.pop(process, None)
        if inv_pos is None:
            raise _Malformed(pos, f"{op.type} completion for process {process!r}, which has "
                               "no invocation outstanding")
        inv = ops[inv_pos]
        if op.f is not None and inv.f is not None and op.f != inv.f:
            raise _Malformed(pos, f"{op.type} completion of {op.f!r} for the invocation of "
                               f"{inv.f!r} at {name(inv_pos)}")


@contextmanager
def paused_gc(*, promote: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector while reading and checking a big history.

    Parsing and graph building allocate millions of containers and free almost
    none, so the collector's passes find nothing; in CPython they cost about as
    much again as the work itself (3-4x at 200k ops). Reference counting still
    frees everything; the collector resumes (if it was on) on the way out.

    ``promote``: what the block leaves alive goes straight to the oldest
    generation as the collector resumes. Resumed plainly, the next allocation
    starts a young collection that traces every container the block allocated
    and kept (a simulated run's history: ~5 % of a 10k-op run). Only for a block
    that leaves no cyclic garbage: garbage promoted with it waits for a full
    collection. Skipped if anything is frozen (`gc.freeze`), which this would thaw.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if promote and gc.get_freeze_count() == 0:
                gc.freeze()  # every tracked object to the permanent generation (O(1)) ...
                gc.unfreeze()  # ... and back into the oldest one, untraced
            gc.enable()


def is_final(op: Op) -> bool:
    """A final read (after heal and quiescence): f "final-read", or any op marked final."""
    return op.f == "final-read" or bool(op.extra.get("final"))


#: models whose ops are transactions of ``[f k v]`` micro-ops
TXN_MODELS: Final = ("list-append", "rw-register")


def micro_ops(value: Any) -> list[Any]:
    """A transaction value's well-shaped ``[f k v]`` micro-ops (anything else skipped:
    the measures that call this read what they can; the checkers validate shape)."""
    if not isinstance(value, list | tuple):
        return []
    return [m for m in value if isinstance(m, list | tuple) and len(m) == 3]


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


def repeated(xs: Iterable[Hashable]) -> list[Hashable]:
    """The elements that occur more than once in ``xs``, each once, in the order they
    repeat (a set read, or a list read of unique appends, must have none)."""
    seen: set[Hashable] = set()
    out: dict[Hashable, None] = {}
    for x in xs:
        if x in seen:
            out[x] = None
        seen.add(x)
    return list(out)


def reindex(ops: Iterable[Op]) -> list[Op]:
    """Give ops dense indices in file order (input from elsewhere may lack them)."""
    out = []
    for i, op in enumerate(ops):
        if op.index != i:
            op = Op(i, op.type, op.process, op.f, op.value, op.time, op.node,
                    op.instance, op.error, op.extra)
        out.append(op)
    return out
