"""Kafka log checks on send/poll histories (pure), after `jepsen.tests.kafka`.

A log is a set of keys (topic-partitions); each offset of a key holds one
message. Two op shapes are accepted:

- selfhood / Maelstrom: ``f="send"`` value ``[key, msg]``, completing as
  ``[key, [offset, msg]]``; ``f="poll"`` completing with ``{key: [[offset,
  msg], ...]}``;
- Jepsen: ``f`` in send/poll/txn with a vector of micro-ops
  ``[["send", k, [offset, msg]], ["poll", {k: [[offset, msg], ...]}]]``.

``assign`` / ``subscribe`` ops (value: list of keys) reset a process's
position on keys it no longer holds, exactly as Jepsen does.

Messages are assumed unique per key (every generator here and in Jepsen
makes them so); that is what lets a message name its send. Each finder is a
separate ``*_cases`` function returning human-readable explanations under
Jepsen's names: ``lost-write``, ``duplicate``, ``inconsistent-offsets``,
``nonmonotonic-poll``, ``poll-skip``, ``int-poll-skip``,
``int-nonmonotonic-poll``, ``nonmonotonic-send``, ``int-send-skip`` (allowed),
``int-nonmonotonic-send``, ``G1a``, ``precommitted-read``, ``unseen``, plus
``garbage-read`` (a polled message nobody sent).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from selfhood.checkers.history import NEMESIS, Op, Pair, pair_ops
from selfhood.checkers.verdict import CheckResult
from selfhood.errors import HistoryError

__all__ = ["KafkaAnalysis", "analyze", "check_kafka"]

#: anomaly types that are expected when consumers use `subscribe` (a
#: rebalance may move a partition to another consumer mid-stream), as in
#: Jepsen's `allowed-error-types`
REBALANCE_ALLOWED = frozenset({"poll-skip", "nonmonotonic-poll"})
#: reported but never invalid, as in Jepsen: another producer's messages may land
#: between two sends of one transaction (Kafka does not isolate writes)
ALWAYS_ALLOWED = frozenset({"int-send-skip"})

Key = Hashable
Msg = Hashable
#: Jepsen's Kafka ops that are neither client reads nor writes
_OTHER_FS = frozenset({"crash", "debug-topic-partitions"})


@dataclass(frozen=True, slots=True)
class Mop:
    """One micro-op: a send (key, offset or None, msg) or a poll {key: [(offset, msg)]}."""

    kind: str  # "send" | "poll"
    key: Key = None
    offset: int | None = None
    msg: Msg = None
    polled: dict[Key, list[tuple[int | None, Msg]]] = field(default_factory=dict)


@dataclass(slots=True)
class KOp:
    """A completed (or indeterminate) send/poll/txn with its micro-ops."""

    pair: Pair
    type: str  # ok | info | fail
    f: str
    process: Any
    mops: list[Mop]

    @property
    def index(self) -> int:
        return (self.pair.completion or self.pair.invoke).index

    def name(self) -> str:
        return f"op {self.index} ({self.f} by process {self.process})"

    def sends(self) -> dict[Key, list[Msg]]:
        out: dict[Key, list[Msg]] = defaultdict(list)
        for m in self.mops:
            if m.kind == "send":
                out[m.key].append(m.msg)
        return out

    def reads(self) -> dict[Key, list[Msg]]:
        out: dict[Key, list[Msg]] = defaultdict(list)
        for m in self.mops:
            if m.kind == "poll":
                for k, pairs in m.polled.items():
                    out[k].extend(msg for _, msg in pairs)
        return out


def _h(x: Any) -> Hashable:
    """Make a decoded value hashable (JSON lists -> tuples)."""
    if isinstance(x, list):
        return tuple(_h(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((str(k), _h(v)) for k, v in x.items()))
    return x  # type: ignore[no-any-return]


def _key(k: Any) -> Key:
    # JSON object keys are always strings; integer keys written by Jepsen
    # come back as ints from EDN. Normalise numeric strings so both agree.
    if isinstance(k, str) and k.lstrip("-").isdigit():
        return int(k)
    return _h(k)


def _send_mop(k: Any, v: Any) -> Mop:
    if isinstance(v, list | tuple) and len(v) == 2 and (v[0] is None or isinstance(v[0], int)):
        return Mop("send", _key(k), v[0], _h(v[1]))
    return Mop("send", _key(k), None, _h(v))


class _Shape(Exception):
    """Internal: a value that is no Kafka send/poll (turned into HistoryError)."""


def _poll_mop(v: Any) -> Mop:
    if not isinstance(v, dict):
        raise _Shape(f"a poll's result must map keys to [[offset message] ...], got {v!r}")
    polled: dict[Key, list[tuple[int | None, Msg]]] = {}
    for k, pairs in v.items():
        lst: list[tuple[int | None, Msg]] = []
        for p in pairs or []:
            if not (isinstance(p, list | tuple) and len(p) == 2
                    and (p[0] is None or type(p[0]) is int)):
                raise _Shape(f"polled {p!r} from key {k!r}, not an [offset message] pair")
            lst.append((p[0], _h(p[1])))
        polled[_key(k)] = lst
    return Mop("poll", polled=polled)


def _is_mop_list(value: Any) -> bool:
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(m, list | tuple) and len(m) >= 1
                    and m[0] in ("send", "poll") for m in value))


def _mops(f: str, value: Any, op: Op) -> list[Mop]:
    """The micro-ops of a send/poll/txn value, or HistoryError naming the op."""
    try:
        if _is_mop_list(value):
            out = []
            for m in value:
                if m[0] == "send":
                    if len(m) != 3:
                        raise _Shape(f"micro-op {m!r} is no [:send key message]")
                    out.append(_send_mop(m[1], m[2]))
                elif len(m) == 2:
                    out.append(_poll_mop(m[1]))
                elif len(m) != 1:  # [:poll] is an invocation's
                    raise _Shape(f"micro-op {m!r} is no [:poll] or [:poll {{key pairs}}]")
            return out
        if f == "send" and isinstance(value, list | tuple) and len(value) == 2:
            return [_send_mop(value[0], value[1])]
        if f == "poll" and isinstance(value, dict):
            return [_poll_mop(value)]
        if value is None or (f == "poll" and value == []):
            return []
        want = {"send": "[key message], or [[:send key message] ...]",
                "poll": "{key [[offset message] ...]}, or [[:poll {...}] ...]",
                "txn": "[[:send key message] [:poll {...}] ...]"}[f]
        raise _Shape(f"a Kafka {f}'s value is {want}; got {value!r}")
    except _Shape as exc:
        text = str(exc)
        text = text if len(text) <= 160 else text[:157] + "..."
        raise HistoryError(f"op {op.index}: {text}", op_index=op.index) from None


def _kops(ops: Sequence[Op]) -> tuple[list[KOp], list[tuple[Pair, str, list[Key]]]]:
    """Client send/poll/txn ops (completion values preferred) and assign/subscribe ops."""
    kops: list[KOp] = []
    subs: list[tuple[Pair, str, list[Key]]] = []
    for pair in pair_ops(ops):
        inv, comp = pair.invoke, pair.completion
        f = (comp.f if comp is not None and comp.f else inv.f) or ""
        typ = "info" if comp is None else comp.type
        if f in ("assign", "subscribe"):
            keys = (comp.value if comp is not None and comp.value is not None else inv.value)
            if not isinstance(keys, list | tuple | None):
                where = comp if comp is not None else inv
                raise HistoryError(f"op {where.index}: {f} takes a list of keys, got {keys!r}",
                                   op_index=where.index)
            subs.append((pair, typ, [_key(k) for k in (keys or [])]))
            continue
        if f not in ("send", "poll", "txn"):
            continue
        # The completion's value when it has one, even for a failed op: as in Jepsen,
        # a poll returns committed data whether or not its own transaction commits,
        # so what a :fail or :info poll saw is evidence about the log.
        mops = _mops(f, comp.value, comp) if comp is not None and comp is not inv else []
        if not mops:
            # an invocation's polls carry no data; its sends name the messages
            mops = [m for m in _mops(f, inv.value, inv) if m.kind == "send"]
        kops.append(KOp(pair, typ, f, inv.process, mops))
    if not kops and not subs:
        other = next((op for op in ops if op.process != NEMESIS and op.f not in _OTHER_FS), None)
        if other is not None:
            raise HistoryError(f"op {other.index}: no op is a Kafka send, poll, txn, assign or "
                               f"subscribe (this one is {other.f!r})", op_index=other.index)
    return kops, subs


@dataclass(slots=True)
class VersionOrder:
    """One key's log as observed: offsets -> messages, and dense indices."""

    log: dict[int, set[Msg]]
    by_index: list[Msg]
    first_index: dict[Msg, int]
    last_index: dict[Msg, int]  # a message's index, as Jepsen's by-value (its last one)


