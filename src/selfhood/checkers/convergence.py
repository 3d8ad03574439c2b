"""Convergence (pure): the one home of final-read agreement and convergence time.

After heal and quiescence every replica's final read of a key must agree.
Three checkers judge that: `staleness.check_convergence` (divergence and the
convergence time per key), `crdt.check_crdt` (divergence, then the merge
rules on the same final reads) and `identity.check_identity` (one final
fingerprint per instance). They all take the final reads from `final_reads`
and decide agreement with `agreement`, so a value compares the same way
everywhere: sets as sets, lists (a transcript's order matters) as lists.

Final reads are ok ops with ``f == "final-read"`` (or ``final: true``). The
replica is the op's ``node`` (the completion's, else the invocation's); else
the replica an unrouted op names in its value (``{"replica": "r1"}``, as
selfhood's final reads and probes do); else its process.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from selfhood.checkers.history import NEMESIS, TXN_MODELS, Op, Pair, freeze, is_final, micro_ops

__all__ = [
    "HEAL_WORDS",
    "FinalRead",
    "KeyAgreement",
    "agreement",
    "final_reads",
    "final_values",
    "heal_time",
    "last_disagreement",
    "replica_of",
]

#: nemesis ops that end a fault: selfhood's heal/resume/restart/unskew/restart-broker, and
#: Jepsen's :stop (classic nemeses use :start to begin a fault and :stop to end it)
HEAL_WORDS: Final = ("heal", "stop", "resume", "recover", "restart", "unskew")

@dataclass(frozen=True, slots=True)
class FinalRead:
    """One replica's final value of one key (``value`` as the replica returned it)."""

    key: Hashable
    replica: str
    value: Any
    index: int
    invoke_time: int | None


@dataclass(frozen=True, slots=True)
class KeyAgreement:
    """Where the replicas ended on one key: each replica's last final value, grouped.

    ``groups`` lists each distinct last value (as the first replica, by name,
    returned it) with the replicas that ended with it; more than one group is a
    divergence. ``converged_at`` is the invoke time of the first final read of
    the key from which on every one returned the agreed value, and
    ``first_read_at`` the earliest; both None when the replicas diverged or a
    final read of the key has no time.
    """

    key: Hashable
    last: dict[str, Any]
    groups: tuple[tuple[Any, tuple[str, ...]], ...]
    first_read_at: int | None
    converged_at: int | None

    @property
    def divergent(self) -> bool:
        return len(self.groups) > 1

    def describe(self) -> str:
        """The divergence, naming which replicas ended with what."""
        desc = "; ".join(f"{', '.join(rs)} ended with {v!r}" for v, rs in self.groups)
        return f"key {self.key!r}: replicas disagree after heal: {desc}"


def heal_time(ops: Iterable[Op]) -> int | None:
    """When the last fault ended: the latest nemesis op whose ``f`` mentions a heal word."""
    times = [op.time for op in ops if op.process == NEMESIS and op.time is not None
             and any(w in (op.f or "") for w in HEAL_WORDS)]
    return max(times, default=None)


def replica_of(pair: Pair) -> str:
    """The replica that served an op (see the module docstring)."""
    c = pair.completion
    node = c.node if c is not None and c.node is not None else pair.invoke.node
    if node is not None:
        return str(node)
    named = pair.invoke.value.get("replica") if isinstance(pair.invoke.value, dict) else None
    return str(named) if isinstance(named, str) else f"process {pair.invoke.process!r}"


def _is_pair(v: Any) -> bool:
    return isinstance(v, list | tuple) and len(v) == 2


def final_values(op: Op, model: str) -> list[tuple[Hashable, Any]]:
    """A final read's (key, value) pairs, values as returned.

    A map is ``{key: value}``; a transaction (list-append, rw-register) its
    ``[r k v]`` micro-ops; a kv or register read its ``key`` field or Jepsen's
    independent ``[k v]``; a set read is the set of the op's ``instance``; any
    other value is the one value of key None.
    """
    v = op.value
    if isinstance(v, dict):
        return [(freeze(k), x) for k, x in v.items()]
    if model in TXN_MODELS:
        return [(freeze(k), x) for f, k, x in micro_ops(v) if f == "r"]
    if model == "set":
        return [(op.instance, v)]
    if "key" in op.extra:
        return [(freeze(op.extra["key"]), v)]
    if model in ("register", "kv") and _is_pair(v):
        return [(freeze(v[0]), v[1])]
    return [(None, v)]


def final_reads(pairs: Iterable[Pair],
                values: Callable[[Op], Iterable[tuple[Hashable, Any]]]) -> list[FinalRead]:
    """Every (key, replica) value of every ok final read, in invocation order.

    ``values`` says what one final read's completion returned, per key (for a
    model, ``lambda op: final_values(op, model)``).
    """
    out: list[FinalRead] = []
    for p in pairs:
        inv, c = p.invoke, p.completion
        if (inv.process == NEMESIS or c is None or c.type != "ok"
                or not (is_final(c) or is_final(inv))):
            continue
        replica = replica_of(p)
        for key, v in values(c):
            out.append(FinalRead(key, replica, v, c.index, inv.time))
    return out


def _same(v: Any, model: str) -> Hashable:
    """What decides whether two final values agree: a set read as a set, else its value."""
    if model == "set" and isinstance(v, list | tuple | set | frozenset):
        return frozenset(freeze(x) for x in v)
    return freeze(v)


def agreement(finals: Sequence[FinalRead], model: str) -> list[KeyAgreement]:
    """Per key (in first-read order): each replica's last final value, and whether (and
    from when) they agree. The last read of a replica is its last in invocation order."""
    by_key: dict[Hashable, list[FinalRead]] = defaultdict(list)
    for fr in finals:
        by_key[fr.key].append(fr)
    out: list[KeyAgreement] = []
    for key, frs in by_key.items():
        last: dict[str, Any] = {}
        for fr in frs:
            last[fr.replica] = fr.value
        groups: dict[Hashable, tuple[Any, list[str]]] = {}
        for replica, v in sorted(last.items()):
            groups.setdefault(_same(v, model), (v, []))[1].append(replica)
        first = converged = None
        timed = sorted(((fr.invoke_time, _same(fr.value, model)) for fr in frs
                        if fr.invoke_time is not None), key=lambda tv: tv[0])
        if len(groups) == 1 and len(timed) == len(frs):
            agreed = next(iter(groups))
            first = timed[0][0]
            for t, same in timed:
                if same != agreed:
                    converged = None
                elif converged is None:
                    converged = t
        out.append(KeyAgreement(key, dict(sorted(last.items())),
                                tuple((v, tuple(rs)) for v, rs in groups.values()),
                                first, converged))
    return out


def last_disagreement(observations: Iterable[tuple[int, Any]], agreed: Any, *,
                      since: int) -> int:
    """The latest time (at least ``since``) an observation at or after ``since`` still
    differed from the agreed final value: when the last stale view was seen."""
    return max((t for t, v in observations if t >= since and v != agreed), default=since)
