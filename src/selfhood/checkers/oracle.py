"""Brute-force oracles for tiny histories (pure), to cross-check the fast checkers.

Nothing clever on purpose: each oracle enumerates every order a consistency
model allows and replays it on the sequential model, so its verdict is
correct by construction and shares no code with the searches it judges.
Exponential: keep histories to about eight ops or five transactions.

- `brute_linearizable` (linearizable | sequential) for register,
  cas-register, kv and set histories, with lin's documented semantics:
  `fail` ops have no effect, except a cas `fail` without an error, which is
  an observed compare mismatch; `info` and dangling ops may take effect at
  any point after their invocation, or never; their outputs are unknown.
- `brute_serializable` (serializable | strict-serializable) for list-append
  and rw-register transactions: some subset of the indeterminate
  transactions plus every ok one, in some order (respecting real time for
  strict), replays every ok read exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations, permutations
from typing import Any

from selfhood.checkers.history import Op, pair_ops

__all__ = ["brute_linearizable", "brute_serializable"]

def _fz(x: Any) -> Hashable:
    if isinstance(x, list | tuple):
        return tuple(_fz(v) for v in x)
    if isinstance(x, set | frozenset):
        return frozenset(_fz(v) for v in x)
    return x  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _Event:
    """One op: invoked at `inv`, returned at `ret` (None = maybe never), and its effect.

    `kind` is read | write | append | add | cas | cas-maybe | cas-mismatch.
    """

    inv: int
    ret: int | None
    process: Any
    kind: str
    key: Hashable
    a: Any = None
    b: Any = None


def _apply(e: _Event, s: dict[Hashable, Any], init: Any) -> dict[Hashable, Any] | None:
    """The sequential model: the next state, or None if the op cannot happen here."""
    cur = s.get(e.key, init)
    if e.kind == "read":
        return s if cur == e.a else None
    if e.kind == "write":
        return {**s, e.key: e.a}
    if e.kind == "append":
        return {**s, e.key: cur + str(e.a)}
    if e.kind == "add":
        return {**s, e.key: cur | {e.a}}
    if e.kind == "cas":
        return {**s, e.key: e.b} if cur == e.a else None
    if e.kind == "cas-maybe":
        return {**s, e.key: e.b} if cur == e.a else s
    if e.kind == "cas-mismatch":
        return None if cur == e.a else s
    raise ValueError(e.kind)


def _key_and(op: Op, value: Any, keyed: bool) -> tuple[Hashable, Any]:
    if "key" in op.extra:
        return _fz(op.extra["key"]), value
    if keyed and isinstance(value, list | tuple) and len(value) == 2:
        return _fz(value[0]), value[1]
    return None, value


def _events(ops: Sequence[Op], model: str) -> list[_Event]:
    out: list[_Event] = []
    client = [o for o in ops if o.process != "nemesis"]
    where = {id(o): n for n, o in enumerate(client)}
    for pair in pair_ops(client):
        inv, comp = pair.invoke, pair.completion
        timed_out = comp is not None and comp.type == "fail" and comp.error is not None \
            and "time" in str(comp.error)
        unknown = comp is None or comp.type == "info" or timed_out
        failed = comp is not None and comp.type == "fail" and not timed_out
        ret = None if unknown or comp is None else where[id(comp)]
        f, keyed, at = inv.f, model == "kv", where[id(inv)]
        if f in ("read", "get"):
            if unknown or failed or comp is None:
                continue
            k, v = _key_and(inv, comp.value, keyed)
            if model == "kv" and v is None:
                v = ""
            want = frozenset(_fz(x) for x in (v or [])) if model == "set" else _fz(v)
            out.append(_Event(at, ret, inv.process, "read", k, want))
        elif f in ("write", "put", "append", "add"):
            if failed:
                continue
            k, v = _key_and(inv, inv.value, keyed)
            kind = {"put": "write"}.get(f, f)
            out.append(_Event(at, ret, inv.process, kind, k, _fz(v)))
        elif f == "cas":
            k, ab = _key_and(inv, inv.value, keyed)
            a, b = _fz(ab[0]), _fz(ab[1])
            if unknown:
                out.append(_Event(at, ret, inv.process, "cas-maybe", k, a, b))
            elif failed:
                if comp is not None and comp.error is not None:
                    continue
                out.append(_Event(at, ret, inv.process, "cas-mismatch", k, a, b))
            else:
                out.append(_Event(at, ret, inv.process, "cas", k, a, b))
        else:
            raise ValueError(f"oracle: no operation {f!r} in model {model}")
    return out


def brute_linearizable(ops: Sequence[Op], model: str, consistency: str = "linearizable"
                       ) -> bool:
    """Is there an order of the ops, allowed by `consistency`, that the model accepts?"""
    init: Any = {"kv": "", "set": frozenset()}.get(model)
    evs = _events(ops, model)
    n = len(evs)
    must = [e.ret is not None for e in evs]
    # before[i]: events that must be placed before i may be
    before: list[list[int]] = []
    for e in evs:
        if consistency == "linearizable":
            before.append([j for j, d in enumerate(evs)
                           if must[j] and d.ret is not None and d.ret < e.inv])
        elif consistency == "sequential":
            before.append([j for j, d in enumerate(evs)
                           if must[j] and d.process == e.process and d.inv < e.inv])
        else:
            raise ValueError(f"oracle: unknown consistency {consistency!r}")

    def search(placed: frozenset[int], state: dict[Hashable, Any]) -> bool:
        if all(i in placed for i in range(n) if must[i]):
            return True
        for i in range(n):
            if i in placed or not all(j in placed for j in before[i]):
                continue
            nxt = _apply(evs[i], state, init)
            if nxt is not None and search(placed | {i}, nxt):
                return True
        return False

    return search(frozenset(), {})


@dataclass(frozen=True, slots=True)
class _Txn:
    inv: int
    ret: int | None  # None: indeterminate
    mops: tuple[tuple[Any, Hashable, Any], ...]
    ok: bool


def _txns(ops: Sequence[Op]) -> list[_Txn]:
    out = []
    where = {id(o): n for n, o in enumerate(ops)}
    for pair in pair_ops([o for o in ops if o.process != "nemesis"]):
        comp = pair.completion
        if comp is not None and comp.type == "fail":
            continue
        ok = comp is not None and comp.type == "ok"
        value = comp.value if ok and comp is not None else pair.invoke.value
        mops = tuple((m[0], _fz(m[1]), _fz(m[2]) if len(m) > 2 else None) for m in value or [])
        out.append(_Txn(where[id(pair.invoke)], where[id(comp)] if ok and comp else None,
                        mops, ok))
    return out


def _replay(order: Sequence[_Txn], workload: str) -> bool:
    state: dict[Hashable, Any] = {}
    for t in order:
        for f, k, v in t.mops:
            if f == "append":
                state[k] = (*state.get(k, ()), v)
            elif f == "w":
                state[k] = v
            elif f == "r" and t.ok:
                cur = state.get(k, () if workload == "list-append" else None)
                want = (v or ()) if workload == "list-append" else v
                if cur != want:
                    return False
    return True


def _orders(txns: Sequence[_Txn], strict: bool) -> Iterator[tuple[_Txn, ...]]:
    for perm in permutations(txns):
        if strict and any(b.ret is not None and b.ret < a.inv
                          for i, a in enumerate(perm) for b in perm[i + 1:]):
            continue
        yield perm


def brute_serializable(ops: Sequence[Op], workload: str, consistency: str = "serializable"
                       ) -> bool:
    """Does some serial order of ok (+ any subset of info) transactions explain every read?"""
    if consistency not in ("serializable", "strict-serializable"):
        raise ValueError(f"oracle: unknown consistency {consistency!r}")
    txns = _txns(ops)
    oks = [t for t in txns if t.ok]
    maybes = [t for t in txns if not t.ok]
    for r in range(len(maybes) + 1):
        for extra in combinations(maybes, r):
            for order in _orders([*oks, *extra], consistency == "strict-serializable"):
                if _replay(order, workload):
                    return True
    return False
