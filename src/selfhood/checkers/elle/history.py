"""Transactions from a history, and the process / realtime orders between them (pure).

A transaction is an invoke paired with its completion. `ok` transactions
committed; `fail` certainly did not (their writes are what G1a and
dirty-update look for); `info` and never-completed ones may or may not have
committed, so they take part in the graph with their *invoked* writes and no
reads (a crashed client saw nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress
from operator import attrgetter
from typing import Any

from selfhood.checkers.elle.graph import PROCESS, REALTIME, DepGraph
from selfhood.checkers.history import Op
from selfhood.errors import HistoryError

Mop = tuple[str, Any, Any]


@dataclass(slots=True)
class Txn:
    """One transaction: dense id, its ops' indices, and its micro-ops."""

    id: int
    type: str  # ok | info | fail
    process: Any
    invoke_index: int
    index: int  # completion index (invoke index if it never completed)
    invoke_pos: int  # position in the history, for realtime order
    complete_pos: int | None
    mops: list[Mop]

    @property
    def committed(self) -> bool:
        return self.type == "ok"

    @property
    def possible(self) -> bool:
        return self.type != "fail"

    def name(self) -> str:
        return f"T{self.index}"


def hashable(x: Any) -> Any:
    """Keys/values from EDN may be lists; make them usable as dict keys (lists -> tuples)."""
    if isinstance(x, list | tuple):
        try:
            t = tuple(x)
            hash(t)
            return t
        except TypeError:
            return tuple(hashable(v) for v in x)
    return x


def _scalar(x: Any, op: Op, m: Any) -> Any:
    """A key or value usable as a dict key (lists become tuples), or HistoryError."""
    if type(x) is int or type(x) is str or x is None:
        return x
    if type(x) is list:
        t = tuple(x)
        try:
            hash(t)
            return t
        except TypeError:
            x = hashable(x)
    if isinstance(x, dict | set) or not _hashes(x):
        raise HistoryError(f"op {op.index}: micro-op {_short(m)} holds a map or set; keys and "
                           "values must be scalars (reads: lists of them)", op_index=op.index)
    return x


