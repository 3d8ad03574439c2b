"""A user's own service as the system under test (`selfhood run --runtime cluster --system CMD`).

The cluster world starts ``sh -c CMD`` once per node, in the node's network
namespace, instead of `selfhood replica serve`, with the environment below
(the first four are the ones `selfhood replica serve` reads itself), checks
with `selfhood.replica.conform` that every node speaks the replica API, and
then drives it with the same workloads, faults and checkers.

PostgreSQL listens on the root namespace's loopback only, so the world
relays it onto the bridge (`DbRelay`); a partition that cuts a node from the
log cuts it from the database too: the relay stops passing that node's
bytes (held, not lost, as a DROP rule's retransmissions would deliver them
after the heal) and new connections from it wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Final

from selfhood.replica.config import ENV_BOOTSTRAP, ENV_DATABASE_URL, ENV_LISTEN, ENV_NODE

ENV_TOPIC: Final = "SELFHOOD_TOPIC"
ENV_MODE: Final = "SELFHOOD_MODE"
ENV_SHARDS: Final = "SELFHOOD_SHARDS"
ENV_INSTANCES: Final = "SELFHOOD_INSTANCES"
ENV_PEERS: Final = "SELFHOOD_PEERS"
ENV_DATA_DIR: Final = "SELFHOOD_DATA_DIR"
ENV_SESSION_TIMEOUT_MS: Final = "SELFHOOD_SESSION_TIMEOUT_MS"


def system_env(*, node: str, listen: str, bootstrap: str, database_url: str, topic: str,
               mode: str, shards: int, instances: int, peers: Mapping[str, str],
               data_dir: str, session_timeout_ms: int) -> dict[str, str]:
    """The environment one node of a user's service is started with (docs/agents.md)."""
    return {ENV_NODE: node, ENV_LISTEN: listen, ENV_BOOTSTRAP: bootstrap,
            ENV_DATABASE_URL: database_url, ENV_TOPIC: topic, ENV_MODE: mode,
            ENV_SHARDS: str(shards), ENV_INSTANCES: str(instances),
            ENV_PEERS: ",".join(f"{n}={u}" for n, u in sorted(peers.items())),
            ENV_DATA_DIR: data_dir, ENV_SESSION_TIMEOUT_MS: str(session_timeout_ms)}


class DbRelay:
    """A TCP relay from the namespaces' bridge to PostgreSQL on loopback, with cuts per node."""

    def __init__(self, listen_host: str, listen_port: int, target_host: str, target_port: int,
                 nodes: Mapping[str, str]) -> None:
        self.listen = (listen_host, listen_port)
        self.target = (target_host, target_port)
        self.node_of = {addr: name for name, addr in nodes.items()}  # address -> node
        self.blocked: set[str] = set()
        self.healed = asyncio.Event()
        self.healed.set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, *self.listen)

    async def stop(self) -> None:
        """Close the listener and every relayed connection; safe twice."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.close()
        for t in list(self.tasks):
            t.cancel()
        for t in list(self.tasks):
            with contextlib.suppress(BaseException):
                await t
        self.writers.clear()

    @property
    def url_host(self) -> str:
        return self.listen[0]

    def cut(self, nodes: Iterable[str]) -> None:
        """From now on, hold every byte to and from these nodes (until `heal`)."""
        self.blocked = set(nodes)
        if self.blocked:
            self.healed.clear()
        else:
            self.healed.set()

    def heal(self) -> None:
        self.cut(())

    async def _wait_open(self, node: str) -> None:
        while node in self.blocked:
            await self.healed.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        peer = writer.get_extra_info("peername")
        node = self.node_of.get(peer[0] if peer else "", "?")
        up_w: asyncio.StreamWriter | None = None
        try:
            await self._wait_open(node)  # a cut node's new connection waits, like a lost SYN
            up_r, up_w = await asyncio.open_connection(*self.target)
            self.writers.add(up_w)
            self.connections += 1
            await asyncio.gather(self._pipe(reader, up_w, node), self._pipe(up_r, writer, node))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a closed end, or the relay stopping: either way this connection is over
        finally:
            for w in (writer, up_w):
                if w is not None:
                    w.close()
                    self.writers.discard(w)
            self.tasks.discard(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    node: str) -> None:
        try:
            while data := await src.read(65536):
                await self._wait_open(node)
                dst.write(data)
                await dst.drain()
        finally:
            if dst.can_write_eof():
                with contextlib.suppress(OSError):
                    dst.write_eof()