@dataclass(slots=True)
class KafkaAnalysis:
    """Intermediate structures shared by every *_cases function."""

    kops: list[KOp]
    writer_of: dict[tuple[Key, Msg], KOp]
    writes_by_type: dict[str, dict[Key, set[Msg]]]
    reads_by_type: dict[str, dict[Key, set[Msg]]]
    orders: dict[Key, VersionOrder]
    inconsistent: list[str]
    subs: list[tuple[Pair, str, list[Key]]]


def _must_have_committed(reads_ok: dict[Key, set[Msg]], kop: KOp) -> bool:
    """ok, or info and one of its sends was polled by an ok poll."""
    if kop.type == "ok":
        return True
    if kop.type != "info":
        return False
    return any(m in reads_ok.get(k, ()) for k, ms in kop.sends().items() for m in ms)


def analyze(ops: Sequence[Op]) -> KafkaAnalysis:
    """Build writer/reader indices and per-key version orders from offsets."""
    kops, subs = _kops(ops)
    writer_of: dict[tuple[Key, Msg], KOp] = {}
    writes: dict[str, dict[Key, set[Msg]]] = defaultdict(lambda: defaultdict(set))
    reads: dict[str, dict[Key, set[Msg]]] = defaultdict(lambda: defaultdict(set))
    for kop in kops:
        for k, ms in kop.sends().items():
            for m in ms:
                writer_of.setdefault((k, m), kop)
                writes[kop.type][k].add(m)
        for k, ms in kop.reads().items():
            reads[kop.type][k].update(ms)
    reads_ok = reads.get("ok", {})
    logs: dict[Key, dict[int, set[Msg]]] = defaultdict(lambda: defaultdict(set))
    for kop in kops:
        trusted_sends = _must_have_committed(reads_ok, kop)
        for m in kop.mops:
            if m.kind == "send":
                if trusted_sends and m.offset is not None:
                    logs[m.key][m.offset].add(m.msg)
            else:
                for k, pairs in m.polled.items():
                    for off, msg in pairs:
                        if off is not None:
                            logs[k][off].add(msg)
    orders: dict[Key, VersionOrder] = {}
    inconsistent: list[str] = []
    for k, log in logs.items():
        by_index: list[Msg] = []
        first: dict[Msg, int] = {}
        last: dict[Msg, int] = {}
        for i, off in enumerate(sorted(log)):
            msgs = log[off]
            if len(msgs) > 1:
                inconsistent.append(
                    f"key {k!r} offset {off} holds {len(msgs)} different messages: "
                    f"{sorted(map(repr, msgs))} (sends and polls disagree on the log)")
            ordered = sorted(msgs, key=repr)
            by_index.append(ordered[0])
            for msg in ordered:
                first.setdefault(msg, i)
                last[msg] = i
        orders[k] = VersionOrder(dict(log), by_index, first, last)
    return KafkaAnalysis(kops, writer_of, writes, reads, orders, inconsistent, subs)


