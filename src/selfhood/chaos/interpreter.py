"""The generator interpreter: the one loop that turns a generator into a history.

Jepsen keeps its interpreter (`jepsen.generator.interpreter`) apart from the
generators and from the system under test; so does this module. It asks
the generator for ops, hands client ops to the client protocol
(`selfhood.chaos.client`) and the resulting requests to a `World`, hands
nemesis ops to the world, enforces op timeouts and records the history
(`checkers.history.Op`, dense indices, time in ns since the start).

A `World` is where requests go and time passes: the deterministic simulator
(`chaos.sim`, virtual time) or real replica processes (`chaos.cluster_world`,
a monotonic clock). A world calls back `on_reply`, `on_timeout`, `invoke`
and `nemesis_done` while it runs (`step_until`), and sets `interesting` on
the interpreter when the generator should be asked again.

Completion conventions: a client op that times out is ``info`` if it could
have written and ``fail`` if it only reads; nemesis ops are recorded as an
``info`` invoke and an ``info`` completion (as Jepsen does).

The interpreter is plain synchronous code and reads no clock (``world.now``
is the time); a world that does IO runs it in a thread of its own.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from itertools import filterfalse
from typing import Any, Final, Protocol

from selfhood.chaos.client import ClientSessions, Completion
from selfhood.chaos.generator import (
    NEMESIS,
    Context,
    Generator,
    OpRequest,
    Pending,
    _drop_nemesis,
    make_context,
)
from selfhood.checkers.history import Op, make_op
from selfhood.consistency.replica import Request
from selfhood.errors import ChaosError

#: ops recorded between two progress callbacks
PROGRESS_EVERY: Final = 2000


class World(Protocol):
    """Where the interpreter's requests go and its time passes (five members)."""

    @property
    def now(self) -> int:
        """The current time, ns since the start of the run (virtual or monotonic)."""
        ...

    def send(self, replica: str, request: Request) -> None:
        """Deliver a client request to a replica (its reply comes back via `on_reply`)."""
        ...

    def call_at(self, t: int, op: OpRequest) -> None:
        """Call `Interpreter.invoke(op)` at time ``t`` (> now)."""
        ...

    def nemesis(self, op: OpRequest) -> None:
        """Inflict a fault; call `Interpreter.nemesis_done` when it has taken effect."""
        ...

    def step_until(self, wake: int | None) -> None:
        """Run until `Interpreter.interesting`, or until ``wake`` (None: no limit).

        Delivers replies (`on_reply`), the interpreter's op timeouts in
        `Interpreter.timeouts` (`on_timeout`) and scheduled invokes in time order.
        """
        ...


