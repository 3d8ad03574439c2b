"""Immutable generators of operations, Jepsen-style (pure).

A generator is a value. ``op(ctx)`` returns the next operation together with
the generator that follows it (or ``None`` once exhausted); ``update(ctx,
event)`` returns the generator that follows after the interpreter reports an
invoke or a completion. Nothing is mutated, so a schedule can be replayed,
branched or shrunk, and the same seed gives the same run: all randomness
comes from ``ctx.rng``, the one seeded ``random.Random`` the interpreter owns.

Contract with the interpreter (docs/run.md, "Inside a run"):

- Ops come back *filled in*: ``process`` is a free process from the context
  and ``time`` is the earliest virtual ns at which to issue (>= ``ctx.time``).
- The interpreter always adopts the successor it is handed. An op is a
  commitment: its process counts as busy (reserved) from then on, and the
  invoke is issued at ``op.time`` even if other events happen first (they
  are still reported through ``update``). Then the interpreter asks again.
- ``Pending(wake)`` means "nothing now": adopt the successor, ask again after
  the next event, and no later than ``wake`` (virtual ns) when it is set.
  ``PENDING`` is the plain sentinel with no wake-up time.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

from selfhood.checkers.history import Op
from selfhood.errors import ChaosError
from selfhood.slots import slot_init, slot_maker

#: virtual time units (the history's `time` is in ns since start)
NS: Final = 1
MS: Final = 1_000_000
SECOND: Final = 1_000_000_000

NEMESIS: Final = "nemesis"


@slot_init
@dataclass(frozen=True, slots=True)
class OpRequest:
    """An operation a generator wants issued.

    ``process`` None = any free client process; ``"nemesis"`` = a fault.
    ``time`` None = as soon as possible (leaf generators fill both in).
    """

    f: str
    value: Any = None
    process: Any = None
    instance: str | None = None
    time: int | None = None


#: ``OpRequest(f, value, process, instance, time)``, built without a call per field
_new_request: Final = slot_maker(OpRequest)

_NEM: Final = (NEMESIS,)


def _drop_nemesis(ps: tuple[Any, ...]) -> tuple[Any, ...]:
    if ps and ps[-1] == NEMESIS:  # where interpreters put it
        return ps[:-1]
    if NEMESIS not in ps:
        return ps
    i = ps.index(NEMESIS)
    return ps[:i] + ps[i + 1:]


@slot_init
@dataclass(frozen=True, slots=True)
class Context:
    """What a generator may look at: virtual time, processes, and the run's rng."""

    time: int
    free_processes: tuple[Any, ...]
    all_processes: tuple[Any, ...]
    rng: random.Random
    # memo of clients_only() (a context is immutable, and interpreters reuse one
    # context for several op/update calls, each restricted again by OnProcesses)
    _clients: Context | None = field(default=None, init=False, repr=False, compare=False)

    def clients_only(self) -> Context:
        """The context without the nemesis process (a hot path: no per-process calls)."""
        c = self._clients
        if c is None:
            if NEMESIS not in self.all_processes and NEMESIS not in self.free_processes:
                return self  # already the clients' view (e.g. nested `clients(...)`)
            c = Context(self.time, _drop_nemesis(self.free_processes),
                        _drop_nemesis(self.all_processes), self.rng)
            object.__setattr__(self, "_clients", c)
        return c

    def nemesis_only(self) -> Context:
        """The context of the nemesis process alone.

        Asked once per ask of a nemesis generator, about twice per client op while
        faults are scheduled. Not memoised like `clients_only`: the interpreter
        makes a new context whenever a process's state changes, so each is asked
        about once (8229 asks of 8171 contexts in a 4000-op run) and a memo only
        costs (+1.4 % instructions per op); built without a call per field
        instead (-1.7 %).
        """
        return make_context(self.time, _NEM if NEMESIS in self.free_processes else (),
                            _NEM if NEMESIS in self.all_processes else (), self.rng, None)

    @property
    def all_free(self) -> bool:
        return len(self.free_processes) == len(self.all_processes)


#: ``Context(time, free_processes, all_processes, rng, clients_only_memo)``, built
#: without a call per field: the interpreter makes two contexts per client op (one and
#: its clients' view), a nemesis generator one more
make_context: Final = slot_maker(Context)