def inconsistent_offsets_cases(a: KafkaAnalysis) -> list[str]:
    """Two different messages observed at one offset of one key."""
    return list(a.inconsistent)


def duplicate_cases(a: KafkaAnalysis) -> list[str]:
    """One message at more than one offset of a key (it was written twice)."""
    out = []
    for k, vo in a.orders.items():
        offsets: dict[Msg, list[int]] = defaultdict(list)
        for off in sorted(vo.log):
            for msg in vo.log[off]:
                offsets[msg].append(off)
        for msg, offs in offsets.items():
            if len(offs) > 1:
                out.append(f"key {k!r}: message {msg!r} appears at {len(offs)} offsets {offs}")
    return out


def g1a_cases(a: KafkaAnalysis) -> list[str]:
    """An ok poll observed a message whose send certainly failed (aborted read)."""
    failed = a.writes_by_type.get("fail", {})
    out = []
    for kop in a.kops:
        if kop.type != "ok":
            continue
        for k, ms in kop.reads().items():
            for m in ms:
                if m in failed.get(k, ()) and (k, m) in a.writer_of:
                    w = a.writer_of[(k, m)]
                    out.append(f"{kop.name()} polled {m!r} from key {k!r}, but {w.name()} "
                               f"which sent it failed")
    return out


