"""Brute-force oracles for tiny histories (pure), to cross-check the fast checkers.

Nothing clever on purpose: each oracle enumerates every order a consistency
model allows and replays it on the sequential model, so its verdict is
correct by construction and shares no code with the searches it judges.
Exponential: keep histories to about eight ops or five transactions.

- `brute_linearizable` (linearizable | sequential) for register,
  cas-register, kv, set, mutex and multi-register histories, and for
  Jepsen's counter, bank (transfers never overdraw) and an unordered queue
  (`dequeue`/`drain` remove what they return), with lin's
  documented semantics: `fail` ops have no effect, except (fail rule
  "observe") a cas `fail` without an error, which is an observed compare
  mismatch; `info` and dangling ops may take effect at any point after their
  invocation, or never; their outputs are unknown. `initial`, `fail_rule`
  and `nil_read` mirror the model options.
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

    `kind` is read | write | append | add | cas | cas-maybe | cas-mismatch |
    acquire | release | txn (`a`: its micro-ops).
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
    if e.kind == "txn":
        for f, k, v in e.a:
            if f == "r":
                if s.get(k, init) != v:
                    return None
            else:
                s = {**s, k: v}
        return s
    cur = s.get(e.key, init)
    if e.kind == "incr":
        return {**s, e.key: cur + e.a}
    if e.kind == "enqueue":
        return {**s, e.key: tuple(sorted((*cur, e.a), key=repr))}
    if e.kind == "dequeue":
        if e.a not in cur:
            return None
        rest = list(cur)
        rest.remove(e.a)
        return {**s, e.key: tuple(rest)}
    if e.kind == "drain":
        return {**s, e.key: ()} if tuple(sorted(e.a, key=repr)) == cur else None
    if e.kind == "transfer":
        frm, to, amount = e.a
        bal = dict(cur)
        if bal[frm] < amount:
            return None  # a bank refuses a transfer that would overdraw
        bal[frm] -= amount
        bal[to] += amount
        return {**s, e.key: tuple(sorted(bal.items()))}
    if e.kind in ("acquire", "release"):
        want = e.kind == "release"  # acquire needs it free, release held
        return {**s, e.key: not want} if bool(cur) == want else None
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


def _events(ops: Sequence[Op], model: str, fail_rule: str, nil_read: str) -> list[_Event]:
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
        if failed and (fail_rule == "drop" or f != "cas"):
            continue
        if f == "txn":
            src = comp.value if comp is not None and not unknown else inv.value
            mops = tuple(("r" if m[0] in ("r", "read") else "w", _fz(m[1]), _fz(m[2]))
                         for m in src
                         if not (m[0] in ("r", "read")
                                 and (unknown or (m[2] is None and nil_read == "any"))))
            out.append(_Event(at, ret, inv.process, "txn", None, mops))
            continue
        if f in ("acquire", "release"):
            out.append(_Event(at, ret, inv.process, f, _key_and(inv, None, False)[0]))
            continue
        if model == "counter" and f == "add":
            out.append(_Event(at, ret, inv.process, "incr", None, inv.value))
            continue
        if model == "queue":
            if f == "enqueue":
                out.append(_Event(at, ret, inv.process, "enqueue", None, _fz(inv.value)))
            elif not unknown and comp is not None and comp.value is not None:
                got: Any = _fz(comp.value)
                out.append(_Event(at, ret, inv.process, str(f), None,
                                  tuple(got) if f == "drain" else got))
            continue
        if model == "bank":
            if f == "transfer":
                v = inv.value
                out.append(_Event(at, ret, inv.process, "transfer", None,
                                  (str(v["from"]), str(v["to"]), v["amount"])))
            elif not unknown and comp is not None:
                out.append(_Event(at, ret, inv.process, "read", None,
                                  tuple(sorted((str(k), b) for k, b in comp.value.items()))))
            continue
        if f in ("read", "get"):
            if unknown or failed or comp is None:
                continue
            k, v = _key_and(inv, comp.value, keyed)
            if v is None and nil_read == "any" and model in ("register", "cas-register"):
                continue
            if model == "kv" and v is None:
                v = ""
            want: Any = frozenset(_fz(x) for x in (v or [])) if model == "set" else _fz(v)
            if model == "set" and len(want) != len(v or []):
                want = ("an element read twice",)  # no set state reads like that
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


def brute_linearizable(ops: Sequence[Op], model: str, consistency: str = "linearizable",
                       *, initial: Any = None, has_initial: bool = False,
                       fail_rule: str = "observe", nil_read: str = "value") -> bool:
    """Is there an order of the ops, allowed by `consistency`, that the model accepts?"""
    init: Any = {"kv": "", "set": frozenset(), "mutex": False, "counter": 0,
                 "queue": ()}.get(model)
    if has_initial:
        init = frozenset(initial) if model == "set" else _fz(initial)
        if model == "bank":
            init = tuple(sorted((str(k), b) for k, b in initial.items()))
    evs = _events(ops, model, fail_rule, nil_read)
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