def _hashes(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _mops(value: Any, op: Op, reads_known: bool) -> list[Mop]:
    if type(value) is not list and not isinstance(value, tuple):
        raise HistoryError(f"op {op.index}: a transaction value must be a list of "
                           f"[f k v] micro-ops, got {_short(value)}", op_index=op.index)
    out: list[Mop] = []
    append = out.append
    for m in value:
        try:
            f, k, v = m
        except (TypeError, ValueError):
            f = None
        if type(f) is not str or type(m) is str or type(m) is dict:
            raise HistoryError(f"op {op.index}: malformed micro-op {_short(m)} (want [f k v])",
                               op_index=op.index)
        if f == "r" and not reads_known:
            v = None
        # normalize once here so analyses can hash keys and values directly
        if type(k) is not int and type(k) is not str:
            k = _scalar(k, op, m)
        if v is not None and type(v) is not int:
            if type(v) is list:  # a read: _scalar(v, op, m), inlined for the usual case
                t = tuple(v)
                try:
                    hash(t)
                    v = t
                except TypeError:
                    v = _scalar(v, op, m)
            else:
                v = _scalar(v, op, m)
        append((f, k, v))
    return out


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def transactions(ops: Sequence[Op]) -> list[Txn]:
    """Pair ops and build transactions, in invocation order.

    Keys and values are normalized with `hashable` (list reads become tuples).
    Pairing is `history.pair_ops`'s (an invoke with the next completion of its
    process; a completion with none open stands alone), done here on positions.

    Non-transaction client ops (f other than txn/None) and nemesis ops are
    ignored, as Elle does with non-client ops.

    One pass over the history (the ops are touched once, while in the CPU
    cache): a transaction gets its id when invoked and is built when it
    completes. A malformed micro-op is remembered by id, and the one of the
    earliest transaction is raised at the end, as a pass in invocation order
    would.
    """
    txns: list[Any] = []  # Txn, or (position, invoke) while open
    running: dict[Any, int] = {}  # process -> its open invoke's txn id (-1: not a txn)
    errors: dict[int, HistoryError] = {}
    built = 0
    for pos, op in enumerate(ops):
        if op.type == "invoke":
            # an earlier open invoke of the process stays indeterminate
            if ((f := op.f) is None or f == "txn") and op.process != "nemesis":
                running[op.process] = len(txns)
                txns.append((pos, op))
            else:
                running[op.process] = -1
            continue
        tid = running.pop(op.process, None)
        if tid is None:  # a completion alone: its own invoke
            if ((f := op.f) is not None and f != "txn") or op.process == "nemesis":
                continue
            tid, inv_pos, inv = len(txns), pos, op
            txns.append(None)
        elif tid < 0:
            continue
        else:
            inv_pos, inv = txns[tid]
        kind = op.type
        try:
            if kind == "info":
                # Reads of an indeterminate txn are unknown; its writes are the invoked ones.
                mops = _mops(inv.value if inv.type == "invoke" else op.value, inv, False)
            elif kind == "fail":
                mops = _mops(op.value if op.value is not None else inv.value, op, False)
            else:
                kind = "ok"
                value = op.value
                fast: list[Mop] | None = None
                if type(value) is list:  # _mops, inlined for the usual shapes
                    out: list[Mop] = []
                    append = out.append
                    for m in value:
                        if type(m) is not list or len(m) != 3:
                            break
                        f, k, v = m
                        if type(f) is not str or (type(k) is not int and type(k) is not str):
                            break
                        if v is not None and type(v) is not int:
                            if type(v) is not list:
                                break
                            v = tuple(v)
                            try:
                                hash(v)
                            except TypeError:
                                break
                        append((f, k, v))
                    else:
                        fast = out
                # anything else: _mops decides, and names what is wrong
                mops = fast if fast is not None else _mops(value, op, True)
        except HistoryError as e:
            errors[tid] = e
            mops = []
        txns[tid] = Txn(tid, kind, inv.process, inv.index, op.index, inv_pos,
                        pos if op is not inv else None, mops)
        built += 1
    if built < len(txns):  # invokes that never completed
        for tid, t in enumerate(txns):
            if type(t) is not tuple:
                continue
            inv_pos, inv = t
            try:
                mops = _mops(inv.value, inv, False)
            except HistoryError as e:
                errors[tid] = e
                mops = []
            txns[tid] = Txn(tid, "info", inv.process, inv.index, inv.index, inv_pos, None, mops)
    if errors:
        raise errors[min(errors)]
    return txns


def add_realtime_edges(g: DepGraph, txns: Sequence[Txn]) -> None:
    """T1 -> T2 when T1 committed before T2 was invoked (transitively reduced-ish).

    A committed T1 links to each transaction invoked after T1 completed and
    before the first completion of a committed transaction invoked after T1
    completed (T1's time on the "frontier" of committed transactions not yet
    known to precede a later committed one). Every real-time precedence is a
    path in the result, with O(concurrency) edges per transaction instead of
    O(n). The windows come from a suffix minimum over history positions, so
    the per-event work is C-level (accumulate, compress).
    """
    size = 1 + max(chain(map(attrgetter("invoke_pos"), txns),
                         filter(None, map(attrgetter("complete_pos"), txns))), default=0)
    ids_at = [0] * size  # txn id at the invoke position of each non-failed txn
    invokes = bytearray(size)  # 1 there
    done_by = [size] * (size + 1)  # at a committed txn's invoke position: its completion
    committed: list[tuple[int, int]] = []  # (txn id, completion position)
    for t in txns:
        kind = t.type
        if kind == "fail":
            continue
        pos = t.invoke_pos
        ids_at[pos] = t.id
        invokes[pos] = 1
        if kind == "ok" and (c := t.complete_pos) is not None:
            done_by[pos] = c
            committed.append((t.id, c))
    invoked = list(compress(ids_at, invokes))  # in invocation order
    before = list(accumulate(invokes))  # before[x]: invocations at positions <= x
    # first_done[size - x]: the first completion of a committed txn invoked at x or later
    first_done = list(accumulate(reversed(done_by), min))
    total = len(invoked)
    adj = g.adj
    for p, c in committed:
        leave = first_done[size - c - 1]
        lo = before[c]
        hi = before[leave] if leave < size else total
        if lo < hi:
            row = adj[p]
            # p is not among them: it was invoked before it completed
            for tid in invoked[lo:hi]:
                row[tid] = row.get(tid, 0) | REALTIME


def add_process_edges(g: DepGraph, txns: Sequence[Txn]) -> None:
    """T1 -> T2 for consecutive transactions of one process, T1 committed."""
    last: dict[Any, Txn] = {}
    for t in sorted((t for t in txns if t.possible), key=lambda t: t.invoke_pos):
        prev = last.get(t.process)
        if prev is not None and prev.committed and t.process is not None:
            g.link(prev.id, t.id, PROCESS)
        last[t.process] = t
