"""Porcupine-class checker: linearizability and sequential consistency (pure).

One search serves both consistency models. It is the WGL/Lowe search:
repeatedly pick an op that may go next, step the sequential model, and
backtrack when nothing can. The search never visits the same
(set of linearized ops, model state) twice. What "may go next" means is the
only difference between the two models:

* linearizable: an op may go next when no pending op returned before it was
  invoked (real-time order). Ops are numbered by return position, so the
  earliest-returning pending op is the lowest zero bit of the linearized-set
  bitmask, and the ops that may go next are one precomputed mask and-not the
  bitmask. The histories are partitioned by key first (P-compositionality:
  linearizability is local, Herlihy & Wing), which is what makes kv fast.
* sequential: an op may go next when every earlier determinate op of its own
  process has gone (program order); real time between processes is dropped.
  Sequential consistency is *not* local, so keyed histories are decided by
  a search over the whole history with a product state (one slot per key);
  each key alone is only a necessary condition, used to fail fast, and a
  linearizable history is accepted at once.

Indeterminate ops (an `info` completion, an invoke left dangling, a fail with
a timeout error) may take effect at any point after their invocation, or not
at all: they return "at infinity" (linearizable) or are bound to their
process's earlier ops but not to its later ones (sequential). An
indeterminate op may also never take effect, so the search may stop once all
determinate ops are placed. Indeterminate reads have no effect and are
dropped; `fail` ops had no effect and are dropped, except, under the fail
rule "observe", a cas-register `fail :cas` without an error, which is an
observed compare mismatch (the etcd semantics in ../shared/peers/README.md).

Models are bundles of pure functions (`Model`, registered in `REGISTRY`, as
Porcupine's `Model`): adding one needs no change to the search. How ops are
read (initial value, the fail rule, nil reads) is a `ModelOptions`.

Pruning (observer-first, producers, lost values, monotone kv/set states,
optional unknown ops) is described on `_search`; each rule only removes
branches that cannot succeed, which the brute-force oracle in the tests
checks.

A failing verdict names the deepest stuck point found (the fewest ops left
unlinearized): the ops that could not go next, the states reached, and why.
A time limit yields "unknown" for partitions not finished, never a guess.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from selfhood.checkers.history import Op, Pair, pair_ops
from selfhood.checkers.verdict import UNKNOWN, CheckResult, Validity
from selfhood.errors import CheckerError, SpecError

__all__ = [
    "CONSISTENCY_MODELS",
    "DEFAULT_OPTIONS",
    "FAIL_RULES",
    "MODELS",
    "NIL_READS",
    "REGISTRY",
    "Effect",
    "Model",
    "ModelOptions",
    "check_linearizable",
]

CONSISTENCY_MODELS: tuple[str, ...] = ("linearizable", "sequential")
ANOMALY = {"linearizable": "nonlinearizable", "sequential": "nonsequential"}
# Models ruled out by a failure: linearizable implies sequential.
_RULED_OUT = {"linearizable": {"linearizable"}, "sequential": {"sequential", "linearizable"}}


class _Illegal:
    """Marker returned by a step that the model forbids (identity-compared)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ILLEGAL"


ILLEGAL: Any = _Illegal()
_NO: Any = object()  # "no such state" marker
_INF = 1 << 62  # return position of an indeterminate op
_CHECK_EVERY = 255  # iterations per slice (partitions take turns; the clock is read between)
Step = Callable[[Any], Any]
# The legality condition of an observer on a plain state: ("eq", v) for a
# read (legal iff the state is v), ("ne", a) for an observed cas mismatch.
_Obs = tuple[str, Any] | None


@dataclass(slots=True)
class _Prepared:
    """One op ready for the search: its window, its model step and a description."""

    call: int
    ret: int  # _INF when indeterminate
    step: Step
    key: Hashable
    process: Any
    index: int
    desc: str
    observer: bool = False  # never changes the state when legal (a read)
    obs: _Obs = None  # the observer's legality condition on a plain (unkeyed) state
    resets: bool = False  # sets the state outright (a kv put): see Model.grows
    reset_to: Any = None  # ... to this value
    produces: tuple[Any, ...] = ()  # values a register op may set (write v, cas → b)
    slot: int | None = None  # index of its key in a product state

    @property
    def indeterminate(self) -> bool:
        return self.ret >= _INF


# --- values and descriptions ---------------------------------------------------------


