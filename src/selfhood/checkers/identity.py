"""Identity verdicts: did each instance stay itself? (pure)

The thesis says an instance *is* its rebuildable context. So, per instance,
from the history alone:

- ``fingerprints_agree``: after heal + quiesce, every replica's final read
  shows the same fingerprint (one identity, not several);
- ``forks``: a transcript read that is incompatible with (neither a prefix
  of nor extended by) a read that started after it completed: two different
  pasts were shown;
- ``forgotten_acks``: an acknowledged turn that a later read by the same
  session (process) did not contain, or that a final read lacks (the
  instance forgot what it told the client it remembered, typically after
  failover moved the session to another replica);
- ``revived_rules``: a revoked governance rule showing up again for a
  session that had already seen it revoked, or in any final read;
- ``torn_memory``: a read that sees a turn but not the memory write that
  turn made in the same transaction (sharded memory without atomic writes);
- convergence: whether the instance converged, and how long after the last
  heal the last divergent probe was seen (final reads, replicas, agreement
  and the last heal as `checkers.convergence` defines them for every checker).

Sessions are processes: a process's ops are sequential, and the sequential
mode's session tokens promise exactly these per-session guarantees, so the
definitions raise no false alarms against a correct sequential run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from selfhood.checkers.convergence import (
    agreement,
    final_reads,
    heal_time,
    last_disagreement,
)
from selfhood.checkers.history import Op, Pair, micro_ops, pair_ops
from selfhood.checkers.measures import percentile
from selfhood.checkers.staleness import AckedWrite, missed_writes
from selfhood.consistency.keys import is_memory_key, is_transcript_key, try_parse_key

#: example cases kept per anomaly kind (counts are exact; examples are capped)
MAX_CASES: Final = 20


@dataclass(frozen=True, slots=True)
class TranscriptRead:
    instance: str
    process: Any
    invoke_time: int
    complete_time: int
    value: tuple[Any, ...]
    node: str | None
    index: int
    final: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledged transcript append."""

    instance: str
    process: Any
    value: Any
    time: int
    node: str | None
    index: int


@dataclass(slots=True)
class IdentityResult:
    """Per-run identity verdicts; `summary()` is the results.json `identity` object."""

    instances: int = 0
    fingerprints_agree: int = 0
    forks: int = 0
    forgotten_acks: int = 0
    revived_rules: int = 0
    torn_memory: int = 0
    converged: bool = False
    convergence_ms: float | None = None
    per_instance: dict[str, dict[str, Any]] = field(default_factory=dict)
    cases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "fingerprints_agree": self.fingerprints_agree,
            "forks": self.forks,
            "forgotten_acks": self.forgotten_acks,
            "revived_rules": self.revived_rules,
            "torn_memory": self.torn_memory,
            "converged": self.converged,
            "convergence_ms": self.convergence_ms,
        }

    @property
    def valid(self) -> bool:
        """No identity anomaly at all (the strongest verdict)."""
        return (self.converged and self.forks == 0 and self.forgotten_acks == 0
                and self.revived_rules == 0 and self.torn_memory == 0)


def _key_instance(key: Any) -> str | None:
    k = try_parse_key(key)
    return None if k is None else k[0]


def _time(op: Op | None) -> int:
    return 0 if op is None or op.time is None else op.time


def transcript_reads(pairs: Sequence[Pair]) -> list[TranscriptRead]:
    """Every transcript a client saw: txn reads and final reads (ok only)."""
    out: list[TranscriptRead] = []
    for p in pairs:
        c = p.completion
        if c is None or c.type != "ok":
            continue
        if c.f == "txn":
            for f, k, v in micro_ops(c.value):
                if f == "r" and is_transcript_key(k) and isinstance(v, (list, tuple)):
                    inst = _key_instance(k) or ""
                    out.append(TranscriptRead(inst, c.process, _time(p.invoke), _time(c),
                                              tuple(v), c.node, c.index))
        elif c.f == "final-read" and isinstance(c.value, dict):
            t = c.value.get("transcript")
            if isinstance(t, (list, tuple)) and c.instance is not None:
                out.append(TranscriptRead(c.instance, c.process, _time(p.invoke), _time(c),
                                          tuple(t), c.node, c.index, final=True))
    return out


