"""A LangGraph agent behind the selfhood replica API (docs/agents.md).

The API's contract is src/selfhood/replica/replica-api.yaml (OpenAPI 3.1).

One process is one node. Every node serves every instance: an instance is a
LangGraph thread (``thread_id`` = instance id) checkpointed in PostgreSQL
(`AsyncPostgresSaver`), so any node can pick up any thread, which is how
LangGraph deployments scale out. The mapping onto selfhood's model:

- transcript: the thread's messages; each appended turn is a HumanMessage
  whose content is the value (JSON), answered by a deterministic chat model
  (an AIMessage, not part of the transcript key);
- memory: LangGraph's store (`AsyncPostgresStore`): tool and subtask memory
  under namespace ``(instance, "memory")``, cases as one item each under
  ``(instance, "cases")`` (the store has no append);
- rules: graph state, a log of ``[add|revoke, id]`` entries (a revoked rule
  never comes back).

Nothing here coordinates the nodes by default: two nodes (or two requests
on one node) serving one thread each read the latest checkpoint and write a
child of it. That is what the experiment measures. With
``LANGGRAPH_THREAD_LOCK=1`` every op holds a PostgreSQL advisory lock on its
thread (a session lock on a pooled connection, released when the op ends or
the connection dies): the deployment choice that serializes a thread.

Run by the cluster world with the environment of docs/agents.md:
``python examples/langgraph/service.py`` (SELFHOOD_NODE, SELFHOOD_LISTEN,
SELFHOOD_DATABASE_URL, SELFHOOD_MODE).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import operator
import os
import signal
import sys
import time
from typing import Annotated, Any, TypedDict

from aiohttp import web
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("langgraph-service")
OPS = ("txn", "add-rule", "revoke-rule", "read-rules", "probe", "final-read")
SETUP_LOCK = 71001  # pg advisory lock: one node at a time creates the tables


class DeterministicChatModel(BaseChatModel):
    """A chat model whose reply is a function of the conversation (no network, no sampling)."""

    @property
    def _llm_type(self) -> str:
        return "selfhood-deterministic"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        turns = [m.content for m in messages if isinstance(m, HumanMessage)]
        digest = hashlib.sha256(json.dumps(turns).encode()).hexdigest()[:12]
        text = f"turn {len(turns)} noted (context {digest})"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    rule_log: Annotated[list[list[Any]], operator.add]


MODEL = DeterministicChatModel()


async def respond(state: AgentState) -> dict[str, Any]:
    msgs = state.get("messages", [])
    if not msgs or not isinstance(msgs[-1], HumanMessage):
        return {}
    return {"messages": [await MODEL.ainvoke(msgs)]}


def build_graph() -> StateGraph:
    g = StateGraph(AgentState)
    g.add_node("respond", respond)
    g.add_edge(START, "respond")
    g.add_edge("respond", END)
    return g


def active_rules(rule_log: list[list[Any]]) -> list[Any]:
    revoked = {r for f, r in rule_log if f == "revoke"}
    seen: list[Any] = []
    for f, r in rule_log:
        if f == "add" and r not in revoked and r not in seen:
            seen.append(r)
    return sorted(seen, key=lambda x: (str(type(x)), x))


class Node:
    """One node: the compiled graph over the shared checkpointer and store."""

    def __init__(self, name: str, mode: str, pool: AsyncConnectionPool) -> None:
        self.name = name
        self.mode = mode
        self.pool = pool
        self.saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        self.store = AsyncPostgresStore(pool)  # type: ignore[arg-type]
        self.graph = build_graph().compile(checkpointer=self.saver, store=self.store)
        self.started_ns = time.time_ns()
        self.stats: dict[str, int] = {"ops": 0, "ok": 0, "fail": 0, "info": 0}
        #: LANGGRAPH_THREAD_LOCK=1: one op at a time per thread, across every node
        self.thread_lock = os.environ.get("LANGGRAPH_THREAD_LOCK") == "1"

    async def setup(self) -> None:
        async with self.pool.connection() as conn:
            # try, never wait inside a statement: the checkpointer's CREATE INDEX
            # CONCURRENTLY waits for every open statement, a waiting lock call included
            while True:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got",
                                         (SETUP_LOCK,))
                row = await cur.fetchone()
                if row is not None and row["got"]:
                    break
                await asyncio.sleep(0.2)
            try:
                await self.saver.setup()
                await self.store.setup()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))

    @staticmethod
    def config(inst: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": inst}}

    async def state(self, inst: str) -> tuple[dict[str, Any], int]:
        snap = await self.graph.aget_state(self.config(inst))
        step = (snap.metadata or {}).get("step", -1) if snap.metadata else -1
        return dict(snap.values or {}), int(step) + 1

    async def transcript(self, inst: str) -> list[Any]:
        values, _ = await self.state(inst)
        return [json.loads(str(m.content)) for m in values.get("messages", [])
                if isinstance(m, HumanMessage)]

    async def cases(self, inst: str) -> list[Any]:
        items = await self.store.asearch((inst, "cases"), limit=100_000)
        return [it.value["v"] for it in sorted(items, key=lambda it: it.key)]

    async def memory(self, inst: str) -> dict[str, Any]:
        items = await self.store.asearch((inst, "memory"), limit=100_000)
        return {it.key: it.value["v"] for it in sorted(items, key=lambda it: it.key)}

    async def view(self, inst: str) -> dict[str, Any]:
        values, version = await self.state(inst)
        transcript = [json.loads(str(m.content)) for m in values.get("messages", [])
                      if isinstance(m, HumanMessage)]
        replies = [str(m.content) for m in values.get("messages", [])
                   if isinstance(m, AIMessage)]
        rule_log = values.get("rule_log", [])
        view = {"transcript": transcript, "cases": await self.cases(inst),
                "memory": await self.memory(inst), "rules": active_rules(rule_log),
                "revoked": sorted({r for f, r in rule_log if f == "revoke"},
                                  key=lambda x: (str(type(x)), x))}
        fp = hashlib.sha256(json.dumps(view, sort_keys=True, separators=(",", ":"))
                            .encode()).hexdigest()
        return {"replica": self.name, "fingerprint": fp, "version": version, **view,
                "reply": replies[-1] if replies else None}

    async def txn(self, inst: str, mops: list[list[Any]]) -> list[list[Any]]:
        out: list[list[Any]] = []
        for f, key, value in mops:
            _, _, field = key.partition("/")
            if f == "append" and field == "transcript":
                await self.graph.ainvoke({"messages": [HumanMessage(json.dumps(value))]},
                                         self.config(inst))
            elif f == "append" and field == "cases":
                await self.store.aput((inst, "cases"), f"{time.time_ns():020d}-{self.name}",
                                      {"v": value})
            elif f == "w" and field.startswith("mem/"):
                await self.store.aput((inst, "memory"), field[4:], {"v": value})
            elif f == "r" and field == "transcript":
                value = await self.transcript(inst)
            elif f == "r" and field == "cases":
                value = await self.cases(inst)
            elif f == "r" and field.startswith("mem/"):
                item = await self.store.aget((inst, "memory"), field[4:])
                value = None if item is None else item.value["v"]
            else:
                raise ValueError(f"micro-op {[f, key, value]!r} is not supported")
            out.append([f, key, value])
        return out

    async def run(self, body: dict[str, Any]) -> Any:
        """One op; with a thread lock, under a PostgreSQL advisory lock on the thread."""
        if not self.thread_lock:
            return await self._run(body)
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (body["instance"],))
            try:
                return await self._run(body)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))",
                                   (body["instance"],))

    async def _run(self, body: dict[str, Any]) -> Any:
        f, inst, value = body["f"], body["instance"], body.get("value")
        if f == "txn":
            return await self.txn(inst, value)
        if f in ("add-rule", "revoke-rule"):
            entry = ["add" if f == "add-rule" else "revoke", value]
            await self.graph.ainvoke({"rule_log": [entry]}, self.config(inst))
            return value
        if f == "read-rules":
            values, _ = await self.state(inst)
            return active_rules(values.get("rule_log", []))
        view = await self.view(inst)
        if f == "probe":
            return {k: view[k] for k in ("replica", "fingerprint", "version", "reply")}
        return view  # final-read


def _writes(body: dict[str, Any]) -> bool:
    f, v = body.get("f"), body.get("value")
    if f in ("add-rule", "revoke-rule"):
        return True
    return f == "txn" and isinstance(v, list) and any(m[0] != "r" for m in v)


def _bad(detail: str) -> web.Response:
    return web.json_response({"error": "bad-request", "detail": detail}, status=400)


def make_app(node: Node, url: str) -> web.Application:
    async def ops(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _bad("body: not JSON")
        if not isinstance(body, dict) or body.get("f") not in OPS:
            return _bad(f"f: must be one of {', '.join(OPS)}")
        inst = body.get("instance")
        if not isinstance(inst, str) or not inst or "/" in inst:
            return _bad("instance: a non-empty name without '/'")
        if body["f"] == "txn" and not (isinstance(body.get("value"), list) and all(
                isinstance(m, list) and len(m) == 3 and m[0] in ("r", "w", "append")
                and isinstance(m[1], str) for m in body["value"])):
            return _bad("value: a list of [f, key, value] micro-ops")
        timeout_ms = body.get("timeout_ms") or 1000
        node.stats["ops"] += 1
        res: dict[str, Any] = {"req_id": body.get("req_id"), "value": None, "error": None,
                               "token": {}, "extra": None, "replica": node.name}
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                res["value"] = await node.run(body)
            res["type"] = "ok"
        except TimeoutError:
            res["type"], res["error"] = ("info" if _writes(body) else "fail"), "timeout"
        except ValueError as exc:
            res["type"], res["error"] = "fail", f"bad-request: {exc}"
        except Exception as exc:  # the database went away mid-op: outcome unknown for writes
            log.warning("op %s failed: %r", body.get("f"), exc)
            res["type"] = "info" if _writes(body) else "fail"
            res["error"] = "unavailable"
            res["extra"] = {"detail": repr(exc)[:300]}
        node.stats[res["type"]] += 1
        return web.json_response(res)

    async def fingerprint(request: web.Request) -> web.Response:
        inst = request.match_info["instance"]
        try:
            async with asyncio.timeout(5):
                view = await node.view(inst)
        except Exception as exc:
            return web.json_response({"error": "internal", "detail": repr(exc)[:300]},
                                     status=500)
        return web.json_response({"instance": inst, "replica": node.name,
                                  "fingerprint": view["fingerprint"],
                                  "version": view["version"], "epoch": 0, "owner": None,
                                  "reply": view["reply"] or "", "token": {}})

    async def health(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "replica": node.name, "mode": node.mode,
                                  "log_reachable": True})

    async def status(_r: web.Request) -> web.Response:
        return web.json_response({
            "replica": node.name, "mode": node.mode, "pid": os.getpid(),
            "started_at_ns": node.started_ns, "url": url, "owned": [], "claims": [],
            "stats": dict(node.stats), "outbox": None,
            "log": {"topic": "", "bootstrap": "", "next_offsets": [], "ends": [],
                    "contact_ms_ago": None},
            "group": {"id": "", "generation": None, "assigned": [], "rebalances": 0,
                      "session_timeout_ms": 0, "error": None}})

    async def rebalance(_r: web.Request) -> web.Response:
        return web.json_response({"replica": node.name, "left": [], "left_generation": None,
                                  "rejoining": True})

    app = web.Application()
    app.router.add_post("/v1/ops", ops)
    app.router.add_get("/v1/instances/{instance}/fingerprint", fingerprint)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/admin/rebalance", rebalance)
    return app


async def main() -> None:
    name = os.environ.get("SELFHOOD_NODE", "")
    listen = os.environ.get("SELFHOOD_LISTEN", "127.0.0.1:8470")
    db = os.environ.get("SELFHOOD_DATABASE_URL", "")
    mode = os.environ.get("SELFHOOD_MODE", "sequential")
    if not name or not db:
        sys.exit("error: SELFHOOD_NODE and SELFHOOD_DATABASE_URL are required (docs/agents.md)")
    host, _, port = listen.rpartition(":")
    pool = AsyncConnectionPool(db, min_size=1, max_size=10, open=False, timeout=5,
                               check=AsyncConnectionPool.check_connection,
                               kwargs={"autocommit": True, "prepare_threshold": 0,
                                       "row_factory": dict_row})
    await pool.open(wait=True, timeout=30)
    node = Node(name, mode if mode in ("sequential", "linearizable", "eventual")
                else "sequential", pool)
    await node.setup()
    url = f"http://{host}:{port}"
    runner = web.AppRunner(make_app(node, url))
    await runner.setup()
    await web.TCPSite(runner, host, int(port)).start()
    print(f"langgraph node {name} listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await pool.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main())
