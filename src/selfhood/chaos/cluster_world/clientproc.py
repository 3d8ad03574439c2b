"""The client process of a cluster run: HTTP calls to replicas from the clients' namespace (IO).

The harness runs the interpreter; the requests themselves leave from this
process, which runs inside the clients' network namespace, so a partition
between clients and replicas is a real iptables rule like any other. The
harness talks to it over a Unix socket (not namespaced): one JSON line per
call, ``{"id", "method", "url", "body", "timeout_s"}``, answered by one line
``{"id", "status", "body"}`` or ``{"id", "error": "refused" | "timeout" |
"failed", "detail"}``. ``refused`` means the request never reached a replica
(connection refused or unreachable), so its op certainly had no effect.

    python -m selfhood.chaos.cluster_world.clientproc SOCKET
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import aiohttp

#: the longest line one call or answer may be (a final read carries a whole state; the
#: streams' default of 64 KiB would end the connection on a long conversation)
LINE_LIMIT = 64 * 1024 * 1024


async def _call(session: aiohttp.ClientSession, msg: dict[str, Any]) -> dict[str, Any]:
    rid = msg.get("id")
    try:
        async with asyncio.timeout(float(msg.get("timeout_s", 5.0))):
            async with session.request(msg.get("method", "POST"), msg["url"],
                                       json=msg.get("body")) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else None
                except ValueError:
                    body = {"raw": text[:500]}
                return {"id": rid, "status": resp.status, "body": body}
    except TimeoutError:
        return {"id": rid, "error": "timeout", "detail": "no answer in time"}
    except aiohttp.ClientConnectorError as exc:
        return {"id": rid, "error": "refused", "detail": str(exc)}
    except (aiohttp.ClientError, OSError) as exc:
        return {"id": rid, "error": "failed", "detail": repr(exc)}


async def _serve_conn(session: aiohttp.ClientSession, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def one(msg: dict[str, Any]) -> None:
        out = await _call(session, msg)
        async with lock:
            writer.write(json.dumps(out).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    try:
        while line := await reader.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            t = asyncio.create_task(one(msg))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    finally:
        for t in list(tasks):
            t.cancel()
        writer.close()


async def main(path: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # no connection pooling across replicas that may be killed: a fresh connection per call
    # would be slow, so keep-alive stays on and a dead peer's sockets fail fast instead
    connector = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        server = await asyncio.start_unix_server(
            lambda r, w: _serve_conn(session, r, w), path=path, limit=LINE_LIMIT)
        sys.stdout.write(f"client process ready on {path}\n")
        sys.stdout.flush()
        async with server:
            await stop.wait()


if __name__ == "__main__":  # pragma: no cover - run as a process by the cluster world
    asyncio.run(main(sys.argv[1]))