def precommitted_read_cases(a: KafkaAnalysis) -> list[str]:
    """An op (of any outcome) that polled a message it sent itself, as Jepsen's
    `precommitted-read`: legal in most databases, but in Kafka's transaction model a
    sent message is invisible to every consumer, its own producer's included, until
    the transaction commits. One case per op: its first such key and message."""
    out = []
    for kop in a.kops:
        reads = kop.reads()
        for k, ms in kop.sends().items():
            polled = set(reads.get(k, ()))
            own = next((m for m in ms if m in polled), _NOTHING)
            if own is not _NOTHING:
                out.append(f"{kop.name()} sent {own!r} to key {k!r} and polled it in the "
                           f"same op, before the op committed")
                break
    return out


#: shown per key in an `unseen` explanation (Jepsen's report keeps 32)
UNSEEN_SHOWN = 32


def unseen_messages(a: KafkaAnalysis) -> dict[Key, list[Msg]]:
    """Per key, the messages of acknowledged (ok) sends that no ok poll returned, as
    Jepsen's `unseen` at the end of the history (empty keys left out)."""
    sent = a.writes_by_type.get("ok", {})
    polled = a.reads_by_type.get("ok", {})
    out: dict[Key, list[Msg]] = {}
    for k, ms in sent.items():
        left = ms - polled.get(k, set())
        if left:
            out[k] = sorted(left, key=_order)
    return out


def unseen_cases(unseen: dict[Key, list[Msg]]) -> list[str]:
    """One explanation per key with acknowledged messages no poll returned. Jepsen
    counts them as an error (`unseen` is not in its allowed-error-types): its
    workloads end with polls that drain every key, so a message still unseen then
    was lost, or no consumer could reach it."""
    out = []
    for k, ms in sorted(unseen.items(), key=lambda kv: _order(kv[0])):
        shown = ms[:UNSEEN_SHOWN]
        more = f" and {len(ms) - len(shown)} more" if len(ms) > len(shown) else ""
        out.append(f"key {k!r}: {len(ms)} acknowledged message(s) that no ok poll ever "
                   f"returned: {shown!r}{more}")
    return out


def _order(x: Any) -> tuple[str, Any]:
    """A total order on messages and keys of mixed types (ints by value)."""
    return ("", x) if isinstance(x, int) and not isinstance(x, bool) else (type(x).__name__,
                                                                           repr(x))


_NOTHING = object()


def garbage_read_cases(a: KafkaAnalysis) -> list[str]:
    """A poll returned a message that no send (of any outcome) ever carried."""
    out = []
    for kop in a.kops:
        for k, ms in kop.reads().items():
            for m in ms:
                if (k, m) not in a.writer_of:
                    out.append(f"{kop.name()} polled {m!r} from key {k!r}, which nobody sent")
    return out