def transcript_acks(pairs: Sequence[Pair]) -> list[Ack]:
    """Transcript appends whose transaction was acknowledged (ok)."""
    out: list[Ack] = []
    for p in pairs:
        c = p.completion
        if c is None or c.type != "ok" or c.f != "txn":
            continue
        for f, k, v in micro_ops(c.value):
            if f == "append" and is_transcript_key(k):
                out.append(Ack(_key_instance(k) or "", c.process, v, _time(c), c.node, c.index))
    return out


def _is_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a


def _diverge_at(a: tuple[Any, ...], b: tuple[Any, ...]) -> int:
    """First position where two transcripts differ."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def fork_cases(reads: Sequence[TranscriptRead]) -> list[dict[str, Any]]:
    """Reads incompatible with a read that began after they completed.

    Incompatible = neither is a prefix of the other: the two reads show
    different pasts. A later read that is merely shorter is staleness (see
    `staleness`), not a fork. Works on distinct values: for each value v,
    find the latest-starting read incompatible with v; reads of v that
    completed before it began are forks.
    """
    out: list[dict[str, Any]] = []
    by_inst: dict[str, list[TranscriptRead]] = defaultdict(list)
    for r in reads:
        by_inst[r.instance].append(r)
    for inst, rs in sorted(by_inst.items()):
        latest: dict[tuple[Any, ...], TranscriptRead] = {}
        first_done: dict[tuple[Any, ...], int] = {}
        for r in rs:
            cur = latest.get(r.value)
            if cur is None or r.invoke_time > cur.invoke_time:
                latest[r.value] = r
            first_done[r.value] = min(first_done.get(r.value, r.complete_time), r.complete_time)
        by_recency = sorted(latest.values(), key=lambda r: -r.invoke_time)
        breaker: dict[tuple[Any, ...], TranscriptRead | None] = {}
        for v, done in first_done.items():
            found = None
            for w in by_recency:
                if w.invoke_time <= done:
                    break
                if not _is_prefix(v, w.value) and not _is_prefix(w.value, v):
                    found = w
                    break
            breaker[v] = found
        for r in rs:
            later = breaker[r.value]
            if later is not None and later.invoke_time > r.complete_time:
                at = _diverge_at(r.value, later.value)
                lo = max(0, at - 2)
                out.append({"instance": inst, "index": r.index, "node": r.node,
                            "later_index": later.index, "later_node": later.node,
                            "diverge_at": at, "read_from": list(r.value[lo:at + 3]),
                            "later_from": list(later.value[lo:at + 3])})
    return out


def forgotten_cases(reads: Sequence[TranscriptRead], acks: Sequence[Ack]) -> list[dict[str, Any]]:
    """Acknowledged turns missing from a later read of the same session, or from a final read."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, Any]] = set()
    acks_by_session: dict[tuple[str, Any], list[Ack]] = defaultdict(list)
    acks_by_inst: dict[str, list[Ack]] = defaultdict(list)
    for a in acks:
        acks_by_session[(a.instance, a.process)].append(a)
        acks_by_inst[a.instance].append(a)
    for r in sorted(reads, key=lambda r: r.invoke_time):
        pool = acks_by_inst[r.instance] if r.final else acks_by_session.get(
            (r.instance, r.process), [])
        if not pool:
            continue
        have = set(r.value)
        for a in pool:
            if a.time < r.invoke_time and a.value not in have and (r.instance, a.value) not in seen:
                seen.add((r.instance, a.value))
                out.append({"instance": r.instance, "value": a.value, "acked_index": a.index,
                            "acked_node": a.node, "read_index": r.index, "read_node": r.node,
                            "final": r.final, "failover": a.node != r.node})
    return out


