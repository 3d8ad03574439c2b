"""The eventual mode's promise: convergence *and* its CRDT merge rules (pure).

An eventual replica acknowledges a write at once and merges everything else
as CRDTs (``selfhood.projections.crdt``). A history cannot show hybrid
clocks, so these checks use only what the merge rules imply about reads and
final reads (issued after heal and quiescence):

- **set** (governance rules, a remove-wins set): once a replica has
  acknowledged ``remove x`` it has applied it, and no merge can bring ``x``
  back there, so a later read served by that same replica showing ``x`` is
  ``revived-rule``; a final read showing a removed ``x`` is ``revived-rule``
  too. Reads on *other* replicas before the removal reached them are stale,
  not a merge violation (staleness and session-level revivals are measured
  elsewhere). A final read must hold every acknowledged add of an element
  nobody tried to remove (``lost-add``, Jepsen's set ``lost``) and nothing
  that was never added (``unexpected``, Jepsen's name); any read holding an
  element twice is ``duplicate-elements``;
- **list-append** (the transcript, a grow-only list ordered by (hlc, writer,
  event_id)): an acknowledged append that no final read of its key holds is
  ``lost-append``; a final read element nobody appended is ``garbage-read``;
  an element twice in one read is ``duplicate-elements`` (Elle's name); an
  append that a final order puts before an element its own transaction had
  read is ``hlc-order`` (its stamp must exceed everything its replica merged);
- **register / rw-register** (last-writer-wins on hlc): a final value that no
  acknowledged or indeterminate write wrote is ``garbage-read``; the initial
  value where some write to the key was acknowledged is ``lost-write`` (the
  register holds the greatest stamp of the writes it merged, so one merged
  acknowledged write leaves a non-initial value).

Every model also needs the final reads of each key to agree across replicas
(``divergent-final-reads``, as in `check_convergence`: a set compares as a
set, a list in order); a history without final reads is "unknown".

Final reads, their replicas and keys are those of `selfhood.checkers.convergence`
(ops with ``f == "final-read"`` or ``final: true``; the replica is the op's
``node``). For the set model the key is the op's ``instance`` (one set per
instance; none: one set).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from selfhood.checkers.convergence import (
    FinalRead,
    agreement,
    final_reads,
    final_values,
    replica_of,
)
from selfhood.checkers.history import (
    TXN_MODELS,
    Op,
    Pair,
    freeze,
    is_final,
    micro_ops,
    pair_ops,
    repeated,
)
from selfhood.checkers.verdict import CheckResult
from selfhood.errors import CheckerError

__all__ = [
    "CRDT_MODELS",
    "check_crdt",
    "divergence_cases",
    "grow_only_list_cases",
    "hlc_order_cases",
    "lww_register_cases",
    "remove_wins_set_cases",
]

#: the models the CRDT rules are defined for
CRDT_MODELS: Final = (*TXN_MODELS, "register", "set")

#: explanations kept per anomaly name (counts in details["crdt"]["anomaly_counts"] are exact)
MAX_EXAMPLES: Final = 50


def _t(op: Op | None, default: int) -> int:
    return default if op is None or op.time is None else op.time


@dataclass(frozen=True, slots=True)
class ReadThenAppend:
    """An acknowledged append and what its own transaction had read of that list before it."""

    key: Hashable
    value: Hashable
    read: tuple[Hashable, ...]
    index: int
    node: str


@dataclass(frozen=True, slots=True)
class Write:
    """A write (append, register write, add or remove) and how it ended."""

    key: Hashable
    value: Hashable
    status: str  # "ok" | "info" (indeterminate, incl. never completed)
    index: int
    node: str
    complete_time: int | None
    invoke_time: int | None = None


def crash_times(ops: Sequence[Op]) -> dict[str, list[int]]:
    """When each node crashed (nemesis ``crash`` ops whose value names the node(s))."""
    out: dict[str, list[int]] = defaultdict(list)
    for op in ops:
        if op.process != "nemesis" or op.f != "crash" or op.time is None:
            continue
        nodes = op.value if isinstance(op.value, list | tuple) else [op.value]
        for n in nodes:
            if isinstance(n, str) and op.time not in out[n]:
                out[n].append(op.time)
    return out


def _crash_note(w: Write, crashes: dict[str, list[int]]) -> str:
    """Why an acknowledged write may be gone: its replica crashed after the write began.

    The replica acknowledged it somewhere between invoke and completion (the
    reply may still have been in flight when it crashed).
    """
    start = w.invoke_time if w.invoke_time is not None else w.complete_time
    if start is None:
        return ""
    later = [t for t in crashes.get(w.node, []) if t >= start]
    if not later:
        return ""
    return (f" ({w.node} crashed {(min(later) - start) / 1e6:.1f} ms after the write began: "
            f"a local-first ack lost with the unshipped outbox)")


def _status(pair: Pair) -> str | None:
    if pair.failed:
        return None  # certainly no effect
    return "ok" if pair.ok else "info"


def read_then_appends(pairs: Sequence[Pair]) -> list[ReadThenAppend]:
    """Acknowledged appends of transactions that had read the same list first."""
    out: list[ReadThenAppend] = []
    for p in pairs:
        c = p.completion
        if c is None or c.type != "ok" or is_final(c) or is_final(p.invoke):
            continue
        last_read: dict[Hashable, tuple[Hashable, ...]] = {}
        for f, k, v in micro_ops(c.value):
            key = freeze(k)
            if f == "r" and isinstance(v, list | tuple):
                last_read[key] = tuple(freeze(x) for x in v)
            elif f == "append" and key in last_read:
                out.append(ReadThenAppend(key, freeze(v), last_read[key], c.index,
                                          replica_of(p)))
    return out


def _final_values(op: Op, model: str) -> list[tuple[Hashable, Any]]:
    """`final_values`, refusing a register final read that names no register."""
    v = op.value
    if model == "register" and not (isinstance(v, dict) or (isinstance(v, list | tuple)
                                                            and len(v) == 2)):
        raise CheckerError(f"op {op.index}: a register final read must be [key value]")
    return final_values(op, model)


def _collect(ops: Sequence[Op], model: str) -> tuple[list[Pair], list[Write], list[FinalRead]]:
    """Client pairs, every write that may have happened, and every final value per key."""
    pairs = [p for p in pair_ops(ops) if p.invoke.process != "nemesis"]
    finals = final_reads(pairs, lambda op: _final_values(op, model))
    writes: list[Write] = []
    for p in pairs:
        inv, c = p.invoke, p.completion
        if is_final(inv) or (c is not None and is_final(c)):
            continue
        st = _status(p)
        if st is None:
            continue
        ctime = c.time if c is not None and st == "ok" else None
        src = c.value if st == "ok" and c is not None else inv.value
        node, itime = replica_of(p), inv.time
        if model in TXN_MODELS:
            wf = "append" if model == "list-append" else "w"
            for f, k, v in micro_ops(src):
                if f == wf:
                    writes.append(Write(freeze(k), freeze(v), st, inv.index, node, ctime, itime))
        elif model == "register":
            if inv.f == "write" and isinstance(inv.value, list | tuple) and len(inv.value) == 2:
                k, v = inv.value
                writes.append(Write(freeze(k), freeze(v), st, inv.index, node, ctime, itime))
        elif inv.f in ("add", "remove"):
            writes.append(Write(inv.instance, freeze(inv.value), st if inv.f == "add"
                                else "remove-" + st, inv.index, node, ctime, itime))
    return pairs, writes, finals


def divergence_cases(finals: Sequence[FinalRead], model: str) -> list[str]:
    """Keys whose replicas ended with different final values (each replica's last read;
    a set compares as a set, a list in order: `convergence.agreement`)."""
    return [a.describe() for a in agreement(finals, model) if a.divergent]


def hlc_order_cases(rtas: Sequence[ReadThenAppend],
                    finals: Sequence[FinalRead]) -> list[str]:
    """Appends ordered before an element their own transaction had read.

    An eventual replica stamps a local write with a hybrid clock that is past
    every event it has merged (tick after receive), and the merged transcript
    is sorted by (hlc, writer, event_id); so in every final order an append
    comes after everything its transaction read of that list.
    """
    by_key: dict[Hashable, list[ReadThenAppend]] = defaultdict(list)
    for r in rtas:
        by_key[r.key].append(r)
    out: list[str] = []
    flagged: set[tuple[Hashable, Hashable]] = set()
    for fr in finals:
        if not isinstance(fr.value, list | tuple) or fr.key not in by_key:
            continue
        pos = {freeze(x): i for i, x in enumerate(fr.value)}
        for r in by_key[fr.key]:
            at = pos.get(r.value)
            if at is None or (r.key, r.value) in flagged:
                continue
            later = [e for e in r.read if pos.get(e, -1) > at]
            if later:
                flagged.add((r.key, r.value))
                out.append(
                    f"final read op {fr.index} ({fr.replica}) of {fr.key!r} puts {r.value!r} "
                    f"(appended by op {r.index} on {r.node}) before {later[0]!r}, which that "
                    f"transaction had already read: its hybrid clock stamp was not past "
                    f"what its replica had merged")
    return out


def grow_only_list_cases(writes: Sequence[Write], finals: Sequence[FinalRead],
                         crashes: dict[str, list[int]] | None = None) -> dict[str, list[str]]:
    """lost-append, garbage-read and duplicate-elements for list-append final reads."""
    out: dict[str, list[str]] = defaultdict(list)
    appended: dict[Hashable, dict[Hashable, Write]] = defaultdict(dict)
    for w in writes:
        appended[w.key].setdefault(w.value, w)
    held: dict[Hashable, set[Hashable]] = defaultdict(set)
    for fr in finals:
        elems = [freeze(x) for x in fr.value] if isinstance(fr.value, list | tuple) else []
        if fr.value is not None and not isinstance(fr.value, list | tuple):
            out["garbage-read"].append(f"final read op {fr.index} ({fr.replica}) of key "
                                       f"{fr.key!r} returned a non-list {fr.value!r}")
            continue
        out["duplicate-elements"] += _twice(f"final read op {fr.index} ({fr.replica})", fr.key,
                                            elems, "a grow-only list of unique turns")
        for x in elems:
            if x not in appended.get(fr.key, {}):
                out["garbage-read"].append(
                    f"final read op {fr.index} ({fr.replica}) of key {fr.key!r} holds {x!r}, "
                    f"which no append that may have happened wrote")
        held[fr.key].update(elems)
    keys_read = {fr.key for fr in finals}
    for key, ws in appended.items():
        if key not in keys_read:
            continue
        for v, w in ws.items():
            if w.status == "ok" and v not in held[key]:
                out["lost-append"].append(
                    f"acknowledged append of {v!r} to {key!r} (op {w.index}, {w.node}) is in no "
                    f"final read: an acknowledged turn was lost"
                    + _crash_note(w, crashes or {}))
    return dict(out)


def _twice(read: str, key: Hashable, elems: Sequence[Hashable], what: str) -> list[str]:
    """One case per element that one read holds more than once."""
    return [f"{read} of key {key!r} holds {x!r} twice: {what} never repeats one"
            for x in repeated(elems)]


def lww_register_cases(writes: Sequence[Write], finals: Sequence[FinalRead],
                       crashes: dict[str, list[int]] | None = None) -> dict[str, list[str]]:
    """garbage-read and lost-write for last-writer-wins register final reads."""
    out: dict[str, list[str]] = defaultdict(list)
    written: dict[Hashable, dict[Hashable, Write]] = defaultdict(dict)
    for w in writes:
        written[w.key].setdefault(w.value, w)
    flagged: set[tuple[Hashable, Hashable]] = set()
    for fr in finals:
        v = freeze(fr.value)
        ws = written.get(fr.key, {})
        if v is None:
            acked = [w for w in ws.values() if w.status == "ok"]
            if acked and (fr.key, None) not in flagged:
                flagged.add((fr.key, None))
                out["lost-write"].append(
                    f"final read op {fr.index} ({fr.replica}) of {fr.key!r} returned the "
                    f"initial value, but {len(acked)} write(s) were acknowledged (first: op "
                    f"{acked[0].index} wrote {acked[0].value!r}): last-writer-wins keeps one"
                    + _crash_note(acked[0], crashes or {}))
        elif v not in ws and (fr.key, v) not in flagged:
            flagged.add((fr.key, v))
            out["garbage-read"].append(
                f"final read op {fr.index} ({fr.replica}) of {fr.key!r} returned {fr.value!r}, "
                f"which no acknowledged or indeterminate write wrote")
    return dict(out)


def remove_wins_set_cases(pairs: Sequence[Pair], writes: Sequence[Write],
                          finals: Sequence[FinalRead],
                          crashes: dict[str, list[int]] | None = None) -> dict[str, list[str]]:
    """revived-rule, lost-add, unexpected and duplicate-elements for a remove-wins set."""
    out: dict[str, list[str]] = defaultdict(list)
    removed_ok: dict[tuple[Hashable, Hashable], list[Write]] = defaultdict(list)
    remove_tried: set[tuple[Hashable, Hashable]] = set()
    adds: dict[tuple[Hashable, Hashable], list[Write]] = defaultdict(list)
    for w in writes:
        k = (w.key, w.value)
        if w.status.startswith("remove-"):
            remove_tried.add(k)
            if w.status == "remove-ok":
                removed_ok[k].append(w)
        else:
            adds[k].append(w)
    revived: set[tuple[Hashable, Hashable, str]] = set()
    # reads during the run, on the replica that had itself acknowledged the removal
    for p in pairs:
        c = p.completion
        if c is None or c.type != "ok" or p.invoke.f != "read" or is_final(c):
            continue
        if not isinstance(c.value, list | tuple):
            continue
        node, start = replica_of(p), _t(p.invoke, 0)
        elems = [freeze(e) for e in c.value]
        out["duplicate-elements"] += _twice(f"read op {c.index} ({node})", p.invoke.instance,
                                            elems, "a set")
        for x in set(elems):
            for w in removed_ok.get((p.invoke.instance, x), ()):
                if (w.node == node and w.complete_time is not None and w.complete_time < start
                        and (p.invoke.instance, x, node) not in revived):
                    revived.add((p.invoke.instance, x, node))
                    out["revived-rule"].append(
                        f"read op {c.index} on {node} shows {x!r} of {p.invoke.instance!r} "
                        f"active after {node} itself acknowledged its removal (op {w.index}): "
                        f"remove wins, nothing brings it back" + _crash_note(w, crashes or {}))
                    break
    lacking: dict[tuple[Hashable, Hashable], list[str]] = defaultdict(list)
    first_ack: dict[tuple[Hashable, Hashable], Write] = {}
    for fr in finals:
        if fr.value is not None and not isinstance(fr.value, list | tuple):
            raise CheckerError(f"op {fr.index}: a set final read must return a collection")
        elems = [freeze(e) for e in (fr.value or ())]
        out["duplicate-elements"] += _twice(f"final read op {fr.index} ({fr.replica})", fr.key,
                                            elems, "a set")
        active = set(elems)
        for x in sorted(active, key=repr):
            rem = removed_ok.get((fr.key, x))
            if rem and (fr.key, x, "final " + fr.replica) not in revived:
                revived.add((fr.key, x, "final " + fr.replica))
                out["revived-rule"].append(
                    f"final read op {fr.index} ({fr.replica}) shows {x!r} of {fr.key!r} active, "
                    f"but its removal was acknowledged (op {rem[0].index}, {rem[0].node})"
                    + _crash_note(rem[0], crashes or {}))
            if not adds.get((fr.key, x)):
                out["unexpected"].append(
                    f"final read op {fr.index} ({fr.replica}) shows {x!r} of {fr.key!r}, "
                    f"which nobody tried to add")
        for (key, x), ws in adds.items():
            if key != fr.key or x in active or (key, x) in remove_tried:
                continue
            acked = [w for w in ws if w.status == "ok" and w.complete_time is not None
                     and w.complete_time < (fr.invoke_time or 0)]
            if acked:
                lacking[(key, x)].append(fr.replica)
                first_ack.setdefault((key, x), acked[0])
    for (key, x), replicas in lacking.items():
        w = first_ack[(key, x)]
        out["lost-add"].append(
            f"final reads on {', '.join(sorted(set(replicas)))} of {key!r} lack {x!r}, added "
            f"and acknowledged (op {w.index}, {w.node}) and never removed"
            + _crash_note(w, crashes or {}))
    return dict(out)


def check_crdt(ops: Sequence[Op], *, model: str) -> CheckResult:
    """Convergence plus the model's CRDT merge rules (see the module docstring)."""
    if model not in CRDT_MODELS:
        raise CheckerError(f"the CRDT rules are defined for {', '.join(CRDT_MODELS)}, "
                           f"not {model}")
    pairs, writes, finals = _collect(ops, model)
    res = CheckResult(valid=True)
    found: dict[str, list[str]] = {}
    div = divergence_cases(finals, model)
    if div:
        found["divergent-final-reads"] = div
    crashes = crash_times(ops)
    if model == "list-append":
        found.update(grow_only_list_cases(writes, finals, crashes))
        order = hlc_order_cases(read_then_appends(pairs), finals)
        if order:
            found["hlc-order"] = order
    elif model == "set":
        found.update(remove_wins_set_cases(pairs, writes, finals, crashes))
    else:
        found.update(lww_register_cases(writes, finals, crashes))
    counts = {name: len(cases) for name, cases in sorted(found.items()) if cases}
    for name in counts:
        res.anomalies[name] = found[name][:MAX_EXAMPLES]
    res.details["crdt"] = {"model": model, "final_reads": len(finals),
                           "replicas": len({fr.replica for fr in finals}),
                           "keys": len({fr.key for fr in finals}), "anomaly_counts": counts}
    if counts:
        res.valid = False
        res.not_.update({"crdt", "convergence"} if "divergent-final-reads" in counts
                        else {"crdt"})
    elif not finals:
        res.valid = "unknown"
        res.unknown_reasons.append("no final reads (f=\"final-read\" or final: true): "
                                   "convergence and the merge rules are judged on them")
    return res