def lost_write_cases(a: KafkaAnalysis) -> list[str]:
    """An acknowledged send below the highest polled offset that no ok poll saw.

    As in Jepsen: take the highest dense index any ok poll reached on a key;
    every message whose last appearance is at or below it must have been
    polled by someone, provided its send must have committed.
    """
    out = []
    reads_ok = a.reads_by_type.get("ok", {})
    for k, vs in reads_ok.items():
        vo = a.orders.get(k)
        if vo is None:
            continue
        bound = max((vo.first_index[v] for v in vs if v in vo.first_index), default=-1)
        if bound < 0:
            continue
        max_msg = vo.by_index[bound]
        for msg, idx in sorted(vo.last_index.items(), key=lambda kv: kv[1]):
            if idx > bound or msg in vs:
                continue
            w = a.writer_of.get((k, msg))
            if w is None or not _must_have_committed(reads_ok, w):
                continue
            off = next((o for o, ms in sorted(vo.log.items()) if msg in ms), None)
            out.append(f"{w.name()} sent {msg!r} to key {k!r} (offset {off}) and it was "
                       f"acknowledged, but no poll ever returned it although polls reached "
                       f"{max_msg!r} further along the log")
    return out


def _delta(vo: VersionOrder | None, v1: Msg, v2: Msg) -> int:
    if vo is None or v1 not in vo.last_index or v2 not in vo.last_index:
        return 1
    return vo.last_index[v2] - vo.last_index[v1]


def _skipped(vo: VersionOrder | None, v1: Msg, v2: Msg) -> list[Msg]:
    if vo is None:
        return []
    return vo.by_index[vo.last_index[v1] + 1: vo.last_index[v2]]


def _rebalanced(kop: KOp) -> set[Key]:
    log = []
    for op in (kop.pair.completion, kop.pair.invoke):
        if op is not None and isinstance(op.extra.get("rebalance-log"), list):
            log = op.extra["rebalance-log"]
            break
    keys: set[Key] = set()
    for ev in log:
        if isinstance(ev, dict):
            keys.update(_key(k) for k in ev.get("keys", []) or [])
    return keys


def int_poll_cases(a: KafkaAnalysis) -> tuple[list[str], list[str]]:
    """Within one op (of any outcome), consecutive polled messages of a key that skip
    or go back."""
    skips, nonmono = [], []
    for kop in a.kops:
        rebalanced = _rebalanced(kop)
        for k, vs in kop.reads().items():
            if k in rebalanced:
                continue
            vo = a.orders.get(k)
            for v1, v2 in pairwise(vs):
                d = _delta(vo, v1, v2)
                if d > 1:
                    skips.append(f"{kop.name()} polled {v1!r} then {v2!r} from key {k!r}, "
                                 f"skipping {_skipped(vo, v1, v2)!r}")
                elif d < 1:
                    nonmono.append(f"{kop.name()} polled {v1!r} then {v2!r} from key {k!r}, "
                                   f"going {1 - d} step(s) backwards in the log")
    return skips, nonmono


def int_send_cases(a: KafkaAnalysis) -> tuple[list[str], list[str]]:
    """Within one op, consecutive sends to a key that land apart or out of order.

    Jepsen's int-send-skip (other producers' messages between them: normal, since
    Kafka does not isolate writes) and int-nonmonotonic-send (the second landed at
    or before the first).
    """
    skips, nonmono = [], []
    for kop in a.kops:
        for k, ms in kop.sends().items():
            vo = a.orders.get(k)
            for v1, v2 in pairwise(ms):
                d = _delta(vo, v1, v2)
                if d > 1:
                    skips.append(f"{kop.name()} sent {v1!r} then {v2!r} to key {k!r}, and "
                                 f"{_skipped(vo, v1, v2)!r} landed between them")
                elif d < 1:
                    where = "at the same position as" if d == 0 else f"{-d} position(s) before"
                    nonmono.append(f"{kop.name()} sent {v1!r} then {v2!r} to key {k!r}, but "
                                   f"the log puts the second {where} the first")
    return skips, nonmono


