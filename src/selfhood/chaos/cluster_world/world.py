"""The cluster world: the one interpreter over replica OS processes under real faults (IO).

`ClusterRuntime` owns the machine's side of a cluster run: the 3-broker
Kafka cluster in network namespaces (started if it is not running, stopped
again unless ``keep``), one namespace per replica and one for the client
process, and the `selfhood replica serve` processes of each mode. A mode
runs like this:

- a fresh topic and consumer group, so modes never see each other's events;
- the replicas start (each in its namespace, optionally under libfaketime)
  and the run waits until every partition has an owner;
- the interpreter (`chaos.interpreter`) runs in a thread of its own, with a
  `ClusterWorld` as its world: requests go through the client process to
  the replicas' HTTP API (selfhood/replica/replica-api.yaml), replies and
  finished faults come back through a queue, time is the monotonic clock
  since the start of the mode;
- nemesis ops are real: iptables DROP rules between namespaces (the same
  named patterns as the simulator, `nemesis.cut_links`), ``kill -9`` and a
  restart, SIGSTOP/SIGCONT, libfaketime skew, ``kill -9`` of a broker and
  its restart, and a rebalance (one member leaves and rejoins the group);
- afterwards the failover gap of every replica kill is measured from the
  history (`failover_gaps`) and the replicas' own claim reports.

Everything started is stopped, and every namespace and rule removed, in a
``finally`` (so on an error and on Ctrl-C too).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import os
import queue
import random
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from selfhood.chaos.client import ClientSessions
from selfhood.chaos.cluster import ClusterConfig, ClusterManager, default_state_dir
from selfhood.chaos.generator import Generator, OpRequest
from selfhood.chaos.interpreter import Interpreter
from selfhood.chaos.nemesis import OWNER, cut_of, owner_target, replica_named, resolve_partition
from selfhood.checkers.history import Op
from selfhood.consistency.replica import UNAVAILABLE, Reply, Request
from selfhood.errors import ChaosError, ClusterError
from selfhood.spec import LOG_NODE, ExperimentSpec

MS: Final = 1_000_000
#: the replicas' HTTP port (each replica has its own address)
REPLICA_PORT: Final = 8470
#: how long replicas may take to serve and to own every partition
READY_TIMEOUT_S: Final = 90.0
#: a restarted replica must print its "listening" line within this
RESTART_TIMEOUT_S: Final = 30.0
#: the projection of a mode's topic into PostgreSQL (after the load) is given this long
PROJECT_LIMIT_S: Final = 120.0
#: slack on top of every computed bound (a loaded machine is slow, not stuck)
SLACK_S: Final = 60.0
#: the client process's node (namespace)
CLIENT_NODE: Final = "client"
#: every replica process a run starts is named <prefix><run id>-<mode>-<replica>
PROCESS_PREFIX: Final = "run-"
#: netns clusters of the cluster runtime use this offset from the base port when the
#: state dir already holds a cluster without namespaces (the test suite's)
NETNS_PORT_OFFSET: Final = 500

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def uses_skew(spec: ExperimentSpec, schedule: tuple[Any, ...]) -> bool:
    return any(getattr(s, "f", None) == "skew" for s in schedule) or "skew" in spec.nemesis


def runtime_manager(state_dir: Path) -> ClusterManager:
    """The cluster a cluster run uses: the state dir's own if it runs in namespaces (or
    none is there yet), else a netns cluster in ``<state_dir>/netns`` beside it."""
    mgr = ClusterManager(state_dir)
    cfg = mgr.load_config()
    if cfg is not None and not cfg.netns:
        mgr = ClusterManager(state_dir / "netns")
    return mgr


def runtime_base_port(mgr: ClusterManager, state_dir: Path) -> int | None:
    """Ports beside a cluster without namespaces are offset, so PostgreSQL's cannot clash."""
    if mgr.state_dir == state_dir.resolve():
        return None
    from selfhood.chaos.cluster import default_base_port

    return default_base_port() + NETNS_PORT_OFFSET


# --- failover gap (pure) -------------------------------------------------------------


@dataclass(slots=True)
class Kill:
    """One ``kill -9`` of a replica: when, and the instances it owned then."""

    replica: str
    at_ns: int
    instances: tuple[str, ...]
    partitions: tuple[int, ...]
    gap_ms: float | None = None
    by: str | None = None
    replayed: int | None = None
    replayed_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"replica": self.replica, "at_ms": round(self.at_ns / MS, 3),
                "instances": list(self.instances), "partitions": list(self.partitions),
                "gap_ms": self.gap_ms, "acknowledged_by": self.by,
                "replayed": self.replayed, "replayed_from": self.replayed_from}


def _writes(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(m, list) and m and m[0] != "r"
                                           for m in value)


def failover_gaps(kills: list[Kill], history: list[Op]) -> None:
    """Fill each kill's gap: kill -9 to the first acknowledged write for one of its instances.

    Only writes invoked after the kill count (an earlier one may have been
    acknowledged by the old owner before it died).
    """
    invoked: dict[Any, Op] = {}
    for op in history:
        if op.type == "invoke":
            invoked[op.process] = op
            continue
        inv = invoked.pop(op.process, None)
        if op.type != "ok" or inv is None or op.f not in ("txn", "add-rule", "revoke-rule"):
            continue
        if op.f == "txn" and not _writes(op.value):
            continue
        for k in kills:
            if (k.gap_ms is None and op.instance in k.instances and inv.time is not None
                    and op.time is not None and inv.time >= k.at_ns):
                k.gap_ms = round((op.time - k.at_ns) / MS, 3)
                k.by = op.node


