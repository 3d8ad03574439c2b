"""The replica's HTTP/JSON API (aiohttp); the contract is replica-api.yaml (beside it).

Every answer is JSON, errors included (400 names the bad field, 404/405 say
what exists), so a client never has to parse an HTML error page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from selfhood.errors import ReplicaError
from selfhood.replica.config import ReplicaOptions
from selfhood.replica.node import ReplicaNode
from selfhood.replica.wire import BadRequest, parse_op, reply_body

log = logging.getLogger("selfhood.replica")

NODE: web.AppKey[ReplicaNode] = web.AppKey("node", ReplicaNode)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, "not-found" if exc.status == 404 else "http-error",
                      f"{request.method} {request.path}: {exc.reason}")
    except BadRequest as exc:
        return _error(400, "bad-request", str(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal", repr(exc))


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body: malformed JSON: {exc}") from None


async def _op(request: web.Request, *, forwarded: bool) -> web.Response:
    node = request.app[NODE]
    op = parse_op(await _body(request), forwarded=forwarded)
    reply = await node.submit(op)
    return web.json_response(reply_body(op.req_id, reply, node.name))


async def post_op(request: web.Request) -> web.Response:
    return await _op(request, forwarded=False)


async def post_forward(request: web.Request) -> web.Response:
    return await _op(request, forwarded=True)


async def get_health(request: web.Request) -> web.Response:
    return web.json_response(request.app[NODE].health())


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[NODE].status())


async def get_fingerprint(request: web.Request) -> web.Response:
    inst = request.match_info["instance"]
    if not inst or "/" in inst:
        raise BadRequest(f"instance: {inst!r} is not an instance name")
    return web.json_response(request.app[NODE].fingerprint(inst))


async def post_rebalance(request: web.Request) -> web.Response:
    node = request.app[NODE]
    left = list(node.membership.assigned)
    gen = node.membership.generation
    await node.membership.rejoin()
    return web.json_response({"replica": node.name, "left": left,
                              "left_generation": gen, "rejoining": True})


def make_app(node: ReplicaNode) -> web.Application:
    app = web.Application(middlewares=[_json_errors], client_max_size=4 * 1024 * 1024)
    app[NODE] = node
    app.router.add_post("/v1/ops", post_op)
    app.router.add_post("/v1/forward", post_forward)
    app.router.add_get("/v1/health", get_health)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/instances/{instance}/fingerprint", get_fingerprint)
    app.router.add_post("/v1/admin/rebalance", post_rebalance)
    return app


async def serve(opts: ReplicaOptions) -> None:
    """Run one replica until SIGTERM/SIGINT: start the node, then listen."""
    node = ReplicaNode(opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(node), access_log=None, handle_signals=False)
    try:
        await node.start()
        await runner.setup()
        site = web.TCPSite(runner, opts.host, opts.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ReplicaError(f"cannot listen on {opts.host}:{opts.port}: "
                               f"{exc.strerror or exc}") from None
        port = opts.port
        server = getattr(site, "_server", None)
        if port == 0 and server is not None and server.sockets:
            port = server.sockets[0].getsockname()[1]
        host = f"[{opts.host}]" if ":" in opts.host else opts.host
        sys.stdout.write(f"selfhood replica {opts.node} ({opts.mode}) listening on "
                         f"http://{host}:{port}\n")
        sys.stdout.flush()
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(node.membership.failed.wait())
        try:
            await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            failed.cancel()
        if node.membership.fatal is not None:
            raise ReplicaError(node.membership.fatal)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        await node.stop()