def poll_cases(a: KafkaAnalysis) -> tuple[list[str], list[str]]:
    """Successive polls by one process that skip part of a key or go backwards.

    Each process's next poll of a key must start right after where its last
    ok poll of that key left off, unless an assign/subscribe dropped the key.
    """
    events: list[tuple[int, str, Any, Any]] = []
    for k_op in a.kops:
        if k_op.f in ("poll", "txn"):
            events.append((k_op.pair.invoke.index, "poll", k_op.process, k_op))
    for pair, typ, keys in a.subs:
        if typ in ("ok", "info"):
            events.append((pair.invoke.index, "sub", pair.invoke.process, set(keys)))
    events.sort(key=lambda e: e[0])
    skips, nonmono = [], []
    last: dict[Any, dict[Key, tuple[KOp, Msg]]] = defaultdict(dict)
    for _, kind, proc, payload in events:
        if kind == "sub":
            last[proc] = {k: v for k, v in last[proc].items() if k in payload}
            continue
        kop: KOp = payload
        reads = kop.reads()
        for k, vs in reads.items():
            if not vs or k not in last[proc]:
                continue
            prev, v = last[proc][k]
            vo = a.orders.get(k)
            d = _delta(vo, v, vs[0])
            if d > 1:
                skips.append(f"process {proc!r} polled key {k!r} up to {v!r} ({prev.name()}), "
                             f"then {kop.name()} resumed at {vs[0]!r}, skipping "
                             f"{_skipped(vo, v, vs[0])!r}")
            elif d < 1:
                nonmono.append(f"process {proc!r} polled key {k!r} up to {v!r} ({prev.name()}), "
                               f"then {kop.name()} went back to {vs[0]!r} "
                               f"({1 - d} step(s) backwards)")
        if kop.type == "ok":
            for k, vs in reads.items():
                if vs:
                    last[proc][k] = (kop, vs[-1])
    return skips, nonmono


def nonmonotonic_send_cases(a: KafkaAnalysis) -> list[str]:
    """A process's successive sends to one key landing backwards in the log."""
    out = []
    last: dict[Any, dict[Key, tuple[KOp, Msg]]] = defaultdict(dict)
    events: list[tuple[int, Any]] = [(kop.index, kop) for kop in a.kops]
    events += [((pair.completion or pair.invoke).index, (pair, typ, keys))
               for pair, typ, keys in a.subs]
    for _, kop in sorted(events, key=lambda e: e[0]):
        if isinstance(kop, tuple):  # assign/subscribe: keep only the keys still held
            pair, typ, keys = kop
            if typ in ("ok", "info"):
                held = set(keys)
                proc = pair.invoke.process
                last[proc] = {k: v for k, v in last[proc].items() if k in held}
            continue
        if kop.type not in ("ok", "info") or kop.f not in ("send", "txn"):
            continue
        for k, ms in kop.sends().items():
            if not ms:
                continue
            if k in last[kop.process]:
                prev, v = last[kop.process][k]
                d = _delta(a.orders.get(k), v, ms[0])
                if d < 1:
                    out.append(f"process {kop.process!r} sent {v!r} ({prev.name()}) then "
                               f"{ms[0]!r} ({kop.name()}) to key {k!r}, but the second landed "
                               f"{1 - d} position(s) before the first")
            last[kop.process][k] = (kop, ms[-1])
    return out