@slot_init
@dataclass(frozen=True, slots=True)
class Pending:
    """No op right now; ask again after the next event (or by ``wake`` ns)."""

    wake: int | None = None


PENDING: Final = Pending()

OpResult: TypeAlias = "tuple[OpRequest | Pending, Generator] | None"


@runtime_checkable
class Generator(Protocol):
    """A pure, immutable source of operations."""

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        """Next op (filled in) and the successor, PENDING, or None when exhausted."""
        ...

    def update(self, ctx: Context, event: Op) -> Generator:
        """The generator after the interpreter reports an invoke or completion."""
        ...


GenLike: TypeAlias = "Generator | OpRequest | Callable[[Context], OpRequest | None] | Sequence[Any]"


def _min_wake(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def pending_merge(a: Pending, b: Pending) -> Pending:
    """Two pendings combined: wake at the earlier of their wake-up times."""
    w = _min_wake(a.wake, b.wake)
    if w is None:
        return PENDING
    return a if a.wake == w else b  # w is one of the two: reuse it, no new value


def randbelow(rng: random.Random) -> Callable[[int], int]:
    """``rng.randrange`` for bounds >= 1, drawing exactly what it draws.

    CPython's ``randrange(n)`` and ``choice(seq)`` are ``_randbelow(n)`` and
    ``seq[_randbelow(len(seq))]`` behind Python-level argument checks; the
    generators draw once or more per op, so they call it directly (the same
    draws, the same seeded runs). Only for bounds >= 1: ``_randbelow(0)``
    does not fail, it never returns.
    """
    below = getattr(rng, "_randbelow", None)
    return below if below is not None else rng.randrange


def is_client(process: Any) -> bool:
    return bool(process != NEMESIS)


def fill_in(req: OpRequest, ctx: Context) -> OpRequest | Pending:
    """Give an op a free process and a time, or PENDING if no process is free.

    An op that names a process waits for that process; an unnamed one goes to
    a random free client process (random from ctx.rng, so runs stay seeded),
    or to the nemesis when the context is the nemesis's alone.
    """
    time = ctx.time if req.time is None or req.time < ctx.time else req.time
    if req.process is None:
        return fill_in_new(req.f, req.value, req.instance, ctx, time)
    if req.process not in ctx.free_processes:
        return PENDING
    if req.time == time:
        return req
    return _new_request(req.f, req.value, req.process, req.instance, time)


def fill_in_new(f: str, value: Any, instance: str | None, ctx: Context,
                time: int | None = None) -> OpRequest | Pending:
    """``fill_in(OpRequest(f, value, instance=instance, time=time), ctx)`` for a ``time``
    that is None or >= ctx.time, without building the unfilled request first (the
    workloads make one op per client op; `fill_in` places an op without a process here)."""
    if time is None:
        time = ctx.time
    fp = ctx.free_processes
    # the tuple itself when no nemesis is in it (choice draws the same from either)
    free: Sequence[Any] = [p for p in fp if is_client(p)] if NEMESIS in fp else fp
    if not free:
        if ctx.all_processes == (NEMESIS,) and fp:
            return _new_request(f, value, NEMESIS, instance, time)
        return PENDING
    process = free[0] if len(free) == 1 else free[randbelow(ctx.rng)(len(free))]
    return _new_request(f, value, process, instance, time)


def lift(g: GenLike) -> Generator:
    """An OpRequest is one op, a function is infinite ops, a sequence runs in order."""
    if isinstance(g, OpRequest):
        return Once(g)
    if isinstance(g, (list, tuple)):
        return Seq(tuple(lift(x) for x in g))
    if isinstance(g, Generator):
        return g
    if callable(g):
        return Fn(g)
    raise ChaosError(f"cannot make a generator from {type(g).__name__}")


# ---------------------------------------------------------------------------
# Leaves


@slot_init
@dataclass(frozen=True, slots=True)
class Once:
    """Emits one op, then is exhausted."""

    req: OpRequest

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        filled = fill_in(self.req, ctx)
        if isinstance(filled, Pending):
            return filled, self
        return filled, EMPTY

    def update(self, ctx: Context, event: Op) -> Generator:
        return self


@slot_init
@dataclass(frozen=True, slots=True)
class Fn:
    """Calls ``fn(ctx)`` for every op (infinite until it returns None).

    The function sees the context (rng, time) so it can draw fresh values;
    it is called again if the op cannot be placed yet.
    """

    fn: Callable[[Context], OpRequest | None]

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        if not ctx.free_processes:
            return PENDING, self
        req = self.fn(ctx)
        if req is None:
            return None
        filled = fill_in(req, ctx)
        return filled, self

    def update(self, ctx: Context, event: Op) -> Generator:
        return self


@slot_init
@dataclass(frozen=True, slots=True)
class Empty:
    """The exhausted generator."""

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        return None

    def update(self, ctx: Context, event: Op) -> Generator:
        return self


EMPTY: Final = Empty()


@slot_init
@dataclass(frozen=True, slots=True)
class Sleep:
    """Emits nothing for ``dt`` ns from the first time it is asked, then is exhausted."""

    dt: int
    until: int | None = None

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        until = ctx.time + self.dt if self.until is None else self.until
        if ctx.time >= until:
            return None
        return Pending(until), Sleep(self.dt, until)

    def update(self, ctx: Context, event: Op) -> Generator:
        return self


def once(req: OpRequest) -> Generator:
    return Once(req)


def repeat(g: OpRequest | Callable[[Context], OpRequest | None], n: int | None = None) -> Generator:
    """The same op (or a fresh op from a function) forever, or ``n`` times."""
    fn: Callable[[Context], OpRequest | None] = (lambda _ctx: g) if isinstance(g, OpRequest) else g
    gen: Generator = Fn(fn)
    return gen if n is None else Limit(n, gen)


def sleep(dt: int) -> Generator:
    return Sleep(dt)


# ---------------------------------------------------------------------------
# Combinators


@slot_init
@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``remaining`` ops from ``gen``."""

    remaining: int
    gen: Generator

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        if self.remaining <= 0:
            return None
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, nxt = r
        if isinstance(o, Pending):
            return o, (self if nxt is self.gen else Limit(self.remaining, nxt))
        return o, _new_limit(self.remaining - 1, nxt)

    def update(self, ctx: Context, event: Op) -> Generator:
        g = self.gen.update(ctx, event)
        return self if g is self.gen else Limit(self.remaining, g)


#: the successor a client op makes at every layer of the stack, built without a call
#: per field (as `_new_on` and `_new_stagger`)
_new_limit: Final = slot_maker(Limit)


def limit(n: int, gen: GenLike) -> Generator:
    return Limit(n, lift(gen))


@slot_init
@dataclass(frozen=True, slots=True)
class TimeLimit:
    """Ops from ``gen`` until ``dt`` ns after the first time it is asked."""

    dt: int
    gen: Generator
    deadline: int | None = None

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        deadline = ctx.time + self.dt if self.deadline is None else self.deadline
        if ctx.time >= deadline:
            return None
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, nxt = r
        same = nxt is self.gen and deadline == self.deadline  # unchanged: no new node
        if isinstance(o, Pending):
            wake = o.wake
            return (o if wake is not None and wake <= deadline else Pending(deadline),
                    self if same else TimeLimit(self.dt, nxt, deadline))
        if o.time is not None and o.time >= deadline:
            return None
        return o, self if same else TimeLimit(self.dt, nxt, deadline)

    def update(self, ctx: Context, event: Op) -> Generator:
        g = self.gen.update(ctx, event)
        return self if g is self.gen else TimeLimit(self.dt, g, self.deadline)


def time_limit(dt: int, gen: GenLike) -> Generator:
    return TimeLimit(dt, lift(gen))


@slot_init
@dataclass(frozen=True, slots=True)
class Stagger:
    """Spaces ops by a random interval, uniform in [0, 2*dt) so the mean is ``dt``.

    Lazy: until the next op is due it answers ``Pending(next_time)`` without
    asking ``gen``, so no process is reserved ahead of time and the op is
    drawn when it is issued.
    """

    dt: int
    gen: Generator
    next_time: int | None = None

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        nt = self.next_time
        if nt is not None and nt > ctx.time:
            return Pending(nt), self
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, nxt = r
        if isinstance(o, Pending):
            return o, self if nxt is self.gen else Stagger(self.dt, nxt, nt)
        t = ctx.time if o.time is None or o.time < ctx.time else o.time
        gap = randbelow(ctx.rng)(2 * self.dt) if self.dt > 0 else 0
        if t != o.time:
            o = _new_request(o.f, o.value, o.process, o.instance, t)
        return o, _new_stagger(self.dt, nxt, t + gap)

    def update(self, ctx: Context, event: Op) -> Generator:
        g = self.gen.update(ctx, event)
        return self if g is self.gen else Stagger(self.dt, g, self.next_time)


_new_stagger: Final = slot_maker(Stagger)


def stagger(dt: int, gen: GenLike) -> Generator:
    return Stagger(dt, lift(gen))


@slot_init
@dataclass(frozen=True, slots=True)
class Delay:
    """Ops from ``gen`` no earlier than ``at`` (absolute, fixed on first ask from ``dt``)."""

    dt: int
    gen: Generator
    at: int | None = None

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        at = ctx.time + self.dt if self.at is None else self.at
        if at > ctx.time:
            return Pending(at), Delay(self.dt, self.gen, at)
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, nxt = r
        return o, Delay(self.dt, nxt, at)

    def update(self, ctx: Context, event: Op) -> Generator:
        g = self.gen.update(ctx, event)
        return self if g is self.gen else Delay(self.dt, g, self.at)


def delay(dt: int, gen: GenLike) -> Generator:
    """Like sleep-then-gen, but a single generator: no op before dt has passed."""
    return Delay(dt, lift(gen))


@slot_init
@dataclass(frozen=True, slots=True)
class Mix:
    """Each op comes from a randomly chosen, not yet exhausted, generator."""

    gens: tuple[Generator, ...]

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        gens = self.gens
        while gens:
            i = ctx.rng.randrange(len(gens)) if len(gens) > 1 else 0
            r = gens[i].op(ctx)
            if r is None:
                gens = gens[:i] + gens[i + 1:]
                continue
            o, nxt = r
            return o, Mix((*gens[:i], nxt, *gens[i + 1:]))
        return None

    def update(self, ctx: Context, event: Op) -> Generator:
        return Mix(tuple(g.update(ctx, event) for g in self.gens))


def mix(*gens: GenLike) -> Generator:
    return Mix(tuple(lift(g) for g in gens))


@slot_init
@dataclass(frozen=True, slots=True)
class AnyOf:
    """Whichever generator offers the soonest op (ties: the first listed)."""

    gens: tuple[Generator, ...]

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        best: tuple[int, int, OpRequest, Generator] | None = None
        pending: Pending | None = None
        kept = list(self.gens)
        alive = False
        for i, g in enumerate(self.gens):
            r = g.op(ctx)
            if r is None:
                kept[i] = EMPTY
                continue
            alive = True
            o, nxt = r
            if isinstance(o, Pending):
                kept[i] = nxt  # a pending child may have fixed a deadline: keep it
                pending = o if pending is None else pending_merge(pending, o)
                continue
            t = o.time if o.time is not None else ctx.time
            if best is None or t < best[0]:
                best = (t, i, o, nxt)
        if not alive:
            return None
        if best is None:
            assert pending is not None
            return pending, AnyOf(tuple(kept))
        _, i, o, nxt = best
        kept[i] = nxt
        return o, AnyOf(tuple(kept))

    def update(self, ctx: Context, event: Op) -> Generator:
        return AnyOf(tuple(g.update(ctx, event) for g in self.gens))


def any_of(*gens: GenLike) -> Generator:
    return AnyOf(tuple(lift(g) for g in gens))


@slot_init
@dataclass(frozen=True, slots=True)
class OnProcesses:
    """``gen`` driven only by the nemesis (``nemesis=True``) or only by clients."""

    nemesis: bool
    gen: Generator

    def _sub(self, ctx: Context) -> Context:
        if self.nemesis:
            return ctx.nemesis_only()
        c = ctx._clients  # clients_only()'s memo, read without the call (hot path)
        return c if c is not None else ctx.clients_only()

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        sub = None if self.nemesis else ctx._clients  # `_sub`, inlined for the clients
        gen = self.gen
        r = gen.op(sub if sub is not None else self._sub(ctx))
        if r is None:
            return None
        o, nxt = r
        return o, (self if nxt is gen else _new_on(self.nemesis, nxt))

    def update(self, ctx: Context, event: Op) -> Generator:
        if (event.process == NEMESIS) != self.nemesis:
            return self
        sub = None if self.nemesis else ctx._clients
        gen = self.gen
        g = gen.update(sub if sub is not None else self._sub(ctx), event)
        return self if g is gen else OnProcesses(self.nemesis, g)


_new_on: Final = slot_maker(OnProcesses)


def _on(nemesis: bool, gen: GenLike) -> Generator:
    g = lift(gen)
    if isinstance(g, OnProcesses) and g.nemesis == nemesis:
        return g  # restricting twice to the same processes is restricting once
    return OnProcesses(nemesis, g)


def nemesis(gen: GenLike) -> Generator:
    """Only the nemesis process runs ``gen`` (its ops are faults)."""
    return _on(True, gen)


def clients(gen: GenLike) -> Generator:
    """Only client processes run ``gen``."""
    return _on(False, gen)


def nemesis_and_clients(nemesis_gen: GenLike | None, client_gen: GenLike) -> Generator:
    """Faults and client load side by side; the run ends when the clients are done."""
    if nemesis_gen is None:
        return clients(client_gen)
    return UntilDone(clients(client_gen), nemesis(nemesis_gen))


@slot_init
@dataclass(frozen=True, slots=True)
class UntilDone:
    """``main`` and ``side`` together; exhausted as soon as ``main`` is exhausted."""

    main: Generator
    side: Generator

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        rm = self.main.op(ctx)
        if rm is None:
            return None
        om, nm = rm
        rs = self.side.op(ctx)
        if rs is None:
            return om, nm  # with the side exhausted, UntilDone(nm, EMPTY) is nm itself
        os_, ns = rs
        if isinstance(os_, Pending):
            # both children unchanged (the common case while every client is busy): self
            nxt = self if nm is self.main and ns is self.side else UntilDone(nm, ns)
            if isinstance(om, Pending):
                return pending_merge(om, os_), nxt
            return om, nxt
        if isinstance(om, Pending):
            return os_, UntilDone(nm, ns)
        tm = om.time if om.time is not None else ctx.time
        ts = os_.time if os_.time is not None else ctx.time
        if ts < tm:
            return os_, UntilDone(self.main, ns)
        return om, UntilDone(nm, self.side)

    def update(self, ctx: Context, event: Op) -> Generator:
        m = self.main.update(ctx, event)
        s = self.side.update(ctx, event)
        # unchanged children (the common case): no new node on every event
        return self if m is self.main and s is self.side else UntilDone(m, s)


@slot_init
@dataclass(frozen=True, slots=True)
class Seq:
    """Generators one after another, without waiting for outstanding ops."""

    gens: tuple[Generator, ...]

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        gens = self.gens
        while gens:
            r = gens[0].op(ctx)
            if r is None:
                gens = gens[1:]
                continue
            o, nxt = r
            if gens is self.gens and nxt is gens[0]:
                return o, self  # the head unchanged: no new node
            return o, Seq((nxt, *gens[1:]))
        return None

    def update(self, ctx: Context, event: Op) -> Generator:
        if not self.gens:
            return self
        head = self.gens[0]
        g = head.update(ctx, event)
        return self if g is head else Seq((g, *self.gens[1:]))


def seq(*gens: GenLike) -> Generator:
    return Seq(tuple(lift(g) for g in gens))


@slot_init
@dataclass(frozen=True, slots=True)
class Synchronize:
    """Waits until every process in the context is free before starting ``gen``."""

    gen: Generator
    started: bool = False

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        if not self.started and not ctx.all_free:
            return PENDING, self
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, nxt = r
        return o, self if self.started and nxt is self.gen else Synchronize(nxt, True)

    def update(self, ctx: Context, event: Op) -> Generator:
        g = self.gen.update(ctx, event)
        return self if g is self.gen else Synchronize(g, self.started)


def synchronize(gen: GenLike) -> Generator:
    return Synchronize(lift(gen))


def phases(*gens: GenLike) -> Generator:
    """Each phase starts only once the previous one is exhausted and all its ops completed."""
    return Seq(tuple(Synchronize(lift(g)) for g in gens))


@slot_init
@dataclass(frozen=True, slots=True)
class Map:
    """Rewrites each op of ``gen`` with ``fn`` (e.g. to tag an instance)."""

    fn: Callable[[OpRequest], OpRequest]
    gen: Generator

    def op(self, ctx: Context) -> tuple[OpRequest | Pending, Generator] | None:
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, nxt = r
        if isinstance(o, Pending):
            return o, Map(self.fn, nxt)
        return self.fn(o), Map(self.fn, nxt)

    def update(self, ctx: Context, event: Op) -> Generator:
        g = self.gen.update(ctx, event)
        return self if g is self.gen else Map(self.fn, g)


def gen_map(fn: Callable[[OpRequest], OpRequest], gen: GenLike) -> Generator:
    return Map(fn, lift(gen))


# ---------------------------------------------------------------------------
# Simulation against an instant-complete fake (tests, schedule previews)

Completer = Callable[[OpRequest, random.Random], "tuple[str, Any]"]


def _ok_same(req: OpRequest, rng: random.Random) -> tuple[str, Any]:
    return "ok", req.value


def simulate(
    gen: GenLike,
    seed: int = 0,
    *,
    concurrency: int = 3,
    with_nemesis: bool = True,
    latency_ns: int = MS,
    complete: Completer | None = None,
    max_ops: int = 1_000_000,
) -> list[Op]:
    """Play ``gen`` against a fake that completes every op after ``latency_ns``.

    Follows the interpreter contract (fill-in, committed future ops, Pending
    wake-ups, an info completion retiring its process) so generator tests
    see exactly what a real run would ask for. ``complete(req, rng)`` returns
    (type, value) for each completion; the default is ``("ok", req.value)``.
    """
    g = lift(gen)
    rng = random.Random(seed)
    completer = complete or _ok_same
    procs: list[Any] = list(range(concurrency))
    if with_nemesis:
        procs.append(NEMESIS)
    next_process = concurrency
    busy: set[Any] = set()
    # (time, seq, is_completion, request): scheduled invokes and completions
    events: list[tuple[int, int, bool, OpRequest]] = []
    history: list[Op] = []
    now = 0
    seqno = 0

    def ctx() -> Context:
        return Context(now, tuple(p for p in procs if p not in busy), tuple(procs), rng)

    def record(op: Op) -> None:
        nonlocal g
        history.append(op)
        g = g.update(ctx(), op)

    def fire_next() -> None:
        nonlocal now, next_process, seqno
        t, _, is_completion, req = heapq.heappop(events)
        now = max(now, t)
        if not is_completion:
            record(Op(len(history), "invoke", req.process, req.f, req.value, now, None,
                      req.instance))
            seqno += 1
            heapq.heappush(events, (now + latency_ns, seqno, True, req))
            return
        typ, value = completer(req, rng)
        if typ not in ("ok", "fail", "info"):
            raise ChaosError(f"completer returned type {typ!r}")
        busy.discard(req.process)
        record(Op(len(history), typ, req.process, req.f, value, now, None,  # type: ignore[arg-type]
                  req.instance))
        if typ == "info" and req.process != NEMESIS:
            procs[procs.index(req.process)] = next_process
            next_process += 1

    while len(history) < max_ops:
        r = g.op(ctx())
        if r is None:
            break
        o, g = r
        if isinstance(o, Pending):
            next_t = events[0][0] if events else None
            if next_t is None and o.wake is None:
                raise ChaosError("generator is pending with nothing in flight (deadlock)")
            if next_t is not None and (o.wake is None or next_t <= o.wake):
                fire_next()
            else:
                assert o.wake is not None
                now = max(now, o.wake)
            continue
        busy.add(o.process)
        seqno += 1
        heapq.heappush(events, (max(now, o.time or 0), seqno, False, o))
        if events[0][0] <= now:
            fire_next()
    while events and len(history) < max_ops:
        fire_next()
    return history