def gap_summary(kills: list[Kill], session_timeout_ms: int) -> dict[str, Any]:
    """p50/p99 of the measured gaps, and the replay figures, for results.json.

    Only kills of owners count (a replica that owned no partition hands nothing over).
    """
    from selfhood.checkers.measures import percentile

    others = [k for k in kills if not k.partitions]
    kills = [k for k in kills if k.partitions]
    gaps = [k.gap_ms for k in kills if k.gap_ms is not None]
    return {
        "kills": len(kills),
        "kills_of_non_owners": len(others),
        "measured": len(gaps),
        "p50_ms": round(percentile(gaps, 50), 3) if gaps else None,
        "p99_ms": round(percentile(gaps, 99), 3) if gaps else None,
        "session_timeout_ms": session_timeout_ms,
        "replayed_from": {src: sum(1 for k in kills if k.replayed_from == src)
                          for src in ("start", "tail")},
        "replayed_events": sum(k.replayed or 0 for k in kills),
        "each": [k.to_json() for k in kills],
    }


# --- the world the interpreter sees (its thread) ----------------------------------------


class ClusterWorld:
    """`chaos.interpreter.World` over real processes; lives in the interpreter's thread."""

    def __init__(self, runtime: ClusterRuntime, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime = runtime
        self.loop = loop
        self.t0 = time.monotonic_ns()
        # queue.Queue, not SimpleQueue: CPython 3.11's SimpleQueue.get(timeout) can block
        # forever when its deadline passes between its first lock attempt and the next
        # (a negative wait means "no limit"); a wait of a few hundred µs hung a CI run
        self.q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.heap: list[tuple[int, int, OpRequest]] = []
        self.seq = itertools.count()
        self.interp: Interpreter | None = None
        self.nemesis_pending = 0
        self.cancelled = False
        self.failure = "cluster run cancelled"

    def cancel(self, reason: str = "cluster run cancelled") -> None:
        """Make the interpreter's thread stop (Ctrl-C or an error on the loop's side)."""
        if not self.cancelled:
            self.failure = reason
        self.cancelled = True
        self.q.put(("cancel",))

    @property
    def now(self) -> int:
        return time.monotonic_ns() - self.t0

    def send(self, replica: str, request: Request) -> None:
        timeout_ms = max(1, request.timeout_ns // MS)
        self.loop.call_soon_threadsafe(self.runtime.submit, replica, request, timeout_ms, self.q)

    def call_at(self, t: int, op: OpRequest) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), op))

    def nemesis(self, op: OpRequest) -> None:
        self.nemesis_pending += 1
        fut = asyncio.run_coroutine_threadsafe(self.runtime.bounded_nemesis(op), self.loop)
        fut.add_done_callback(lambda f: self.q.put(("nemesis", op, f)))

    def step_until(self, wake: int | None) -> None:
        interp = self.interp
        assert interp is not None
        tq = interp.timeouts
        opened = interp.clients.open
        heap = self.heap
        while True:
            if self.cancelled:
                raise ChaosError(self.failure)
            now = self.now
            while tq and tq[0][1] not in opened:
                tq.popleft()
            if tq and tq[0][0] <= now:
                interp.on_timeout(tq.popleft()[1])
            elif heap and heap[0][0] <= now:
                interp.invoke_scheduled(heapq.heappop(heap)[2])
            elif wake is not None and now >= wake:
                return
            else:
                due = [x for x in (tq[0][0] if tq else None, heap[0][0] if heap else None, wake)
                       if x is not None]
                if not due and not opened and not self.nemesis_pending:
                    raise ChaosError("ops still open with nothing left to run")
                limit = (min(due) - now) / 1e9 if due else 5.0
                try:
                    item = self.q.get(timeout=max(0.0, limit))
                except queue.Empty:
                    continue
                self._deliver(item)
            if interp.interesting:
                return

    def _deliver(self, item: tuple[Any, ...]) -> None:
        interp = self.interp
        assert interp is not None
        if item[0] == "reply":
            interp.on_reply(item[1])
        elif item[0] == "nemesis":
            _, op, fut = item
            self.nemesis_pending -= 1
            try:
                value = fut.result()
            except ChaosError:  # it says which already
                raise
            except BaseException as exc:  # a failed fault ends the run, saying which
                raise ChaosError(f"nemesis {op.f} {op.value!r} failed: {exc!r}") from exc
            interp.nemesis_done(op, value)


# --- processes -------------------------------------------------------------------------


@dataclass(slots=True)
class ReplicaProc:
    """One replica: its node (namespace) and, per mode, its tracked process's name."""

    name: str
    address: str
    process: str = ""
    up: bool = False
    paused: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.address}:{REPLICA_PORT}"


@dataclass(slots=True)
class ModeResult:
    """What one mode on the cluster produced (the simulator's SimResult, for the runner)."""

    history: list[Op]
    stats: dict[str, Any] = field(default_factory=dict)
    failover: dict[str, Any] = field(default_factory=dict)
    fingerprints: dict[str, Any] = field(default_factory=dict)
    topic: str = ""
    elapsed_s: float = 0.0