def _freeze(x: Any) -> Any:
    """Model states must be hashable: lists become tuples, sets frozensets."""
    if isinstance(x, list | tuple):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, set | frozenset):
        return frozenset(_freeze(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted(((_freeze(k), _freeze(v)) for k, v in x.items()), key=repr))
    return x


def _show(x: Any) -> str:
    if x is None:
        return "nil"
    if isinstance(x, frozenset):
        return "#{" + " ".join(_show(v) for v in sorted(x, key=repr)) + "}"
    if isinstance(x, tuple):
        return "[" + " ".join(_show(v) for v in x) + "]"
    if isinstance(x, str):
        return repr(x)
    return str(x)


def _is_pair(x: Any) -> bool:
    return isinstance(x, list | tuple) and len(x) == 2


def _timed_out(op: Op | None) -> bool:
    if op is None or op.error is None:
        return False
    err = op.error
    if isinstance(err, list | tuple) and err:
        err = err[0]
    return str(err).replace("_", "-") in ("timed-out", "timeout", "timed out")


# --- models: bundles of pure functions -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """How to read a history's ops (the `selfhood check` model options).

    `initial`: the state before any op (`DEFAULT`: the model's own: nil for
    registers, "" for kv, the empty set, 0 for a counter, free for a mutex);
    for keyed models every key starts there. `fail`: "observe" reads a cas
    `fail` without an error as an observed compare mismatch (Porcupine's etcd
    logs, selfhood's recorder); "drop" drops every `fail` op, as Jepsen
    defines `:fail` and Knossos does. `nil_read`: "value" reads an `ok` read
    of nil as the value nil; "any" as a read whose value is unknown, legal in
    every state (Knossos's register models).
    """

    initial: Any = None
    fail: str = "observe"
    nil_read: str = "value"
    has_initial: bool = False

    @classmethod
    def make(cls, *, initial: Any = None, has_initial: bool = False, fail: str = "observe",
             nil_read: str = "value") -> ModelOptions:
        """Validated options (SpecError names the bad one)."""
        if fail not in FAIL_RULES:
            raise SpecError(f"--fail must be one of {', '.join(FAIL_RULES)}, got {fail!r}")
        if nil_read not in NIL_READS:
            raise SpecError(f"--nil-read must be one of {', '.join(NIL_READS)}, got {nil_read!r}")
        return cls(initial, fail, nil_read, has_initial)


FAIL_RULES: tuple[str, ...] = ("observe", "drop")
NIL_READS: tuple[str, ...] = ("value", "any")
DEFAULT_OPTIONS = ModelOptions()


class Effect(NamedTuple):
    """What one completed op does to the model: the unit the search places.

    `step` maps a state to the next one or ILLEGAL; `obs` is an observer's
    legality condition on a plain state (see _Obs); `produces` the values a
    register op may set (for the producers pruning); `reset_to` the state a
    step sets outright whatever came before (a kv put), or _NO.
    """

    key: Hashable
    step: Step
    desc: str
    obs: _Obs = None
    produces: tuple[Any, ...] = ()
    reset_to: Any = _NO
    observer: bool = False  # legal steps never change the state (a read)


# compile(pair, indeterminate, options, context) -> Effect, or None: no effect, nothing seen
Compile = Callable[[Pair, bool, ModelOptions, Any], Effect | None]


@dataclass(frozen=True, slots=True)
class Model:
    """A sequential specification as a bundle of pure functions (Porcupine's `Model`).

    `init(options, context)` is the initial state; `compile` turns one op
    (a pair) into its `Effect` once, before the search: the effect's step is
    Porcupine's Step, its key Porcupine's Partition (P-compositionality),
    its description DescribeOperation; `describe` is DescribeState. States
    are immutable hashable values, so Equal and Hash are Python's `==` and
    `hash`. `scan(pairs)` builds a per-history context (None for most).
    `grows(state, needed)`, when given, says the state only grows between
    resets and whether `needed` is still reachable from `state`.
    """

    name: str
    init: Callable[[ModelOptions, Any], Any]
    compile: Compile
    noun: str
    describe: Callable[[Any], str] = field(default=lambda s: _show(s))
    grows: Callable[[Any, Any], bool] | None = None
    scan: Callable[[Sequence[Pair]], Any] = field(default=lambda pairs: None)
    #: a read of v that is illegal now can only become legal if a pending op produces v
    has_producers: bool = False


def _read_step(v: Any) -> Step:
    def observe(s: Any) -> Any:
        return s if s == v else ILLEGAL
    return observe


def _write_step(v: Any) -> Step:
    def step(s: Any) -> Any:
        return v
    return step


def _cas_ok_step(a: Any, b: Any) -> Step:
    def step(s: Any) -> Any:
        return b if s == a else ILLEGAL
    return step


def _cas_mismatch_step(a: Any) -> Step:
    def observe(s: Any) -> Any:
        return ILLEGAL if s == a else s
    return observe


def _cas_maybe_step(a: Any, b: Any) -> Step:
    def step(s: Any) -> Any:
        return b if s == a else s
    return step


def _append_step(v: str) -> Step:
    def step(s: Any) -> Any:
        return s + v
    return step


def _add_step(v: Any) -> Step:
    def step(s: Any) -> Any:
        return s if v in s else s | {v}
    return step


def _split_key(op: Op, value: Any, keyed: bool) -> tuple[Hashable, Any]:
    if "key" in op.extra:
        return _freeze(op.extra["key"]), value
    if keyed:
        return _freeze(value[0]), value[1]
    return None, value


def _dropped_fail(pair: Pair, opts: ModelOptions) -> bool:
    """A `fail` that the rules drop: every one under "drop"; under "observe"
    all but a cas fail without an error (callers handle that one)."""
    return pair.failed and (opts.fail == "drop" or pair.invoke.f != "cas"
                            or (pair.completion is not None
                                and pair.completion.error is not None))


def _register_compile(allow_cas: bool) -> Compile:
    name = "cas-register" if allow_cas else "register"

    def compile_op(pair: Pair, indeterminate: bool, opts: ModelOptions, ctx: Any) -> Effect | None:
        inv, comp = pair.invoke, pair.completion
        f = inv.f
        if f == "read":
            if indeterminate or pair.failed or comp is None:
                return None
            raw = comp.value
            keyed = "key" not in inv.extra and _is_pair(raw if raw is not None else inv.value)
            if keyed and not _is_pair(raw):
                raw = [inv.value[0], raw]
            key, v = _split_key(inv, raw, keyed)
            if v is None and opts.nil_read == "any":
                return None  # Knossos: a nil read says nothing about the state
            v = _freeze(v)
            return Effect(key, _read_step(v), f"read → {_show(v)}", ("eq", v), (), _NO, True)
        if f == "write":
            if pair.failed:
                return None
            key, v = _split_key(inv, inv.value, "key" not in inv.extra and _is_pair(inv.value))
            v = _freeze(v)
            return Effect(key, _write_step(v), f"write {_show(v)}", None, (v,), _NO, False)
        if f == "cas" and allow_cas:
            val = inv.value
            keyed = "key" not in inv.extra and _is_pair(val) and _is_pair(val[1])
            key, ab = _split_key(inv, val, keyed)
            if not _is_pair(ab):
                raise CheckerError(f"op {inv.index}: cas value must be [from to], got {val!r}")
            a, b = _freeze(ab[0]), _freeze(ab[1])
            if indeterminate:
                return Effect(key, _cas_maybe_step(a, b), f"cas {_show(a)}→{_show(b)} → ?",
                              None, (b,), _NO, False)
            if pair.failed:
                if _dropped_fail(pair, opts):
                    return None  # no effect; under "observe" and with no error, seen below
                return Effect(key, _cas_mismatch_step(a), f"cas {_show(a)}→{_show(b)} → fail",
                              ("ne", a), (), _NO, True)
            return Effect(key, _cas_ok_step(a, b), f"cas {_show(a)}→{_show(b)} → ok",
                          None, (b,), _NO, False)
        raise CheckerError(f"op {inv.index}: the {name} model has no operation {f!r}")
    return compile_op


def _kv_compile(pair: Pair, indeterminate: bool, opts: ModelOptions, ctx: Any) -> Effect | None:
    inv, comp = pair.invoke, pair.completion
    f = inv.f
    keyed_val = "key" not in inv.extra
    if f in ("get", "read"):
        if indeterminate or pair.failed or comp is None:
            return None
        raw = comp.value
        if keyed_val and not _is_pair(raw):
            raw = [inv.value[0] if _is_pair(inv.value) else None, raw]
        key, v = _split_key(inv, raw, keyed_val)
        v = "" if v is None else v
        return Effect(key, _read_step(v), f"get({_show(key)}) → {_show(v)}", ("eq", v),
                      (), _NO, True)
    if f in ("put", "write", "append"):
        if pair.failed:
            return None
        key, v = _split_key(inv, inv.value, keyed_val and _is_pair(inv.value))
        if not isinstance(v, str):
            v = "" if v is None else str(v)
        if f == "append":
            return Effect(key, _append_step(v), f"append({_show(key)}, {_show(v)})", None, (),
                          _NO, False)
        return Effect(key, _write_step(v), f"{f}({_show(key)}, {_show(v)})", None, (), v, False)
    raise CheckerError(f"op {inv.index}: the kv model has no operation {f!r}")


def _set_compile(pair: Pair, indeterminate: bool, opts: ModelOptions, ctx: Any) -> Effect | None:
    inv, comp = pair.invoke, pair.completion
    f = inv.f
    if f == "add":
        if pair.failed:
            return None
        key, v = _split_key(inv, inv.value, False)
        v = _freeze(v)
        return Effect(key, _add_step(v), f"add {_show(v)}")
    if f == "read":
        if indeterminate or pair.failed or comp is None:
            return None
        key, v = _split_key(inv, comp.value, False)
        if v is None:
            v = ()
        if not isinstance(v, list | tuple | set | frozenset):
            raise CheckerError(f"op {comp.index}: a set read must return a collection, got {v!r}")
        fs = frozenset(_freeze(x) for x in v)
        what = f"read → {_show(fs)}"
        if len(fs) != len(v):  # an element read twice: no state of a set reads like that
            fs, what = fs | {_READ_TWICE}, f"read → {_show(tuple(_freeze(x) for x in v))}"
        return Effect(key, _read_step(fs), what, ("eq", fs), observer=True)
    raise CheckerError(f"op {inv.index}: the set model has no operation {f!r}")


class _ReadTwice:
    """Marks a set read that held an element twice (Porcupine's set model rejects it)."""

    def __repr__(self) -> str:
        return "<an element read twice>"


_READ_TWICE = _ReadTwice()


def _mutex_compile(pair: Pair, indeterminate: bool, opts: ModelOptions, ctx: Any
                   ) -> Effect | None:
    inv = pair.invoke
    if pair.failed:
        return None
    key, _ = _split_key(inv, inv.value, False)
    if inv.f == "acquire":
        return Effect(key, _lock_step(True), "acquire")
    if inv.f == "release":
        return Effect(key, _lock_step(False), "release")
    raise CheckerError(f"op {inv.index}: the mutex model has no operation {inv.f!r}")


def _lock_step(to: bool) -> Step:
    """Acquire (to=True) needs the lock free; release needs it held."""
    def step(s: Any) -> Any:
        return ILLEGAL if s is to else to
    return step


# multi-register: Knossos's model of read/write transactions over named registers.
# The state is a tuple of (key, value) pairs, one slot per key of the history.

_READ_FS = ("read", "r")
_WRITE_FS = ("write", "w")


def _txn_mops(op: Op) -> list[tuple[str, Hashable, Any]]:
    if not isinstance(op.value, list | tuple):
        raise CheckerError(f"op {op.index}: a multi-register txn value must be a list of "
                           f"[f k v], got {op.value!r}")
    out = []
    for m in op.value:
        if not isinstance(m, list | tuple) or len(m) != 3 or m[0] not in (*_READ_FS, *_WRITE_FS):
            raise CheckerError(f"op {op.index}: a multi-register micro-op is [read|write k v], "
                               f"got {m!r}")
        out.append(("r" if m[0] in _READ_FS else "w", _freeze(m[1]), _freeze(m[2])))
    return out


def _multi_scan(pairs: Sequence[Pair]) -> dict[Hashable, int]:
    keys: dict[Hashable, int] = {}
    for p in pairs:
        if isinstance(p.invoke.value, list | tuple):
            for m in p.invoke.value:
                if isinstance(m, list | tuple) and len(m) == 3:
                    keys.setdefault(_freeze(m[1]), len(keys))
    return keys


def _multi_init(opts: ModelOptions, slots: dict[Hashable, int]) -> Any:
    v = _freeze(opts.initial) if opts.has_initial else None
    return tuple((k, v) for k in slots)


def _txn_step(mops: list[tuple[str, int, Any]]) -> Step:
    def step(s: Any) -> Any:
        for kind, i, v in mops:
            if kind == "r":
                if s[i][1] != v:
                    return ILLEGAL
            else:
                s = (*s[:i], (s[i][0], v), *s[i + 1:])
        return s
    return step


def _multi_compile(pair: Pair, indeterminate: bool, opts: ModelOptions,
                   slots: dict[Hashable, int]) -> Effect | None:
    inv, comp = pair.invoke, pair.completion
    if inv.f != "txn":
        raise CheckerError(f"op {inv.index}: the multi-register model has no operation "
                           f"{inv.f!r} (use txn)")
    if pair.failed:
        return None
    mops = _txn_mops(comp if comp is not None and pair.ok else inv)
    kept = []
    for kind, k, v in mops:
        if kind == "r" and (indeterminate or (v is None and opts.nil_read == "any")):
            continue  # an unseen read, or (Knossos) a nil read: no constraint
        kept.append((kind, slots[k], v))
    if not kept:
        return None
    what = " ".join(f"{'r' if kind == 'r' else 'w'} {_show(k)} {_show(v)}"
                    for kind, k, v in mops)
    reads_only = all(kind == "r" for kind, _, _ in kept)
    return Effect(None, _txn_step(kept), f"txn [{what}]", observer=reads_only)


def _grows_kv(s: Any, v: Any) -> bool:
    return isinstance(v, str) and v.startswith(s)


def _grows_set(s: Any, v: Any) -> bool:
    return bool(s <= v)


def _initial(default: Any, convert: Callable[[Any], Any] = _freeze
             ) -> Callable[[ModelOptions, Any], Any]:
    def init(opts: ModelOptions, ctx: Any) -> Any:
        return convert(opts.initial) if opts.has_initial else default
    return init


def _as_set(x: Any) -> frozenset[Any]:
    if not isinstance(x, list | tuple | set | frozenset):
        raise SpecError(f"--initial-value for the set model must be a collection, got {x!r}")
    return frozenset(_freeze(v) for v in x)


def _as_lock(x: Any) -> bool:
    if x not in (True, False, "locked", "free"):
        raise SpecError(f"--initial-value for the mutex model is locked|free, got {x!r}")
    return x is True or x == "locked"


#: every model the search checks, by name
REGISTRY: dict[str, Model] = {m.name: m for m in (
    Model("register", _initial(None), _register_compile(False), "the register",
          has_producers=True),
    Model("cas-register", _initial(None), _register_compile(True), "the register",
          has_producers=True),
    Model("kv", _initial("", lambda x: "" if x is None else str(x)), _kv_compile, "the value",
          grows=_grows_kv),
    Model("set", _initial(frozenset(), _as_set), _set_compile, "the set", grows=_grows_set),
    Model("mutex", _initial(False, _as_lock), _mutex_compile, "the mutex",
          describe=lambda s: "locked" if s else "free"),
    Model("multi-register", _multi_init, _multi_compile, "the registers", scan=_multi_scan),
)}
MODELS: tuple[str, ...] = tuple(REGISTRY)


def _prepare(ops: Sequence[Op], model: Model, opts: ModelOptions
             ) -> tuple[list[_Prepared], Any]:
    """Pair the client ops and compile each into a search item (positions = history
    order); also the initial state."""
    client = [op for op in ops if op.process != "nemesis"]
    pos = {id(op): n for n, op in enumerate(client)}
    pairs = pair_ops(client)
    ctx = model.scan(pairs)
    compile_op = model.compile
    out: list[_Prepared] = []
    for pair in pairs:
        comp = pair.completion
        indeterminate = pair.indeterminate or _timed_out(comp)
        if indeterminate and comp is not None and comp.type == "fail":
            pair = Pair(pair.invoke, None)  # a timed-out fail is unknown, not a failure
        eff = compile_op(pair, indeterminate, opts, ctx)
        if eff is None:
            continue
        key, step, desc, obs, produces, reset_to, observer = eff
        inv = pair.invoke
        call = pos[id(inv)]
        ret = _INF if indeterminate or comp is None else pos[id(comp)]
        line = inv.extra.get("line")
        where = f", line {line}" if isinstance(line, int) else ""
        tag = " (indeterminate)" if indeterminate else ""
        resets = reset_to is not _NO
        out.append(_Prepared(call, ret, step, key, inv.process, inv.index,
                             f"op {inv.index} (process {inv.process}{where}): {desc}{tag}",
                             observer, obs, resets, reset_to if resets else None, produces))
    return out, model.init(opts, ctx)


# --- the search ------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    """How one partition's search ended: "ok", "illegal" or "timeout"."""

    status: str
    explored: int = 0
    total: int = 0
    depth: int = 0
    stuck_nodes: list[tuple[int, Any]] = field(default_factory=list)
    path: list[int] = field(default_factory=list)
    order: list[_Prepared] = field(default_factory=list)
    candidates: Callable[[int], int] | None = None


_Search = Generator[None, None, _Outcome]


def _observer_masks(order: list[_Prepared],
                    plain: bool) -> tuple[int, Callable[[Any], int] | None]:
    """Mask of observers and, when every observer has a plain condition, a
    function state -> mask of the observers legal in that state (one dict
    lookup instead of one step call per read)."""
    observers = 0
    eq: dict[Any, int] = {}
    ne: dict[Any, int] = {}
    ne_all = 0
    plain_state = plain
    plain = True
    for j, it in enumerate(order):
        if not it.observer:
            continue
        bit = 1 << j
        observers |= bit
        if it.obs is None:
            plain = False
        elif it.obs[0] == "eq":
            eq[it.obs[1]] = eq.get(it.obs[1], 0) | bit
        else:
            ne[it.obs[1]] = ne.get(it.obs[1], 0) | bit
            ne_all |= bit
    if not plain or not plain_state:
        return observers, None
    eq_get, ne_get = eq.get, ne.get
    if not ne_all:
        return observers, lambda state: eq_get(state, 0)
    return observers, lambda state: eq_get(state, 0) | (ne_all & ~ne_get(state, 0))


class _Rules(NamedTuple):
    """The pruning rules of one search, as closures over its lookup tables."""

    observers: int  # mask of observers
    watch: list[bool]  # state-changing ops checked by the lost-value rule
    observers_first: Callable[[Any, int, int], int]  # (state, bits, cand) -> candidates
    loses_needed_value: Callable[[int, Any, Any, int], bool]  # (j, state, next, bits)


def _pruning_rules(order: list[_Prepared], plain: bool,
                   grows: Callable[[Any, Any], bool] | None) -> _Rules:
    """Build the tables once and return the two rules that read them."""
    steps = [it.step for it in order]
    keys = [it.key for it in order]
    slots = [it.slot for it in order]
    observers, legal_obs = _observer_masks(order, plain)
    made_by: dict[tuple[Hashable, Any], int] = {}  # (key, value) -> ops that may set it
    for j, it in enumerate(order):
        for v in it.produces:
            made_by[(it.key, v)] = made_by.get((it.key, v), 0) | (1 << j)
    producers = [-1] * len(order)  # per observer: ops that may set what it needs
    readers: dict[tuple[Hashable, Any], int] = {}  # (key, value) -> reads that need it
    for j, it in enumerate(order):
        if it.obs is not None and it.obs[0] == "eq":
            kv = (it.key, it.obs[1])
            readers[kv] = readers.get(kv, 0) | (1 << j)
            if made_by:
                producers[j] = made_by.get(kv, 0)
    need = [it.obs[1] if it.obs is not None else None for it in order]
    reset_to = [it.reset_to for it in order]
    resets_of: dict[Hashable, int] = {it.key: 0 for it in order}  # per key: kv puts
    for j, it in enumerate(order):
        if it.resets:
            resets_of[it.key] |= 1 << j
    not_obs = ~observers

    def reachable(key: Hashable, v: Any, bits: int) -> bool:
        """Can a pending reset of `key` (a kv put) grow into `v`?"""
        pr = resets_of[key] & ~bits
        while pr:
            plow = pr & -pr
            pr ^= plow
            if grows is not None and grows(reset_to[plow.bit_length() - 1], v):
                return True
        return False

    def observers_first(state: Any, bits: int, cand: int) -> int:
        """Candidates left once the observer rules apply (0: a dead end).

        Observer first: an observer legal here can go first in any
        completion, so it is the only branch. An enabled observer illegal
        here is a dead branch; it kills the node outright when nothing
        pending can make it legal (producers: no pending op can set the
        value it needs; monotone states: neither this state nor a pending
        reset can grow into it).
        """
        if legal_obs is not None:
            lo = legal_obs(state)
            bad = cand & observers & ~lo
        else:  # product states: ask each enabled observer
            lo = bad = 0
            oc = cand & observers
            while oc:
                olow = oc & -oc
                oc ^= olow
                if steps[olow.bit_length() - 1](state) is ILLEGAL:
                    bad |= olow
                else:
                    lo |= olow
        if bad and grows is not None:
            b2 = bad
            while b2:
                blow = b2 & -b2
                b2 ^= blow
                jb = blow.bit_length() - 1
                sl = slots[jb]
                v = need[jb]
                if not grows(state if sl is None else state[sl], v) \
                        and not reachable(keys[jb], v, bits):
                    return 0
        while bad:
            blow = bad & -bad
            bad ^= blow
            pm = producers[blow.bit_length() - 1]
            if pm >= 0 and not pm & ~bits:
                return 0
        cand &= not_obs | lo
        oc = cand & lo
        return oc & -oc if oc else cand

    def loses_needed_value(j: int, state: Any, ns: Any, nb: int) -> bool:
        """Lost value: op j moves the state off v while a pending read needs
        exactly v and nothing pending can bring v back (a register write of
        v; for kv a put that v can grow from)."""
        sl = slots[j]
        old = state if sl is None else state[sl]
        if old == (ns if sl is None else ns[sl]):
            return False
        kv = (keys[j], old)
        if not readers.get(kv, 0) & ~nb:
            return False
        if grows is None:
            return not made_by.get(kv, 0) & ~nb
        return not reachable(keys[j], old, nb)

    return _Rules(observers, [bool(readers) and not it.observer for it in order],
                  observers_first, loses_needed_value)


def _search(order: list[_Prepared], init: Any, candidates: Callable[[int], int],
            det_mask: int, before: list[int] | None = None,
            grows: Callable[[Any, Any], bool] | None = None, plain: bool = True) -> _Search:
    """Depth-first search over (linearized bitmask, state) with a visited set.

    `candidates(bits)` is the mask of ops that may go next (inlined through
    `before` for the linearizable case, the hot path); the search succeeds once
    every op in `det_mask` (the determinate ones) is placed. Both consistency
    models share it. It yields every 256 steps so the caller can interleave
    partitions (the first illegal one ends the check, as Porcupine's parallel
    partitions do) and enforce the time limit; it returns its outcome.

    Pruning; every rule only drops branches that cannot succeed:

    * observers first and dead observers (`observers_first`), with the
      producers rule for registers (an illegal read of v needs a pending op
      that can still set v) and the monotone rule for kv and set (`grows`:
      states only grow between resets, so a read needing a state that
      neither this state nor a pending reset can grow into is dead);
    * lost value (`loses_needed_value`). This keeps the sequential search,
      where a read's process may lag arbitrarily, from wandering;
    * unknown ops are optional, so two placements are dominated by leaving
      them out: an indeterminate op that does not change the state, and a
      step right after an indeterminate op that reaches the same state
      without it (a blind write that hides it) - the parent node reaches that
      state with the unknown op still unplaced.

    `plain` is False when states are per-key tuples (the sequential product).
    """
    total = len(order)
    if not det_mask:
        return _Outcome("ok", total=total)
    observers, watch, observers_first, loses_needed_value = _pruning_rules(order, plain, grows)
    steps = [it.step for it in order]
    unsure = [it.indeterminate for it in order]
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any, int, int, Any]] = []
    pind: Any = _NO  # the state before the indeterminate op that led here
    best = 0
    best_nodes: list[tuple[int, Any]] = [(0, init)]
    best_path: list[int] = []
    bits, state, cand = 0, init, 0
    fresh = True  # entering a new node: compute its candidates
    n = 0
    while True:
        n += 1
        if not n & _CHECK_EVERY:
            yield None
        if fresh:
            fresh = False
            if before is not None:
                x = bits + 1
                cand = before[(x & -x).bit_length() - 1] & ~bits
            else:
                cand = candidates(bits)
            if cand & observers:
                cand = observers_first(state, bits, cand)
        if cand:
            low = cand & -cand
            cand ^= low
            j = low.bit_length() - 1
            ns = steps[j](state)
            if ns is ILLEGAL:
                continue
            if unsure[j] and ns == state:
                continue  # an unknown op with no effect here: same as not placing it
            if pind is not _NO and steps[j](pind) == ns:
                continue  # the unknown op just placed made no difference: see above
            nb = bits | low
            if watch[j] and loses_needed_value(j, state, ns, nb):
                continue
            node = (nb, ns)
            if node in seen:
                continue
            seen.add(node)
            stack.append((bits, state, cand, j, pind))
            pind = state if unsure[j] else _NO
            bits, state = nb, ns
            if nb & det_mask == det_mask:
                return _Outcome("ok", len(seen), total)
            fresh = True
            d = len(stack)
            if d >= best:
                if d > best:
                    best = d
                    best_nodes = []
                    best_path = [e[3] for e in stack]
                if len(best_nodes) < 8:
                    best_nodes.append(node)
        elif stack:
            bits, state, cand, _, pind = stack.pop()
        else:
            return _Outcome("illegal", len(seen), total, best, best_nodes, best_path, order,
                            candidates)


def _search_linearizable(items: list[_Prepared], init: Any,
                         grows: Callable[[Any, Any], bool] | None = None) -> _Search:
    """WGL with ops numbered by return position (see the module docstring)."""
    det = sorted((it for it in items if not it.indeterminate), key=lambda it: it.ret)
    ind = sorted((it for it in items if it.indeterminate), key=lambda it: it.call)
    order = det + ind
    n_det = len(det)
    by_call = sorted(range(len(order)), key=lambda j: order[j].call)
    call_pos = [order[j].call for j in by_call]
    prefix = [0]
    m = 0
    for j in by_call:
        m |= 1 << j
        prefix.append(m)
    # before[i]: ops invoked before op i returned (op i included).
    before = [prefix[bisect.bisect_left(call_pos, order[i].ret)] for i in range(n_det)]
    det_mask = (1 << n_det) - 1

    def candidates(bits: int) -> int:
        x = bits + 1
        i = (x & -x).bit_length() - 1  # earliest-returning op not yet linearized
        return before[i] & ~bits

    return _search(order, init, candidates, det_mask, before, grows)


def _search_sequential(items: list[_Prepared], init: Any,
                       grows: Callable[[Any, Any], bool] | None, plain: bool) -> _Search:
    """Program order per process; an indeterminate op waits only for its predecessors.

    Ops are numbered by return position (as in the linearizable search), so
    the depth-first search tries candidates in real-time order first: a
    history that is close to linearizable is then found without backtracking.
    """
    order = sorted(items, key=lambda it: (it.ret, it.call))
    chains: dict[Any, int] = {}
    last_det: dict[Any, int] = {}
    loose: list[tuple[int, int]] = []  # (bit, required predecessor bit or 0)
    det_mask = 0
    for j in sorted(range(len(order)), key=lambda j: order[j].call):
        it = order[j]
        p = _freeze(it.process)
        if it.indeterminate:
            prev = last_det.get(p)
            loose.append((1 << j, 0 if prev is None else 1 << prev))
        else:
            chains[p] = chains.get(p, 0) | (1 << j)
            last_det[p] = j
            det_mask |= 1 << j
    chain_masks = list(chains.values())

    def candidates(bits: int) -> int:
        out = 0
        for cm in chain_masks:
            rest = cm & ~bits
            if rest:
                out |= rest & -rest
        for bit, pred in loose:
            if not bits & bit and bits & pred == pred:
                out |= bit
        return out

    return _search(order, init, candidates, det_mask, grows=grows, plain=plain)


def _product(items: list[_Prepared], init: Any) -> tuple[list[_Prepared], Any]:
    """One state for many keys (sequential consistency is not local)."""
    keys = sorted({it.key for it in items}, key=repr)
    if len(keys) <= 1:
        return items, init
    slot = {k: n for n, k in enumerate(keys)}

    def lift(inner: Step, k: int) -> Step:
        def step(s: Any) -> Any:
            v = inner(s[k])
            if v is ILLEGAL:
                return ILLEGAL
            return (*s[:k], v, *s[k + 1:])
        return step

    out = [_Prepared(it.call, it.ret, lift(it.step, slot[it.key]), it.key, it.process,
                     it.index, it.desc, it.observer, it.obs, it.resets, it.reset_to,
                     it.produces, slot[it.key]) for it in items]
    return out, tuple(init for _ in keys)


# --- explanation -------------------------------------------------------------------------


def _lost_value_reason(order: list[_Prepared], bits: int, low: int, it: _Prepared,
                       states: list[Any]) -> str | None:
    """Why placing `it` is a dead end when it overwrites a value a pending read
    still needs (the lost-value pruning), or None."""
    for s in states:
        old = s if it.slot is None else s[it.slot]
        ns = it.step(s)
        if ns is ILLEGAL or old == (ns if it.slot is None else ns[it.slot]):
            continue
        after = bits | low
        need = [o for j, o in enumerate(order) if not after >> j & 1 and o.key == it.key
                and o.obs is not None and o.obs[0] == "eq" and o.obs[1] == old]
        if need:
            return (f"possible, but it overwrites {_show(old)}, which {need[0].desc} still "
                    "needs, and so every continuation leads to a dead end")
    return None


def _stuck_report(out: _Outcome, model: Model, key: Hashable,
                  consistency: str) -> tuple[str, dict[str, Any]]:
    order = out.order
    show = model.describe
    bits = out.stuck_nodes[0][0] if out.stuck_nodes else 0
    states = [s for b, s in out.stuck_nodes if b == bits]
    pending: list[dict[str, Any]] = []
    cand = out.candidates(bits) if out.candidates is not None else 0
    while cand:
        low = cand & -cand
        cand ^= low
        it = order[low.bit_length() - 1]
        impossible = [s for s in states if it.step(s) is ILLEGAL]
        if len(impossible) == len(states):
            reason = "impossible in every state reached"
            if it.obs is not None and it.obs[0] == "eq" and it.produces == () \
                    and model.has_producers \
                    and not any(it.key == o.key and it.obs[1] in o.produces
                                for j, o in enumerate(order) if not bits >> j & 1):
                reason += f", and no pending op can write {_show(it.obs[1])} any more"
        elif impossible:
            reason = (f"impossible in state {', '.join(show(s) for s in impossible)}; "
                      "every other choice leads to a dead end")
        else:
            reason = _lost_value_reason(order, bits, low, it, states) \
                or "possible, but every continuation leads to a dead end"
        pending.append({"op": it.index, "process": it.process, "desc": it.desc, "reason": reason})
    where = "" if key is None else f" for key {_show(key)}"
    thing = model.noun
    prefix = [order[j] for j in out.path]
    last = "; ".join(it.desc for it in prefix[-3:]) if prefix else "none"
    state_s = " or ".join(show(s) for s in states) if states else "none"
    order_kind = "real-time" if consistency == "linearizable" else "program"
    pend_s = "; ".join(f"{p['desc']} — {p['reason']}" for p in pending) or "none"
    text = (f"not {consistency}{where}: the deepest partial order reached places "
            f"{out.depth} of {out.total} ops (last: {last}) and leaves {thing} in state "
            f"{state_s}; no op that {order_kind} order allows next can be placed: {pend_s}")
    detail = {"key": None if key is None else _show(key), "linearized": out.depth,
              "of": out.total, "prefix": [it.index for it in prefix],
              "states": [show(s) for s in states], "pending": pending}
    return text, detail


# --- entry point ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """The combined outcome of searching several partitions."""

    verdict: Validity
    keys: list[Hashable]
    unfinished: list[Hashable]
    explored: int = 0
    failed: _Outcome | None = None
    failed_key: Hashable = None


def _run(searches: dict[Hashable, _Search], deadline: float | None) -> _Run:
    """Round-robin slices over the partitions' searches until one is illegal,
    all are done, or the deadline passes (then the rest are unknown).

    A cheap illegal partition is found even when another partition's search
    is huge, as with Porcupine's parallel partitions.
    """
    keys = sorted(searches, key=repr)
    running = {n: searches[k] for n, k in enumerate(keys)}
    run = _Run(True, keys, [])
    while running and run.verdict is True:
        for n in list(running):
            try:
                next(running[n])
                continue
            except StopIteration as stop:
                out: _Outcome = stop.value
            del running[n]
            run.explored += out.explored
            if out.status == "illegal":
                run.verdict = False
                run.failed, run.failed_key = out, keys[n]
                break
        if run.verdict is True and running and deadline is not None \
                and time.monotonic() > deadline:
            run.verdict = UNKNOWN
    for gen in running.values():
        gen.close()
    run.unfinished = [keys[n] for n in running]
    return run


def _partitions(items: list[_Prepared]) -> dict[Hashable, list[_Prepared]]:
    """Items grouped by key (independent objects), in history order."""
    parts: dict[Hashable, list[_Prepared]] = {}
    for it in items:
        parts.setdefault(it.key, []).append(it)
    return parts


def _linearizable_searches(items: list[_Prepared], init: Any,
                           model: Model) -> dict[Hashable, _Search]:
    return {k: _search_linearizable(v, init, model.grows)
            for k, v in _partitions(items).items()}


def check_linearizable(ops: Sequence[Op], model: str, *, consistency: str = "linearizable",
                       time_limit_s: float | None = None,
                       options: ModelOptions = DEFAULT_OPTIONS) -> CheckResult:
    """Is this history linearizable (or sequentially consistent) for `model`?

    `model`: a name in MODELS (REGISTRY). Keys (an op's `key` field, or
    `[k, v]` values for register / cas-register / kv) are independent objects.
    `options` say how to read the ops (ModelOptions: initial value, the fail
    rule, nil reads). Returns valid True / False / "unknown" (the time limit
    stopped a partition).

    For "sequential", the cheap per-key linearizable search runs first (with
    at most a quarter of the time limit): a linearizable history is
    sequentially consistent, so a success settles it. Then, for keyed
    histories, each key alone (another quarter): a key that is not
    sequentially consistent settles it the other way. Otherwise the
    sequential search over the product state decides.
    """
    spec = REGISTRY.get(model)
    if spec is None:
        raise SpecError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if consistency not in CONSISTENCY_MODELS:
        raise SpecError(f"unknown consistency model {consistency!r} for {model}; expected one "
                        f"of {', '.join(CONSISTENCY_MODELS)}")
    started = time.monotonic()
    deadline = None if time_limit_s is None else started + time_limit_s
    items, init = _prepare(ops, spec, options)
    n_keys = len({it.key for it in items})
    via = consistency
    if consistency == "linearizable":
        run = _run(_linearizable_searches(items, init, spec), deadline)
    else:
        run = _Run(UNKNOWN, [], [])
        decided = False
        if n_keys > 1 or time_limit_s is not None:
            # linearizable implies sequential: a success settles it
            shortcut = None if time_limit_s is None else started + time_limit_s / 4
            run = _run(_linearizable_searches(items, init, spec), shortcut)
            via = "linearizable"
            decided = run.verdict is True
        if not decided and n_keys > 1:
            # Each key alone must be sequentially consistent (a necessary
            # condition, cheap with plain states): a failing key settles it.
            budget = None if time_limit_s is None else time.monotonic() + time_limit_s / 4
            run = _run({k: _search_sequential(v, init, spec.grows, plain=True)
                        for k, v in _partitions(items).items()}, budget)
            via = "sequential per key"
            decided = run.verdict is False
        if not decided:
            prod, pinit = _product(items, init)
            run = _run({None: _search_sequential(prod, pinit, spec.grows,
                                                 plain=n_keys <= 1)}, deadline)
            via = "sequential"

    result = CheckResult(valid=run.verdict)
    stuck_detail: dict[str, Any] | None = None
    if run.failed is not None:
        text, stuck_detail = _stuck_report(run.failed, spec, run.failed_key, consistency)
        result.add(ANOMALY[consistency], text)
        result.not_ |= _RULED_OUT[consistency]
    unknown_keys = [_show(k) for k in run.unfinished] if run.verdict == UNKNOWN else []
    if run.verdict == UNKNOWN:
        result.unknown_reasons.append(
            f"{consistency} search hit the {time_limit_s} s time limit; not finished for "
            f"{len(unknown_keys)} of {len(run.keys)} partition(s): {', '.join(unknown_keys[:10])}")
    # Keyed by the consistency model so composing a linearizable and a
    # sequential result keeps both.
    result.details[consistency] = {
        "model": model, "consistency": consistency, "ops": len(items),
        "keys": n_keys, "partitions": len(run.keys),
        "partitions_checked": len(run.keys) - len(run.unfinished),
        "decided_by": via,  # "linearizable": it is linearizable, hence sequential
        "unknown_partitions": unknown_keys,
        "failed_partition": None if run.failed is None or run.failed_key is None
        else _show(run.failed_key),
        "stuck": stuck_detail,
        "states_explored": run.explored,  # by the partitions that finished
        "elapsed_s": time.monotonic() - started,
    }
    return result