def revived_rule_cases(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    """Revoked rules that come back for a session that saw them gone, or in a final read."""
    revoke_ok_time: dict[tuple[str, Any], int] = {}
    for p in pairs:
        c = p.completion
        if c is not None and c.type == "ok" and c.f == "revoke-rule" and c.instance is not None:
            key = (c.instance, p.invoke.value)
            revoke_ok_time[key] = min(revoke_ok_time.get(key, _time(c)), _time(c))
    if not revoke_ok_time:
        return []
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, Any]] = set()
    gone_for: dict[Any, set[tuple[str, Any]]] = defaultdict(set)  # process -> rules seen revoked
    ordered = sorted(pairs, key=lambda p: _time(p.invoke))
    for p in ordered:
        c = p.completion
        if c is None or c.type != "ok" or c.instance is None:
            continue
        inst = c.instance
        if c.f == "revoke-rule":
            gone_for[c.process].add((inst, p.invoke.value))
            continue
        rules: Any
        final = c.f == "final-read"
        if c.f == "read-rules":
            rules = c.value
        elif final and isinstance(c.value, dict):
            rules = c.value.get("rules")
        else:
            continue
        if not isinstance(rules, (list, tuple)):
            continue
        active = set(rules)
        start = _time(p.invoke)
        for (ri, rule), t_ok in revoke_ok_time.items():
            if ri != inst:
                continue
            key = (inst, rule)
            if rule in active:
                if (final or key in gone_for[c.process]) and key not in seen:
                    seen.add(key)
                    out.append({"instance": inst, "rule": rule, "index": c.index,
                                "node": c.node, "final": final})
            elif t_ok < start:
                gone_for[c.process].add(key)
    return out