def realtime_lag(a: KafkaAnalysis) -> list[dict[str, Any]]:
    """Per ok poll and key, a lower bound on how stale the consumer was (ns), as Jepsen's
    `realtime-lag`: how long before the poll began the highest offset the process had
    reached on that key stopped being the log's tail (a higher offset was known to
    exist, from an acknowledged send or any poll). Polls without times are skipped.
    """
    known: dict[Key, dict[int, int]] = defaultdict(dict)  # key -> offset -> first known
    for kop in a.kops:
        done = kop.pair.completion
        if kop.type != "ok" or done is None or done.time is None:
            continue
        for m in kop.mops:
            seen = ([(m.key, m.offset)] if m.kind == "send" else
                    [(k, off) for k, pairs in m.polled.items() for off, _ in pairs])
            for k, off in seen:
                if off is not None and (off not in known[k] or done.time < known[k][off]):
                    known[k][off] = done.time
    # expired[k][o]: earliest time some offset > o was known to exist
    expired: dict[Key, dict[int, int]] = {}
    for k, offs in known.items():
        best: int | None = None
        table: dict[int, int] = {}
        for off in sorted(offs, reverse=True):
            if best is not None:
                table[off] = best
            best = offs[off] if best is None else min(best, offs[off])
        table[-1] = best if best is not None else 0
        expired[k] = table
    lags: list[dict[str, Any]] = []
    position: dict[Any, dict[Key, int]] = defaultdict(dict)
    events: list[tuple[int, int, Any]] = [(kop.pair.invoke.index, 0, kop) for kop in a.kops]
    events += [(pair.invoke.index, 1, (pair, typ, keys)) for pair, typ, keys in a.subs]
    for _, kind, payload in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 1:
            pair, typ, keys = payload
            if typ == "ok":
                old = position[pair.invoke.process]
                position[pair.invoke.process] = (
                    {k: old.get(k, -1) for k in keys} if pair.invoke.f == "assign" else {})
            continue
        kop = payload
        start = kop.pair.invoke.time
        if kop.type != "ok" or kop.f not in ("poll", "txn") or start is None:
            continue
        pos = position[kop.process]
        for m in kop.mops:
            for k, pairs in m.polled.items():
                got = [o for o, _ in pairs if o is not None]
                if got:
                    pos[k] = max(pos.get(k, -1), max(got))
        for k, off in pos.items():
            exp = expired.get(k, {}).get(off)
            lag = max(0, start - exp) if exp is not None else 0
            lags.append({"process": kop.process, "key": k, "time": start, "lag": lag})
    return lags


def check_kafka(ops: Sequence[Op]) -> CheckResult:
    """Run every Kafka log finder; valid iff no (non-allowed) anomaly is found."""
    a = analyze(ops)
    result = CheckResult(valid=True)
    skips, nonmono = poll_cases(a)
    int_skips, int_nonmono = int_poll_cases(a)
    send_skips, send_nonmono = int_send_cases(a)
    unseen = unseen_messages(a)
    found = {
        "inconsistent-offsets": inconsistent_offsets_cases(a),
        "duplicate": duplicate_cases(a),
        "G1a": g1a_cases(a),
        "precommitted-read": precommitted_read_cases(a),
        "garbage-read": garbage_read_cases(a),
        "lost-write": lost_write_cases(a),
        "poll-skip": skips,
        "nonmonotonic-poll": nonmono,
        "int-poll-skip": int_skips,
        "int-nonmonotonic-poll": int_nonmono,
        "nonmonotonic-send": nonmonotonic_send_cases(a),
        "int-send-skip": send_skips,
        "int-nonmonotonic-send": send_nonmono,
        "unseen": unseen_cases(unseen),
    }
    for name, cases in found.items():
        for c in cases:
            result.add(name, c)
    subscribed = any(typ in ("ok", "info") and pair.invoke.f == "subscribe"
                     for pair, typ, _ in a.subs)
    allowed = ALWAYS_ALLOWED | (REBALANCE_ALLOWED if subscribed else frozenset())
    bad = [n for n in result.anomalies if n not in allowed]
    result.valid = not bad
    if not a.kops:
        result.valid = "unknown"
        result.unknown_reasons.append("no send/poll/txn ops: nothing to check as a Kafka log")
    lags = realtime_lag(a)
    worst = max(lags, key=lambda x: x["lag"], default=None)
    from selfhood.checkers.measures import distribution

    result.details["kafka"] = {
        "realtime_lag_ns": distribution([x["lag"] for x in lags]),
        "worst_realtime_lag": None if worst is None else {**worst, "key": repr(worst["key"])},
        "keys": len(a.orders),
        "sends": sum(len(v) for d in a.writes_by_type.values() for v in d.values()),
        # Jepsen's unseen count at the end: per key, acknowledged messages never polled
        "unseen": {repr(k): len(ms) for k, ms in unseen.items()},
        "allowed_anomaly_types": sorted(allowed & set(result.anomalies)),
        "bad_anomaly_types": sorted(bad),
    }
    return result
