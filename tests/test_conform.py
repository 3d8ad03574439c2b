"""`selfhood replica conform`: a tiny in-memory service that speaks the replica API passes;
each deliberate mistake in it is rejected with a message naming the endpoint.

The tiny service is a real HTTP server (aiohttp) on a loopback port; the
check talks to it over TCP, as it would to any user's service.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from selfhood.replica.conform import check_service

pytestmark = pytest.mark.timeout(60)


def tiny_service(broken: str | None) -> web.Application:
    """The replica API over a dict, with one deliberate mistake (``broken``) or none."""
    state: dict[str, dict[str, Any]] = {}

    def inst(name: str) -> dict[str, Any]:
        return state.setdefault(name, {"transcript": [], "cases": [], "mem": {}, "rules": [],
                                       "revoked": [], "version": 0})

    def fp(s: dict[str, Any]) -> str:
        view = {k: s[k] for k in ("transcript", "cases", "mem", "rules", "revoked")}
        if broken == "fingerprint-static":
            view = {}
        return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()

    async def ops(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("f") not in ("txn", "add-rule", "revoke-rule", "read-rules", "probe",
                                 "final-read"):
            if broken == "accept-bad-request":
                return web.json_response({"req_id": None, "type": "fail", "value": None,
                                          "error": "bad", "token": None, "extra": None,
                                          "replica": "t0"})
            return web.json_response({"error": "bad-request", "detail": "f"}, status=400)
        s = inst(body["instance"])
        f, v = body["f"], body.get("value")
        value: Any = None
        if f == "txn":
            out = []
            for mf, key, mv in v:
                field = key.split("/", 1)[1]
                if mf == "append":
                    target = s["transcript"] if field == "transcript" else s["cases"]
                    if not (broken == "lose-appends" and len(target) >= 1):
                        target.append(mv)
                    s["version"] += 1
                    out.append([mf, key, mv])
                elif mf == "w":
                    if broken != "lose-memory":
                        s["mem"][field] = mv
                    s["version"] += 1
                    out.append([mf, key, mv])
                else:
                    got = (list(s[field]) if field in ("transcript", "cases")
                           else s["mem"].get(field))
                    out.append([mf, key, got])
            value = out
        elif f == "add-rule":
            if v not in s["rules"] and (v not in s["revoked"] or broken == "revive-rules"):
                s["rules"].append(v)
            s["version"] += 1
        elif f == "revoke-rule":
            if v in s["rules"]:
                s["rules"].remove(v)
            s["revoked"].append(v)
            s["version"] += 1
        elif f == "read-rules":
            value = sorted(s["rules"])
        elif f == "probe":
            value = {"replica": "t0", "fingerprint": fp(s), "version": s["version"],
                     "reply": None}
        else:
            value = {"replica": "t0", "fingerprint": fp(s), "version": s["version"],
                     "transcript": s["transcript"], "cases": s["cases"],
                     "rules": sorted(s["rules"]), "revoked": sorted(s["revoked"]),
                     "memory": s["mem"], "reply": None}
        res = {"req_id": body.get("req_id"), "type": "ok", "value": value, "error": None,
               "token": {}, "extra": None, "replica": "t0"}
        if broken == "extra-field":
            res["surprise"] = 1
        return web.json_response(res)

    async def fingerprint(request: web.Request) -> web.Response:
        name = request.match_info["instance"]
        s = inst(name)
        got = fp(s) if broken != "fingerprint-wrong" else "0" * 64
        return web.json_response({"instance": name, "replica": "t0", "fingerprint": got,
                                  "version": s["version"], "epoch": 0, "owner": None,
                                  "reply": "", "token": {}})

    async def health(_request: web.Request) -> web.Response:
        if broken == "health-500":
            return web.json_response({"error": "internal", "detail": "x"}, status=500)
        return web.json_response({"status": "ok", "replica": "t0", "mode": "sequential",
                                  "log_reachable": True})

    async def status(_request: web.Request) -> web.Response:
        return web.json_response({
            "replica": "t0", "mode": "sequential", "pid": os.getpid(), "started_at_ns": 0,
            "url": "http://127.0.0.1", "claims": [], "owned": [], "stats": {},
            "outbox": None,
            "log": {"topic": "", "bootstrap": "", "next_offsets": [], "ends": [],
                    "contact_ms_ago": None},
            "group": {"id": "", "generation": None, "assigned": [], "rebalances": 0,
                      "session_timeout_ms": 0, "error": None}})

    app = web.Application()
    app.router.add_post("/v1/ops", ops)
    app.router.add_get("/v1/instances/{instance}/fingerprint", fingerprint)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/status", status)
    return app


async def serve(broken: str | None) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(tiny_service(broken))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def good_url() -> AsyncIterator[str]:
    runner, url = await serve(None)
    yield url
    await runner.cleanup()


async def test_a_service_that_speaks_the_protocol_conforms(good_url: str) -> None:
    report = await check_service(good_url, settle_s=2)
    assert report.findings == ()
    assert report.exchanges >= 20  # every probe ran and every answer was validated


@pytest.mark.parametrize(("broken", "endpoint", "words"), [
    ("lose-appends", "POST /v1/ops f=txn", "not [1, 2]"),
    ("lose-memory", "POST /v1/ops f=txn", "wrote 7"),
    ("revive-rules", "POST /v1/ops f=add-rule", "never comes back"),
    ("fingerprint-wrong", "GET /v1/instances/{instance}/fingerprint", "differs"),
    ("fingerprint-static", "POST /v1/ops f=probe", "fingerprint stayed"),
    ("accept-bad-request", "POST /v1/ops (malformed request)", "HTTP 400"),
    ("extra-field", "POST /v1/ops f=txn", "surprise"),
    ("health-500", "GET /v1/health", "HTTP 500"),
])
async def test_a_wrong_service_is_rejected_naming_the_endpoint(
        broken: str, endpoint: str, words: str) -> None:
    runner, url = await serve(broken)
    try:
        report = await check_service(url, settle_s=2)
    finally:
        await runner.cleanup()
    assert not report.ok
    first = report.findings[0]
    assert first.endpoint == endpoint, report.findings
    assert words in first.problem, first.problem


async def test_conform_command_exits_1_naming_the_endpoint() -> None:
    runner, url = await serve("lose-memory")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "selfhood", "replica", "conform", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    finally:
        await runner.cleanup()
    assert proc.returncode == 1, (out, err)
    text = err.decode()
    assert "does not speak the replica API" in text
    assert "POST /v1/ops f=txn: wrote 7" in text
    assert "Traceback" not in text


async def test_conform_command_on_a_closed_port_names_the_endpoint() -> None:
    runner, url = await serve(None)
    await runner.cleanup()  # nothing listens there any more
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "selfhood", "replica", "conform", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert "GET /v1/health: cannot connect" in err.decode()
