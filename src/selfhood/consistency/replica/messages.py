"""The replica core's wire: its inputs and outputs as plain data (pure).

A runtime (the simulator, or a replica process over Kafka and HTTP) turns
these into messages, log calls and model calls; the core never does IO.
Times are nanoseconds. The core reads two clocks, given with every input
as a `Clock`: ``mono`` (monotonic; leases, waits and timeouts) and ``wall``
(the wall clock, which may be skewed; only the hybrid logical clock reads
it). Deadlines travel as relative timeouts, since two processes share no
monotonic clock.

The messages are msgspec structs rather than dataclasses: the simulator
builds several per client op, and a struct is built in C (about a third of
a dataclass's Python ``__init__``). They hold plain data and never refer back
to what holds them, so they are untracked by the cycle collector (``gc=False``).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgspec

from selfhood.events import Event
from selfhood.projections.state import InstanceState

#: fail errors that mean "this replica cannot serve now" (the router fails over on them)
UNAVAILABLE: Final = "unavailable"

#: a session token: per partition, the next offset the client has seen up to
Token = dict[int, int]
#: a client request's id, echoed in its reply (unique per client runtime)
ReqId = int


class Clock(NamedTuple):
    """The two clock readings (ns) a runtime hands the core with each input.

    In the simulator ``wall = mono + skew(replica)``; in a process ``mono =
    time.monotonic_ns()`` and ``wall = time.time_ns()`` (libfaketime skews
    only the wall clock).
    """

    mono: int
    wall: int


class Request(msgspec.Struct, gc=False):
    """A client operation as a replica sees it (directly or forwarded).

    ``timeout_ns`` is relative: the replica gives up on the request that long
    after it receives it. ``via`` names the replica the client sent it to;
    ``hops`` counts forwards (a request is forwarded at most once).
    """

    req_id: ReqId
    f: str
    value: Any
    instance: str | None
    token: Token | None = None
    timeout_ns: int = 1_000_000_000
    via: str = ""
    hops: int = 0


class Reply(msgspec.Struct, gc=False):
    """The completion of a request: type ok | fail | info, plus the session token."""

    req_id: ReqId
    type: str
    value: Any = None
    error: Any = None
    token: Token | None = None
    extra: dict[str, Any] | None = None


class Forward(msgspec.Struct, gc=False):
    """Hand the request to ``to`` (the owner); it replies to the client itself."""

    to: str
    request: Request


class Append(msgspec.Struct, gc=False):
    """Append ``entries`` (partition, event) atomically, all or none; answer with an AppendAck.

    Atomic across partitions: a Kafka transaction read ``read_committed``,
    one SQLite transaction. ``from_offsets`` (optional) are the sender's next
    offsets, so the ack may carry the records the sender is missing up to and
    including its own; a runtime may also leave them to the next poll.
    """

    batch_id: int
    entries: list[tuple[int, Event]]
    from_offsets: Token


class Poll(msgspec.Struct, gc=False):
    """Fetch from ``from_offsets`` (one per partition); a ``barrier_id`` asks for the log ends too.

    A poll is also the replica's heartbeat to the log.
    """

    from_offsets: list[int]
    barrier_id: int | None = None


#: one partition's records: (partition, [(offset, event), ...], next_offset).
#: Offsets ascend but may have gaps (transaction markers, dead letters);
#: ``next_offset`` is where the following fetch starts (past any gap).
Chunk = tuple[int, list[tuple[int, Event]], int]


#: how a contact with the log bears on the sequential read lease (`Records.lease`)
LEASE_NOW: Final = "now"
LEASE_CAUGHT_UP: Final = "caught-up"
LEASE_KEEP: Final = "keep"


class Records(msgspec.Struct, gc=False):
    """Log records for the replica, and for a barrier poll the log end of every partition.

    ``lease`` says what the contact proves. ``now``: the records reach the log
    end (a log that hands everything up to its end in one reply, as the
    simulator's does), so the lease is renewed. ``caught-up``: the fetch may
    have stopped short (a real log's bounded, timed fetch; right after a heal
    it often returns nothing), so the lease is renewed only once the replica
    has applied up to ``ends``, the log end this contact saw; records past
    ``ends`` wait for the next contact, and until every partition has
    reached it no read is served (a state with partitions at different
    points is no snapshot of the log). ``keep``: the
    contact proves only that the log answered (an append's acknowledgement),
    not that the replica's state is current: the lease stays as it was.
    Renewing on contact alone let a replica healed after 2.3 s cut off serve
    reads of its 2.3 s old state (found on the real cluster).
    """

    chunks: list[Chunk]
    ends: list[int] | None = None
    barrier_id: int | None = None
    lease: str = LEASE_NOW


class AppendAck(msgspec.Struct, gc=False):
    """Positions (partition, offset) given to an Append's entries, plus catch-up records."""

    batch_id: int
    positions: list[tuple[int, int]]
    records: Records


class ModelCall(msgspec.Struct, gc=False):
    """Ask the model for ``instance``'s reply in the context whose fingerprint is ``digest``.

    The runtime answers with `Replica.on_model_reply(call_id, text, now)`, at
    once (the simulator's deterministic model) or after IO. ``state`` is the
    context; it is the core's live object, valid until the next input, so a
    runtime that answers later copies what it needs first.
    """

    call_id: int
    instance: str
    digest: str
    state: InstanceState


Output = Reply | Forward | Append | Poll | ModelCall