def torn_memory_cases(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    """Reads that see a turn but not the memory write the same turn made.

    The replica may report it itself (``Op.extra["deps_missing"]``, a list of
    ``[turn_value, [missing event ids]]``). Otherwise it is inferred: a turn
    txn appends v to the transcript and writes m to a subtask register.
    A read txn that reads both the transcript and that register must see m
    (or a write of a later turn it also sees); seeing nothing, or an earlier
    turn's write, means the turn's memory was split from it.
    """
    writer_turn: dict[Any, Any] = {}  # register value -> transcript value of its turn
    turn_writes: dict[Any, tuple[str, Any]] = {}  # transcript value -> (register key, value)
    for p in pairs:
        mops = micro_ops(p.invoke.value) if p.invoke.f == "txn" else []
        appended = [v for f, k, v in mops if f == "append" and is_transcript_key(k)]
        if not appended:
            continue
        for f, k, v in mops:
            if f == "w" and is_memory_key(k, "subtask"):
                writer_turn[v] = appended[0]
                turn_writes[appended[0]] = (k, v)
    out: list[dict[str, Any]] = []
    for p in pairs:
        c = p.completion
        if c is None or c.type != "ok" or c.f != "txn":
            continue
        missing = c.extra.get("deps_missing")
        if isinstance(missing, list) and missing:
            # the replica itself reported turns whose memory writes it had not applied
            for entry in missing:
                turn = entry[0] if isinstance(entry, (list, tuple)) and entry else entry
                out.append({"instance": c.instance, "index": c.index, "node": c.node,
                            "turn": turn, "reported": True})
            continue
        mops = micro_ops(c.value)
        transcript = next((v for f, k, v in mops if f == "r" and is_transcript_key(k)
                           and isinstance(v, (list, tuple))), None)
        if transcript is None:
            continue
        pos = {v: i for i, v in enumerate(transcript)}
        for f, k, x in mops:
            if f != "r" or not is_memory_key(k, "subtask"):
                continue
            last_turn = None
            for v in reversed(transcript):
                w = turn_writes.get(v)
                if w is not None and w[0] == k:
                    last_turn = v
                    break
            if last_turn is None:
                continue
            expected = turn_writes[last_turn][1]
            if x == expected:
                continue
            x_turn = writer_turn.get(x)
            if x is None or (x_turn is not None and pos.get(x_turn, math.inf) < pos[last_turn]):
                out.append({"instance": _key_instance(k), "index": c.index, "node": c.node,
                            "key": k, "read": x, "expected": expected, "turn": last_turn})
    return out


def staleness_samples(history: Sequence[Op],
                      pairs: Sequence[Pair] | None = None) -> list[tuple[int, int, float]]:
    """Per non-final transcript read: (invoke time ns, k, t ms), in read order.

    k counts turns acknowledged before the read began that it does not show;
    t is how long before the read the oldest of them was acknowledged.
    """
    pairs = pair_ops(history) if pairs is None else pairs
    reads = [r for r in transcript_reads(pairs) if not r.final]
    acks_by_inst: dict[str, list[AckedWrite]] = defaultdict(list)
    for a in sorted(transcript_acks(pairs), key=lambda a: a.time):
        acks_by_inst[a.instance].append(AckedWrite(a.value, a.time, a.time, a.index))
    completes = {inst: [a.complete for a in acks] for inst, acks in acks_by_inst.items()}
    out: list[tuple[int, int, float]] = []
    for r in reads:
        missing = missed_writes(acks_by_inst.get(r.instance, []), completes.get(r.instance, []),
                                r.invoke_time, set(r.value))
        t = (r.invoke_time - missing[0].complete) / 1e6 if missing else 0.0
        out.append((r.invoke_time, len(missing), t))
    return out


def staleness(history: Sequence[Op], pairs: Sequence[Pair] | None = None) -> dict[str, Any]:
    """How far behind transcript reads were: acked turns missing (k) and for how long (t)."""
    samples = staleness_samples(history, pairs)
    ks = [k for _, k, _ in samples]
    ts = [t for _, _, t in samples]
    return {"k_max": max(ks, default=0), "t_p99_ms": round(percentile(ts, 99), 3),
            "reads": len(samples), "stale_reads": sum(1 for k in ks if k)}


def _fingerprint(op: Op) -> list[tuple[Hashable, Any]]:
    """A final read's fingerprint, keyed by its instance (none if it carries none)."""
    if op.f != "final-read" or op.instance is None or not isinstance(op.value, dict):
        return []
    return [(op.instance, str(op.value.get("fingerprint")))]


def check_identity(history: Sequence[Op], *, instances: Sequence[str] | None = None,
                   replicas: Sequence[str] | None = None,
                   pairs: Sequence[Pair] | None = None) -> IdentityResult:
    """All identity verdicts for one run's history (`pairs`: its `pair_ops`, if already made)."""
    if pairs is None:
        pairs = pair_ops(history)
    insts = sorted(set(instances) if instances is not None else {
        op.instance for op in history if op.instance is not None and op.process != "nemesis"})
    res = IdentityResult(instances=len(insts))
    reads = transcript_reads(pairs)
    acks = transcript_acks(pairs)
    kinds = {
        "forks": fork_cases(reads),
        "forgotten_acks": forgotten_cases(reads, acks),
        "revived_rules": revived_rule_cases(pairs),
        "torn_memory": torn_memory_cases(pairs),
    }
    res.forks = len(kinds["forks"])
    res.forgotten_acks = len(kinds["forgotten_acks"])
    res.revived_rules = len(kinds["revived_rules"])
    res.torn_memory = len(kinds["torn_memory"])
    res.cases = {k: v[:MAX_CASES] for k, v in kinds.items() if v}

    # final fingerprints per instance (`checkers.convergence`: the same final reads,
    # replicas and agreement as the convergence and CRDT checkers)
    ends = {a.key: a for a in agreement(final_reads(pairs, _fingerprint), "fingerprint")}
    expected_replicas = set(replicas) if replicas is not None else None
    healed = heal_time(history)
    heal = healed if healed is not None else 0
    conv_ms = 0.0
    for inst in insts:
        end = ends.get(inst)
        fps: dict[str, Any] = end.last if end is not None else {}
        complete = bool(fps) and (expected_replicas is None or set(fps) >= expected_replicas)
        agree = complete and end is not None and not end.divergent
        info: dict[str, Any] = {"replicas_answered": len(fps), "agree": agree,
                                "fingerprints": fps}
        if agree:
            res.fingerprints_agree += 1
            final_fp = next(iter(fps.values()))
            probes = [(_time(c), str(c.value.get("fingerprint"))) for p in pairs
                      if (c := p.completion) is not None and c.type == "ok" and c.f == "probe"
                      and c.instance == inst and isinstance(c.value, dict)]
            info["convergence_ms"] = (last_disagreement(probes, final_fp, since=heal)
                                      - heal) / 1e6
            conv_ms = max(conv_ms, info["convergence_ms"])
        res.per_instance[inst] = info
    res.converged = bool(insts) and res.fingerprints_agree == len(insts)
    res.convergence_ms = round(conv_ms, 3) if res.converged else None
    return res