class ClusterRuntime:
    """The machine side of a cluster run; `async with` starts and always cleans up."""

    def __init__(self, spec: ExperimentSpec, *, state_dir: Path | None = None,
                 keep: bool = False, progress: Progress | None = None) -> None:
        self.spec = spec
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.keep = keep
        self.say = progress or _quiet
        self.mgr: ClusterManager | None = None
        self.cfg: ClusterConfig | None = None
        self.started_cluster = False
        self.made_nodes = False
        self.client_started = False
        self.run_id = secrets.token_hex(3)
        self.client_process = f"{PROCESS_PREFIX}{self.run_id}-client"
        self.work = self.state_dir / "runs" / self.run_id
        self.client_reader: asyncio.StreamReader | None = None
        self.client_writer: asyncio.StreamWriter | None = None
        self.client_task: asyncio.Task[None] | None = None
        self.world: ClusterWorld | None = None  # the running mode's, while its load runs
        #: nemesis ops running now, by task: the op and when it started (for a stuck run)
        self.faults: dict[asyncio.Task[Any], tuple[OpRequest, float]] = {}
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.call_ids = itertools.count(1)
        self.replicas: dict[str, ReplicaProc] = {}
        self.mode = ""
        self.topic = ""
        self.skew = False
        self.kills: list[Kill] = []
        self.owner_targets: dict[str, str] = {}
        self.broker_down: list[int] = []
        self.broker_starts: list[asyncio.Task[None]] = []
        self.nem_rng = random.Random(spec.seed * 104729 + 2)
        self.counters: dict[str, int] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.session: Any = None  # aiohttp.ClientSession for admin calls from the root ns
        self.t0 = time.monotonic_ns()  # the running mode's time origin
        self.system = spec.system  # a user's service instead of `selfhood replica serve`
        self.relay: Any = None  # system.DbRelay: PostgreSQL on the bridge, cut per node
        self.db_url = ""
        self.client_lost = ""  # why the client process's answers stopped, if they did

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> ClusterRuntime:
        try:
            await self.start()
        except BaseException:
            await asyncio.shield(self.stop())
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop())

    async def start(self) -> None:
        import aiohttp

        if os.geteuid() != 0:
            raise ClusterError("the cluster runtime needs root (network namespaces, iptables)")
        self.mgr = mgr = runtime_manager(self.state_dir)
        cfg = mgr.load_config()
        status = await mgr.status() if cfg is not None else None
        if cfg is None or status is None or not status.healthy:
            self.say(f"starting the 3-broker Kafka cluster (--netns) in {mgr.state_dir}")
            self.started_cluster = cfg is None
            await mgr.up(brokers=3, netns=True, base_port=runtime_base_port(mgr, self.state_dir),
                         progress=self.say)
        else:
            self.say(f"using the running Kafka cluster in {mgr.state_dir}")
        self.cfg = cfg = mgr.load_config()
        assert cfg is not None
        self.work.mkdir(parents=True, exist_ok=True)
        await self._forget_earlier_runs()
        self.say(f"namespaces for {self.spec.replicas} replicas and the clients")
        self.made_nodes = True
        await mgr.add_node(CLIENT_NODE)
        for name in self.spec.replica_names:
            self.replicas[name] = ReplicaProc(name, await mgr.add_node(name))
        await self._start_client()
        self.session = aiohttp.ClientSession()
        if self.system:
            from selfhood.chaos.cluster_world.system import DbRelay

            self.relay = DbRelay(f"{cfg.subnet}.1", cfg.postgres_port, "127.0.0.1",
                                 cfg.postgres_port,
                                 {r.name: r.address for r in self.replicas.values()})
            await self.relay.start()

    async def _forget_earlier_runs(self) -> None:
        """Stop what a killed earlier run left (its processes, rules and namespaces)."""
        assert self.mgr is not None
        for name in self.mgr.process_names():
            if name.startswith(PROCESS_PREFIX):
                await self.mgr.stop_process(name, grace=0.5)
        if self.mgr.nodes():
            await self.mgr.remove_nodes()

    async def stop(self) -> None:
        """Stop every process this run started and remove its namespaces; safe twice."""
        for r in self.replicas.values():
            await self._stop_replica(r, kill=True)
        if self.client_task is not None:
            self.client_task.cancel()
            self.client_task = None
        if self.client_writer is not None:
            self.client_writer.close()
            self.client_writer = None
        if self.mgr is not None and self.client_started:
            await self.mgr.stop_process(self.client_process)
            self.client_started = False
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        for t in list(self.tasks):
            t.cancel()
        for t in self.broker_starts:
            with contextlib.suppress(BaseException):
                await t
        self.broker_starts = []
        if self.mgr is not None:
            for b in self.broker_down:
                with contextlib.suppress(ClusterError):
                    await self.mgr.start_broker(b)
            self.broker_down = []
        if self.mgr is not None and self.made_nodes:
            await self.mgr.remove_nodes()  # and every rule cutting them
            self.made_nodes = False
        if self.mgr is not None and self.started_cluster and not self.keep:
            self.say("stopping the Kafka cluster this run started (--keep leaves it up)")
            await self.mgr.down()
            self.started_cluster = False

    async def _start_client(self) -> None:
        assert self.mgr is not None
        sock = self.work / "client.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self.client_started = True
        await self.mgr.start_process(
            self.client_process, [sys.executable, "-m",
                                  "selfhood.chaos.cluster_world.clientproc", str(sock)],
            node=CLIENT_NODE)
        await self.mgr.wait_for_output(self.client_process, "ready", 30.0)
        from selfhood.chaos.cluster_world.clientproc import LINE_LIMIT

        self.client_reader, self.client_writer = await asyncio.open_unix_connection(
            str(sock), limit=LINE_LIMIT)
        self.client_task = asyncio.create_task(self._client_replies())

    async def _client_replies(self) -> None:
        """Hand each answer of the client process to its caller; losing them ends the run
        (every op after would time out, which would look like a system fault)."""
        assert self.client_reader is not None
        try:
            while line := await self.client_reader.readline():
                msg = json.loads(line)
                fut = self.waiting.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            reason = "the client process closed its connection"
        except (OSError, ValueError) as exc:  # a broken socket, an overlong or bad line
            reason = f"reading the client process's answers failed: {exc!r}"
        log = self.mgr.process_log(self.client_process) if self.mgr is not None else None
        self.client_lost = f"{reason} (see {log})"
        if self.world is not None:
            self.world.cancel(self.client_lost)

    async def call(self, url: str, body: Any, timeout_s: float) -> dict[str, Any]:
        """One HTTP call from the clients' namespace (through the client process)."""
        assert self.client_writer is not None
        cid = next(self.call_ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[cid] = fut
        self.client_writer.write(json.dumps({"id": cid, "method": "POST", "url": url,
                                             "body": body, "timeout_s": timeout_s}).encode()
                                 + b"\n")
        try:
            async with asyncio.timeout(timeout_s + 5):
                return await fut
        finally:
            self.waiting.pop(cid, None)

    # -- client ops -----------------------------------------------------------------------

    def submit(self, replica: str, req: Request, timeout_ms: int,
               out: queue.Queue[tuple[Any, ...]]) -> None:
        """Send a client request (called on the loop by the interpreter's thread)."""
        if self.world is None:
            return  # the mode's load ended (its bound passed) while this was on its way
        t = asyncio.get_running_loop().create_task(self._op(replica, req, timeout_ms, out))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _op(self, replica: str, req: Request, timeout_ms: int,
                  out: queue.Queue[tuple[Any, ...]]) -> None:
        body = {"req_id": req.req_id, "f": req.f, "value": req.value, "instance": req.instance,
                "token": None if req.token is None else {str(p): o for p, o in req.token.items()},
                "timeout_ms": timeout_ms}
        url = f"{self.replicas[replica].url}/v1/ops"
        try:
            msg = await self.call(url, body, timeout_ms / 1000 + 1.0)
        except TimeoutError:
            return  # the client process never answered: the interpreter times the op out
        reply = _reply_of(req.req_id, msg)
        if reply is not None:
            out.put(("reply", reply))

    # -- replicas -------------------------------------------------------------------------

    def _system_env(self, r: ReplicaProc) -> dict[str, str]:
        from selfhood.chaos.cluster_world.system import system_env

        spec, cfg = self.spec, self.cfg
        assert cfg is not None
        return system_env(
            node=r.name, listen=f"{r.address}:{REPLICA_PORT}", bootstrap=cfg.bootstrap,
            database_url=self.db_url, topic=self.topic, mode=self.mode, shards=spec.shards,
            instances=spec.instances,
            peers={o.name: o.url for o in self.replicas.values() if o.name != r.name},
            data_dir=str(self.work / self.mode / r.name),
            session_timeout_ms=spec.session_timeout_ms)

    def _replica_argv(self, r: ReplicaProc) -> list[str]:
        spec, cfg = self.spec, self.cfg
        assert cfg is not None
        if self.system:
            # exec: the node is one process, so kill -9 and SIGSTOP reach the service itself
            return ["sh", "-c", f"exec {self.system}"]
        argv = [sys.executable, "-m", "selfhood", "replica", "serve", "--node", r.name,
                "--listen", f"{r.address}:{REPLICA_PORT}", "--bootstrap", cfg.bootstrap,
                "--topic", self.topic, "--mode", self.mode,
                "--shards", str(spec.shards), "--instances", str(spec.instances),
                "--sharded-memory" if spec.sharded_memory else "--no-sharded-memory",
                "--atomic-memory" if spec.atomic_memory else "--no-atomic-memory",
                "--fencing" if spec.fencing else "--no-fencing",
                "--data-dir", str(self.work / self.mode / r.name),
                "--session-timeout-ms", str(spec.session_timeout_ms)]
        for other in self.replicas.values():
            if other.name != r.name:
                argv += ["--peer", f"{other.name}={other.url}"]
        return argv

    async def _start_replica(self, r: ReplicaProc, limit: float, *, restart: bool) -> None:
        """Start (or restart, on the same local disk) a replica; until it serves."""
        assert self.mgr is not None
        if restart:
            # its log still holds the first start's line: ask the process itself; one
            # that exits (e.g. the log unreachable while a broker is down) is started again
            deadline = time.monotonic() + limit
            await self.mgr.restart_process(r.process)
            r.up, r.paused = True, False
            while await self.status(r, 0.5) is None:
                if time.monotonic() > deadline:
                    await self._stop_replica(r, kill=True)
                    raise ClusterError(f"replica {r.name} did not serve within {limit:.0f} s "
                                       f"of its restart; see {self.mgr.process_log(r.process)}")
                if self.mgr.process_pid(r.process) is None:
                    await self.mgr.restart_process(r.process)
                await asyncio.sleep(0.1)
            return
        else:
            (self.work / self.mode / r.name).mkdir(parents=True, exist_ok=True)
            r.process = f"{PROCESS_PREFIX}{self.run_id}-{self.mode[:3]}-{r.name}"
            await self.mgr.start_process(r.process, self._replica_argv(r), node=r.name,
                                         env=self._system_env(r) if self.system else None,
                                         skew_clock=self.skew)
        r.up, r.paused = True, False
        if self.system:  # a user's service need not print our line: it serves, or not
            deadline = time.monotonic() + limit
            while not await self._answers(f"{r.url}/v1/health"):  # conform judges the rest
                if self.mgr.process_pid(r.process) is None or time.monotonic() > deadline:
                    raise ClusterError(f"system node {r.name} did not answer HTTP "
                                       f"within {limit:.0f} s; see "
                                       f"{self.mgr.process_log(r.process)}")
                await asyncio.sleep(0.2)
            return
        await self.mgr.wait_for_output(r.process, "listening on", limit)

    async def _stop_replica(self, r: ReplicaProc, *, kill: bool = False) -> None:
        """kill -9 (``kill``) or SIGTERM with a grace period."""
        assert self.mgr is not None
        if r.process and self.mgr.process_pid(r.process) is not None:
            if kill:
                await self.mgr.kill_process(r.process)
            else:
                await self.mgr.stop_process(r.process)
        r.up, r.paused = False, False

    async def status(self, r: ReplicaProc, timeout_s: float = 1.0) -> dict[str, Any] | None:
        """GET /v1/status from the root namespace (admin, not a client op)."""
        return await self._admin("GET", f"{r.url}/v1/status", timeout_s)

    async def _answers(self, url: str) -> bool:
        """Whether anything answers HTTP at ``url`` (any status, any body)."""
        import aiohttp

        try:
            async with asyncio.timeout(0.5), self.session.get(url) as resp:
                await resp.read()
                return True
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def _admin(self, method: str, url: str, timeout_s: float) -> dict[str, Any] | None:
        import aiohttp

        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.request(method, url) as resp:
                    body = await resp.json(content_type=None)
                    return body if isinstance(body, dict) else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None

    async def _wait_owned(self, limit: float) -> None:
        """Until every replica answers and every partition has an active owner (a user's
        service: until every replica answers).

        Eventual replicas do not need owners to serve, but the group's first
        assignment also waits for a cold cluster's internal topics (group
        offsets, transaction state); a load started before it ran into
        multi-second first transactions, and its shipments were still in
        flight when the final reads came (no convergence, measured).
        """
        deadline = time.monotonic() + limit
        want = set(range(self.spec.shards))
        while True:
            sts = [await self.status(r) for r in self.replicas.values()]
            if all(s is not None for s in sts):
                owned = {o["partition"] for s in sts if s is not None
                         for o in s.get("owned", []) if o.get("active")}
                if self.system or want <= owned:
                    return
            if time.monotonic() > deadline:
                raise ClusterError(f"partitions {sorted(want)} not all owned within {limit:.0f} s "
                                   f"(replica logs in {self.work / self.mode})")
            await asyncio.sleep(0.2)

    async def _settled(self, limit: float) -> bool:
        """Wait until every running replica is in the same group generation and every
        partition has exactly one active owner (eventual: every replica answers)."""
        deadline = time.monotonic() + limit
        want = set(range(self.spec.shards))
        while True:
            live = [r for r in self.replicas.values() if r.up and not r.paused]
            sts = [await self.status(r) for r in live]
            if sts and all(s is not None for s in sts):
                gens = {(s or {}).get("group", {}).get("generation") for s in sts}
                owned = [o["partition"] for s in sts if s is not None
                         for o in s.get("owned", []) if o.get("active")]
                if self.mode == "eventual" or self.system or (
                        len(gens) == 1 and None not in gens
                        and set(owned) == want and len(owned) == len(want)):
                    return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)

    # -- one mode ------------------------------------------------------------------------

    async def run_mode(self, mode: str, generator: Generator,
                       on_progress: Callable[[int, int], None] | None = None, *,
                       heal_ops: int = 0) -> ModeResult:
        """Run one mode's load (``heal_ops``: nemesis ops of its final heal, for the bound
        on how long the load may take) and gather what the replicas and the log hold."""
        spec = self.spec
        self.mode = mode
        self.topic = f"selfhood-run-{self.run_id}-{mode}"
        self.kills = []
        self.owner_targets = {}  # an "owner" fault's replica, until healed
        self.counters = {"crashes": 0, "restarts": 0, "pauses": 0, "partitions": 0,
                         "skews": 0, "rebalances": 0, "broker_kills": 0}
        (self.work / mode).mkdir(parents=True, exist_ok=True)
        self.say(f"[{mode}] starting {spec.replicas} replicas on topic {self.topic}")
        t0 = time.monotonic()
        if self.system:
            self.db_url = await self._system_database()
        await asyncio.gather(*(self._start_replica(r, READY_TIMEOUT_S, restart=False)
                               for r in self.replicas.values()))
        if self.system:
            await self._conform()  # before anything reads its answers
        await self._wait_owned(READY_TIMEOUT_S)
        self.say(f"[{mode}] replicas ready in {time.monotonic() - t0:.1f} s; running the load")
        loop = asyncio.get_running_loop()
        world = ClusterWorld(self, loop)
        self.t0 = world.t0
        clients = ClientSessions(spec.replica_names, spec.router, down_ms=1000,
                                 timeout_ns=spec.op_timeout_ms * MS, margin_ns=10 * MS)
        interp = Interpreter(world, clients, concurrency=spec.concurrency,
                             rng=random.Random(spec.seed))
        world.interp = interp
        if self.client_lost:
            raise ChaosError(self.client_lost)
        self.world = world
        try:
            history = await self._interpret(world, generator, on_progress,
                                            self.load_bound_s(heal_ops))
        finally:
            self.world = None
        self.say(f"[{mode}] load done: {len(history)} ops in {world.now / 1e9:.1f} s; "
                 "reading the replicas' final state")
        statuses = {r.name: await self.status(r, 3.0) for r in self.replicas.values()}
        fingerprints = {}
        for r in self.replicas.values():
            fp: dict[str, Any] = {}
            for inst in spec.instance_names:
                got = await self._admin("GET", f"{r.url}/v1/instances/{inst}/fingerprint", 2.0)
                if got is not None:
                    fp[inst] = got
            fingerprints[r.name] = fp
        assert self.cfg is not None
        projection: dict[str, Any] | None = None
        if not self.system:  # a user's service keeps its state its own way
            self.say(f"[{mode}] projecting {self.topic} into PostgreSQL")
            projection = await self._projection()
        failover_gaps(self.kills, history)
        _claims_of_kills(self.kills, statuses)
        await asyncio.gather(*(self._stop_replica(r) for r in self.replicas.values()))
        await self._restart_brokers()
        stats = {**self.counters, "timeouts": clients.timeouts,
                 "failovers": clients.router.failovers, "ops": len(history),
                 "wall_ms": world.now // MS,
                 "replica": {n: (s or {}).get("stats") for n, s in statuses.items()}}
        return ModeResult(history, stats, gap_summary(self.kills, spec.session_timeout_ms),
                          {"projection": projection,
                           "instances": fingerprint_table(fingerprints, projection)},
                          self.topic, round(time.monotonic() - t0, 3))

    # -- bounds: a run ends, with an error that says what was stuck --------------------

    @property
    def nemesis_limit_s(self) -> float:
        """How long one fault may take: a restart's start and settling are the longest."""
        settle = max(5.0, 5 * self.spec.session_timeout_ms / 1000)
        return RESTART_TIMEOUT_S + 10.0 + settle + SLACK_S

    def load_bound_s(self, heal_ops: int) -> float:
        """How long a mode's interpreter may run: the load, one fault still running at its
        end and the heal's, the quiet phase and the final reads, each at its own bound."""
        spec = self.spec
        reads = len(spec.replica_names) * len(spec.instance_names)
        op_s = spec.op_timeout_ms / 1000
        return (spec.time_limit_s + (1 + heal_ops) * self.nemesis_limit_s
                + spec.quiesce_ms / 1000 + (reads / max(1, spec.concurrency) + 2) * op_s
                + SLACK_S)

    async def bounded_nemesis(self, op: OpRequest) -> Any:
        """`nemesis`, given `nemesis_limit_s`; a fault that takes longer ends the run."""
        task = asyncio.current_task()
        assert task is not None
        self.faults[task] = (op, time.monotonic())
        limit = self.nemesis_limit_s
        try:
            async with asyncio.timeout(limit) as cm:
                return await self.nemesis(op)
        except TimeoutError:
            if not cm.expired():
                raise
            raise ChaosError(f"nemesis {op.f} {op.value!r} did not finish within "
                             f"{limit:.3g} s") from None
        finally:
            del self.faults[task]

    async def _interpret(self, world: ClusterWorld, generator: Generator,
                         on_progress: Callable[[int, int], None] | None,
                         bound_s: float) -> list[Op]:
        """Run the interpreter in a daemon thread of its own, at most ``bound_s``.

        Not `asyncio.to_thread`: a thread stuck past the bound must not keep the
        process from ending (the default executor is joined at exit).
        """
        interp = world.interp
        assert interp is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Op]] = loop.create_future()
        # retrieved even when nobody awaits it any more (the bound passed first)
        done.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(result: list[Op] | None, exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(result or [])

        def work() -> None:
            try:
                history = interp.run(generator, on_progress=on_progress)
            except BaseException as exc:  # handed to the loop, raised there
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(settle, None, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, history, None)

        thread = threading.Thread(target=work, name=f"interpreter-{self.mode}", daemon=True)
        thread.start()
        try:
            async with asyncio.timeout(bound_s):
                return await asyncio.shield(done)
        except TimeoutError:
            report = self._stuck_report(world, thread, bound_s)
            world.cancel(report)
            raise ChaosError(report) from None
        except BaseException:
            world.cancel()  # the interpreter's thread stops at its next step
            raise

    def _stuck_report(self, world: ClusterWorld, thread: threading.Thread,
                      bound_s: float) -> str:
        """What a run past its bound was waiting for (one line per cause), with every
        task's and thread's stack written beside the run's logs."""
        interp = world.interp
        now = time.monotonic()
        causes = [f"nemesis {op.f} {op.value!r} running for {now - t0:.0f} s at "
                  f"{await_chain(task.get_coro())}" for task, (op, t0) in self.faults.items()]
        if interp is not None:
            causes.append(f"{interp.open_ops} client op(s) open, "
                          f"{len(interp.history)} ops recorded")
        frame = sys._current_frames().get(thread.ident or -1)
        if frame is not None:
            causes.append(f"interpreter thread at {frame_chain(frame)}")
        path = self.work / f"stuck-{self.mode}.txt"
        with contextlib.suppress(OSError):
            with path.open("w") as out:
                for task in asyncio.all_tasks():
                    out.write(f"task {task.get_name()}: {await_chain(task.get_coro())}\n")
                for ident, f in sys._current_frames().items():
                    out.write(f"thread {ident}: {frame_chain(f, depth=12)}\n")
        return (f"[{self.mode}] the load did not finish within {bound_s:.0f} s: "
                + "; ".join(causes) + f" (all stacks: {path})")

    async def _projection(self) -> dict[str, Any]:
        """`project_topic` of this mode's topic, bounded; a failure is reported, not fatal
        (the verdicts rest on the history), saying where a stuck one waited."""
        assert self.cfg is not None
        spec = self.spec
        task = asyncio.create_task(project_topic(self.cfg, self.topic, self.mode,
                                                 spec.instance_names, fencing=spec.fencing))
        try:
            done, _ = await asyncio.wait({task}, timeout=PROJECT_LIMIT_S)
        except BaseException:  # Ctrl-C: the projection stops with the run
            task.cancel()
            raise
        if not done:
            where = await_chain(task.get_coro())
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            error = f"did not finish within {PROJECT_LIMIT_S:.0f} s (waiting at {where})"
            self.say(f"[{self.mode}] projection {error}")
            return {"error": error}
        exc = task.exception()
        return {"error": repr(exc)} if exc is not None else task.result()

    async def _system_database(self) -> str:
        """A fresh PostgreSQL database for this mode's system, as the nodes reach it."""
        import asyncpg

        assert self.cfg is not None and self.relay is not None
        db = self.topic.replace("-", "_")
        admin = await asyncpg.connect(self.cfg.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
            await admin.execute(f'CREATE DATABASE "{db}"')
        finally:
            await admin.close()
        user_host, _, rest = self.cfg.database_url.partition("@")
        port = rest.split("/", 1)[0].rsplit(":", 1)[1]
        return f"{user_host}@{self.relay.url_host}:{port}/{db}"

    async def _conform(self) -> None:
        """Every node of the user's service speaks the replica API, or the run stops here."""
        from selfhood.replica.conform import check_service

        for r in self.replicas.values():
            report = await check_service(r.url, instance=f"conform-{self.run_id}-{r.name}")
            report.raise_for_findings()
            self.say(f"[{self.mode}] {r.name} conforms ({report.exchanges} answers checked)")

    async def _restart_brokers(self) -> None:
        """Every broker this mode killed is back (started now, or awaited if starting)."""
        assert self.mgr is not None
        while self.broker_down:
            b = self.broker_down.pop()
            await self.mgr.start_broker(b)
        starts, self.broker_starts = self.broker_starts, []
        for t in starts:
            await t

    # -- nemesis --------------------------------------------------------------------------

    async def _owner_of(self, partition: int) -> str | None:
        """The running replica that holds `partition` with an active claim, if one does."""
        for r in self.replicas.values():
            if not r.up or r.paused:
                continue
            st = await self.status(r, 0.5)
            if any(o.get("partition") == partition and o.get("active")
                   for o in (st or {}).get("owned", [])):
                return r.name
        return None

    def _replica_arg(self, op: OpRequest) -> ReplicaProc:
        return self.replicas[replica_named(op.f, op.value, tuple(self.replicas))]

    async def nemesis(self, op: OpRequest) -> Any:
        """Inflict one fault; the value recorded as its completion."""
        f, v = op.f, op.value
        mgr = self.mgr
        assert mgr is not None
        if v == OWNER:
            target = owner_target(f, v, await self._owner_of(0), self.owner_targets)
            if target is None:
                return {"replica": None}  # no owner (or nothing to heal): nothing to do
            op = replace(op, value=target)
            v = target
        if f == "partition":
            nodes = (*self.replicas, LOG_NODE)
            groups = resolve_partition(v, nodes, self.nem_rng)
            # the clients sit outside the partitioned network, as in the simulator
            await mgr.partition_nodes([[*g, CLIENT_NODE] for g in groups])
            self.counters["partitions"] += 1
            cut = cut_of(groups, nodes)
            if self.relay is not None:  # cut from the log = cut from the database too
                self.relay.cut({a if b == LOG_NODE else b for a, b in cut
                                if LOG_NODE in (a, b)})
            return {**(v if isinstance(v, dict) else {}),
                    "cut": sorted([a, b] for a, b in cut if a < b)}
        if f == "heal":
            await mgr.heal()
            if self.relay is not None:
                self.relay.heal()
            return v
        if f == "crash":
            r = self._replica_arg(op)
            if r.up:
                st = await self.status(r, 0.5)
                owned = [o for o in (st or {}).get("owned", []) if o.get("active")]
                self.kills.append(Kill(
                    r.name, time.monotonic_ns() - self.t0,
                    tuple(sorted(i for o in owned for i in o.get("instances", []))),
                    tuple(sorted(o["partition"] for o in owned))))
                self.counters["crashes"] += 1
                await self._stop_replica(r, kill=True)
            return v
        if f == "restart":
            r = self._replica_arg(op)
            if r.up and mgr.process_pid(r.process) is None:
                r.up = False  # it died on its own
            if not r.up:
                self.counters["restarts"] += 1
                try:
                    await self._start_replica(r, RESTART_TIMEOUT_S, restart=True)
                except ClusterError as exc:  # recorded, not fatal: the heal phase tries again
                    return {"replica": r.name, "error": str(exc)}
                # done when the group has taken it back (or after a bound): a restart is
                # a rejoin, and the rebalance it causes belongs to it
                if not await self._settled(max(5.0, 5 * self.spec.session_timeout_ms / 1000)):
                    self.counters["unsettled_restarts"] = (
                        self.counters.get("unsettled_restarts", 0) + 1)
            return v
        if f == "pause":
            r = self._replica_arg(op)
            if r.up and not r.paused:
                await mgr.pause_process(r.process)
                r.paused = True
                self.counters["pauses"] += 1
            return v
        if f == "resume":
            r = self._replica_arg(op)
            if r.up and r.paused:
                await mgr.resume_process(r.process)
                r.paused = False
            return v
        if f in ("skew", "unskew"):
            offsets = v if f == "skew" else dict.fromkeys(self.replicas, 0)
            if not isinstance(offsets, dict):
                raise ChaosError(f"nemesis skew: value must be {{replica: offset_ms}}, got {v!r}")
            for name, ms in offsets.items():
                if name not in self.replicas:
                    raise ChaosError(f"nemesis skew: unknown replica {name!r}")
                r = self.replicas[name]
                if r.process and self.skew:
                    mgr.set_clock_offset(r.process, float(ms) / 1000)
            self.counters["skews"] += f == "skew"
            return v
        if f == "rebalance":
            live = [r for r in self.replicas.values() if r.up and not r.paused]
            target = live[self.nem_rng.randrange(len(live))] if live else None
            if target is not None:
                await self._admin("POST", f"{target.url}/v1/admin/rebalance", 5.0)
                self.counters["rebalances"] += 1
            return {"replica": None if target is None else target.name}
        if f == "kill-broker":
            node = await self._broker_arg(v)
            await mgr.kill_broker(node)
            self.broker_down.append(node)
            self.counters["broker_kills"] += 1
            return {"broker": node, "asked": v}
        if f == "restart-broker":
            # a broker takes tens of seconds to rejoin: start it and go on (the mode's end
            # waits until it is back); the op completes when the process is started
            started: list[int] = []
            while self.broker_down:
                node = self.broker_down.pop()
                self.broker_starts.append(asyncio.create_task(mgr.start_broker(node)))
                started.append(node)
            return {"brokers": started}
        raise ChaosError(f"unknown nemesis op {f!r}")

    async def _broker_arg(self, v: Any) -> int:
        """A broker id, or ``"leader"``: the leader of the topic's partition 0."""
        assert self.cfg is not None
        if v in (None, "leader"):
            return await partition_leader(self.cfg.bootstrap, self.topic, 0)
        if isinstance(v, int) and v in self.cfg.node_ids:
            return v
        raise ChaosError(f"nemesis kill-broker: {v!r} is not 'leader' or one of "
                         f"{self.cfg.node_ids}")


def _frame_name(frame: Any) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"


def await_chain(coro: Any) -> str:
    """Where a suspended coroutine waits: each awaited coroutine's frame, outermost first
    (`Task.get_stack` shows only the outermost)."""
    parts: list[str] = []
    while coro is not None and len(parts) < 16:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            parts.append(_frame_name(frame))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(parts) or "?"


def frame_chain(frame: Any, depth: int = 4) -> str:
    """A thread's innermost ``depth`` frames, outermost first."""
    parts: list[str] = []
    while frame is not None and len(parts) < depth:
        parts.append(_frame_name(frame))
        frame = frame.f_back
    return " > ".join(reversed(parts))


def _reply_of(req_id: int, msg: dict[str, Any]) -> Reply | None:
    """The client process's answer as a core Reply (None: no answer, the op times out)."""
    err = msg.get("error")
    if err == "refused":
        return Reply(req_id, "fail", None, UNAVAILABLE)  # never reached a replica
    if err is not None:
        return None
    body = msg.get("body")
    status = msg.get("status")
    if status == 200 and isinstance(body, dict) and body.get("type") in ("ok", "fail", "info"):
        tok = body.get("token")
        token = ({int(p): int(o) for p, o in tok.items()} if isinstance(tok, dict) else None)
        extra = body.get("extra")
        return Reply(req_id, body["type"], body.get("value"), body.get("error"), token,
                     extra if isinstance(extra, dict) else None)
    if isinstance(status, int) and 400 <= status < 500:
        detail = body.get("detail") if isinstance(body, dict) else None
        return Reply(req_id, "fail", None, f"http {status}: {detail}")  # refused as invalid
    return Reply(req_id, "info", None, f"http {status}")  # may or may not have happened


def _claims_of_kills(kills: list[Kill], statuses: dict[str, dict[str, Any] | None]) -> None:
    """Each kill's takeover claim: the replay figures of the new owner's claim."""
    for k in kills:
        for name, st in statuses.items():
            if name == k.replica or st is None:
                continue
            for c in st.get("claims", []):
                if c.get("partition") in k.partitions and c.get("replayed") is not None:
                    k.replayed = int(c["replayed"])
                    k.replayed_from = c.get("replayed_from")
                    break


async def project_topic(cfg: ClusterConfig, topic: str, mode: str,
                        instances: tuple[str, ...], *, fencing: bool = True) -> dict[str, Any]:
    """Project the mode's topic into a fresh PostgreSQL database; each instance's fingerprint.

    The projection reads the log the replicas wrote (not the replicas), so its
    fingerprints next to the replicas' say whether what they serve is what the
    log holds. The database is left for inspection (it goes with the cluster).
    """
    import asyncpg

    from selfhood.eventlog.url import open_log
    from selfhood.projections.projector import Projector
    from selfhood.projections.snapshot import SnapshotPolicy
    from selfhood.projections.state import Mode
    from selfhood.projections.store import SqlProjectionStore

    db = topic.replace("-", "_")
    admin = await asyncpg.connect(cfg.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
        await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    db_url = cfg.database_url.rsplit("/", 1)[0] + f"/{db}"
    log_url = f"kafka://{cfg.bootstrap}/{topic}"
    reducer: Mode = "eventual" if mode == "eventual" else "sequential"
    async with open_log(log_url, create=False) as log, SqlProjectionStore(db_url) as store:
        proj = Projector(log, store, reader="projector", mode=reducer, fencing=fencing,
                         snapshots=SnapshotPolicy(1000), batch=2000)
        prog = await proj.run(follow=False)
        fps: dict[str, str | None] = {}
        for inst in instances:
            got = await store.load_instance(inst)
            fps[inst] = None if got is None else got[1]
    return {"database_url": db_url, "log_url": log_url, "events": prog.events,
            "command": f"selfhood project {log_url} --into {db_url} --mode {reducer}"
                       + ("" if fencing else " --no-fencing"),
            "fingerprints": fps}


def fingerprint_table(replicas: dict[str, dict[str, Any]],
                      projection: dict[str, Any] | None) -> dict[str, Any]:
    """Per instance: every replica's final fingerprint next to the projection's."""
    out: dict[str, Any] = {}
    proj = (projection or {}).get("fingerprints", {})
    insts = sorted({i for fp in replicas.values() for i in fp} | set(proj))
    for inst in insts:
        row = {name: (fp.get(inst) or {}).get("fingerprint") for name, fp in replicas.items()}
        p = proj.get(inst)
        out[inst] = {"replicas": row, "projection": p,
                     "agree": p is not None and all(v == p for v in row.values())}
    return out


async def partition_leader(bootstrap: str, topic: str, partition: int) -> int:
    """The broker id leading ``topic``'s ``partition`` now (from fresh cluster metadata)."""
    from aiokafka import TopicPartition
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(15):
            await client.bootstrap()
            md = await client.fetch_all_metadata()
    except TimeoutError:
        raise ClusterError(f"no metadata for {topic} from {bootstrap} within 15 s") from None
    finally:
        await client.close()
    leader = md.leader_for_partition(TopicPartition(topic, partition))
    if leader is None or leader < 0:
        raise ClusterError(f"no leader for {topic}[{partition}]")
    return int(leader)


def run_cluster(spec: ExperimentSpec, schedule: tuple[Any, ...], heal: tuple[Any, ...], *,
                keep: bool = False, state_dir: Path | None = None,
                progress: Progress | None = None) -> dict[str, ModeResult]:
    """Run every mode of ``spec`` on one cluster (started if needed, always cleaned up)."""
    from selfhood.chaos.workloads import experiment_generator

    async def main() -> dict[str, ModeResult]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # clean up as on Ctrl-C
        rt = ClusterRuntime(spec, state_dir=state_dir, keep=keep, progress=progress)
        rt.skew = uses_skew(spec, schedule)
        out: dict[str, ModeResult] = {}
        async with rt:
            for mode in spec.modes:
                out[mode] = await rt.run_mode(mode, experiment_generator(spec, schedule, heal),
                                              heal_ops=len(heal))
        return out

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        # SIGTERM cancelled the run; it has cleaned up: end like Ctrl-C (one line, exit 130)
        raise KeyboardInterrupt from None