class Interpreter:
    """Runs one generator against one world and records the history."""

    def __init__(self, world: World, clients: ClientSessions, *, concurrency: int,
                 rng: random.Random) -> None:
        self.world = world
        self.clients = clients
        self.concurrency = concurrency
        self.gen_rng = rng
        self.history: list[Op] = []
        self.procs: list[Any] = [*range(concurrency), NEMESIS]
        self._procs_t: tuple[Any, ...] = tuple(self.procs)
        self.busy: set[Any] = set()
        self._pv = 0  # bumped whenever busy/procs change (invalidates the cached Context)
        self._ctx_cache: Context | None = None
        # `_procs_t` without the nemesis (for the clients' view), and the tuple it is of
        self._cprocs_of: tuple[Any, ...] | None = None
        self._cprocs: tuple[Any, ...] = ()
        self._ctx_pv = -1
        #: (time, request id) of every open op's timeout, in invoke order: op timeouts
        #: are one constant after the invoke, so a FIFO is a priority queue here
        self.timeouts: deque[tuple[int, int]] = deque()
        self.scheduled_invokes = 0
        self.nemesis_open = False
        #: set when the generator should be asked again (a recorded op); worlds read it
        self.interesting = False
        self.gen: Generator | None = None

    # -- what worlds call ----------------------------------------------------------

    def invoke(self, o: OpRequest) -> None:
        """Issue op ``o`` now (its process is already reserved)."""
        process = o.process
        world = self.world
        now = world.now
        if process == NEMESIS:
            self.nemesis_open = True
            self._record(make_op(len(self.history), "info", NEMESIS, o.f, o.value, now, None,
                                 None, None, {}))
            world.nemesis(o)
            return
        req, deadline = self.clients.begin(o, now)
        via = req.via
        history = self.history
        op = make_op(len(history), "invoke", process, o.f, o.value, now, via, o.instance,
                     None, {})
        history.append(op)  # _record, inlined
        if self.gen is not None:
            self.gen = self.gen.update(self._ctx(), op)
        self.interesting = True
        world.send(via, req)
        self.timeouts.append((deadline, req.req_id))

    def invoke_scheduled(self, o: OpRequest) -> None:
        """`invoke` for an op the world held until its time (`World.call_at`)."""
        self.scheduled_invokes -= 1
        self.invoke(o)

    def nemesis_done(self, o: OpRequest, value: Any) -> None:
        """The world finished nemesis op ``o``; ``value`` says what it did."""
        self.nemesis_open = False
        self.busy.discard(NEMESIS)
        self._pv += 1
        self._record(make_op(len(self.history), "info", NEMESIS, o.f, value, self.world.now,
                             None, None, None, {}))

    def on_reply(self, reply: Any) -> None:
        """A replica's `Reply` reached the client (ignored if the op timed out already)."""
        c = self.clients.reply(reply, self.world.now)
        if c is not None:
            self._complete(c)

    def on_timeout(self, rid: int) -> None:
        """Op ``rid``'s timeout passed (ignored if it completed already)."""
        c = self.clients.timeout(rid, self.world.now)
        if c is not None:
            self._complete(c)

    @property
    def open_ops(self) -> int:
        return len(self.clients.open)

    # -- recording -----------------------------------------------------------------

    def _complete(self, c: Completion) -> None:
        req, replica, typ, value, error, extra = c
        process = req.process
        self.busy.discard(process)
        self._pv += 1
        if typ == "info":
            # an indeterminate op may still take effect: its process never issues again
            i = self.procs.index(process)
            self.procs[i] = process + self.concurrency
            self._procs_t = tuple(self.procs)
        history = self.history
        o = make_op(len(history), typ, process, req.f, value,  # type: ignore[arg-type]
                    self.world.now, replica, req.instance, error,
                    {} if extra is None else extra)
        history.append(o)  # _record, inlined
        if self.gen is not None:
            self.gen = self.gen.update(self._ctx(), o)
        self.interesting = True

    def _record(self, op: Op) -> None:
        self.history.append(op)
        if self.gen is not None:
            self.gen = self.gen.update(self._ctx(), op)
        self.interesting = True

    def _ctx(self) -> Context:
        """The generator's view; rebuilt only when time or the free processes changed."""
        now = self.world.now
        c = self._ctx_cache
        if c is not None and self._ctx_pv == self._pv and c.time == now:
            return c
        busy = self.busy
        procs = self._procs_t
        if procs is not self._cprocs_of:
            self._cprocs_of, self._cprocs = procs, _drop_nemesis(procs)
        free = tuple(filterfalse(busy.__contains__, procs)) if busy else procs
        cprocs = self._cprocs
        if cprocs is procs:  # no nemesis: the context is its own clients' view
            c = make_context(now, free, procs, self.gen_rng, None)
        else:
            if not busy:
                cfree = cprocs
            elif free and free[-1] == NEMESIS:  # where the nemesis sits (see _drop_nemesis)
                cfree = free[:-1]
            else:
                cfree = _drop_nemesis(free)
            # with its `clients_only()` memo filled in: every client generator asks for
            # that view, and building it here skips a method call per context
            rng = self.gen_rng
            c = make_context(now, free, procs, rng, make_context(now, cfree, cprocs, rng, None))
        self._ctx_cache, self._ctx_pv = c, self._pv
        return c

    # -- the loop ------------------------------------------------------------------------

    def _in_flight(self) -> bool:
        return bool(self.clients.open or self.scheduled_invokes or self.nemesis_open)

    def run(self, generator: Generator, *, time_limit_ns: int | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> list[Op]:
        """Interpret ``generator`` until it is exhausted (or ``time_limit_ns`` passed),
        then let every open op complete or time out. Returns the history."""
        world = self.world
        self.gen = generator
        last_progress = 0
        while True:
            now = world.now
            if time_limit_ns is not None and now >= time_limit_ns:
                break
            assert self.gen is not None
            c = self._ctx_cache  # `_ctx()`'s cache check inline: a record just built it
            if c is None or self._ctx_pv != self._pv or c.time != now:
                c = self._ctx()
            r = self.gen.op(c)
            if r is None:
                break
            o, self.gen = r
            if isinstance(o, Pending):
                wake = o.wake if o.wake is not None and o.wake > now else None
                if wake is None and not (self.clients.open or self.scheduled_invokes
                                         or self.nemesis_open):  # not _in_flight()
                    if o.wake is None:
                        raise ChaosError("generator is pending with nothing in flight "
                                         "(deadlock)")
                    wake = now + 1
                self.interesting = False
                world.step_until(wake)
            else:
                self.busy.add(o.process)
                self._pv += 1
                t = o.time if o.time is not None else now
                if t <= now:
                    self.invoke(o)
                else:
                    self.scheduled_invokes += 1
                    world.call_at(t, o)
            if on_progress is not None and len(self.history) - last_progress >= PROGRESS_EVERY:
                last_progress = len(self.history)
                on_progress(last_progress, world.now)
        # drain: let every outstanding op complete or time out
        while self._in_flight():
            self.interesting = False
            world.step_until(None)
        if on_progress is not None:
            on_progress(len(self.history), world.now)
        return self.history
