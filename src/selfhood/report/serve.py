"""`selfhood serve [STORE]`: a local run browser (aiohttp), as Jepsen's `lein run serve`.

Lists every run and sweep in the store (name, time, spec summary, modes,
verdicts), opens each report, and puts any two side by side with their
numbers compared (means and Welch intervals, as `selfhood compare`). It
reads the store and never writes it: a run without report.html is
rendered in memory. Loopback by default; only files inside the store with
a report/data suffix are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from selfhood.errors import SelfhoodError

SERVED: Final = {".html": "text/html", ".md": "text/markdown", ".json": "application/json",
                 ".jsonl": "application/x-ndjson"}


@dataclass(slots=True)
class Entry:
    """One run or sweep directory of the store, as the index lists it."""

    key: str  # "<name>/<stamp>"
    name: str
    stamp: str
    kind: str  # run | sweep
    summary: str
    modes: dict[str, str]  # mode -> verdict text
    error: str | None = None


def _verdict(v: Any) -> str:
    return {True: "valid", False: "INVALID"}.get(v, "unknown") if isinstance(v, bool) \
        else "unknown"


def _summary(spec: dict[str, Any]) -> str:
    nem = ", ".join(spec.get("nemesis") or []) or "no faults"
    mem = ""
    if spec.get("sharded_memory"):
        mem = f", sharded memory ({'atomic' if spec.get('atomic_memory') else 'non-atomic'})"
    return (f"{spec.get('runtime', 'sim')}, {spec.get('replicas', '?')} replicas, "
            f"{spec.get('instances', '?')} instances, {spec.get('time_limit_s', '?')} s, "
            f"{nem}{mem}")


def scan(store: Path) -> list[Entry]:
    """Every run and sweep directory under STORE/<name>/<stamp>/, newest first."""
    from selfhood.report.sweep import aggregate, load_sample

    out: list[Entry] = []
    if not store.is_dir():
        return out
    for name_dir in sorted(p for p in store.iterdir() if p.is_dir() and not p.is_symlink()):
        for d in sorted((p for p in name_dir.iterdir() if p.is_dir()
                         and not p.name.startswith(".")), reverse=True):
            if not ((d / "results.json").is_file() or (d / "sweep.json").is_file()):
                continue
            key = f"{name_dir.name}/{d.name}"
            try:
                sample = load_sample(d)
            except SelfhoodError as exc:
                out.append(Entry(key, name_dir.name, d.name, "damaged", "", {}, str(exc)))
                continue
            if sample.sweep is not None:
                modes = {a.mode: f"{a.valid}/{a.runs} valid, same instance {a.same}/{a.runs}"
                         for a in aggregate(sample)}
                summary = f"sweep of {len(sample.runs)} seeds; " + _summary(sample.spec)
                kind = "sweep"
            else:
                r = sample.runs[0]
                modes = {m: _verdict(v.get("valid")) for m, v in r["modes"].items()}
                summary = f"seed {r.get('seed')}; " + _summary(sample.spec)
                kind = "run"
            out.append(Entry(key, name_dir.name, d.name, kind, summary, modes))
    out.sort(key=lambda e: e.stamp, reverse=True)
    return out


def _resolve(store: Path, key: str) -> Path:
    """A run directory named by `<name>/<stamp>`, confined to the store."""
    from aiohttp import web

    parts = key.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise web.HTTPNotFound(text=f"no run {key!r}")
    d = (store / parts[0] / parts[1]).resolve()
    if not d.is_relative_to(store.resolve()) or not d.is_dir():
        raise web.HTTPNotFound(text=f"no run {key!r}")
    return d


def make_app(store: Path) -> Any:
    """The aiohttp application for one store."""
    from aiohttp import web

    from selfhood.report.html import render_page, render_run_html
    from selfhood.report.results import load_run
    from selfhood.report.sweep import compare_rows, load_sample

    async def index(request: web.Request) -> web.Response:
        entries = await asyncio.to_thread(scan, store)
        html = render_page("browser.html.j2", title=f"selfhood runs in {store}",
                           store=str(store), entries=entries)
        return web.Response(text=html, content_type="text/html")

    async def file(request: web.Request) -> web.StreamResponse:
        key = f"{request.match_info['name']}/{request.match_info['stamp']}"
        d = _resolve(store, key)
        rel = request.match_info.get("path") or "report.html"
        target = (d / rel).resolve()
        if not target.is_relative_to(d) or target.suffix not in SERVED:
            raise web.HTTPNotFound(text=f"not served: {rel}")
        if target.is_file():
            return web.FileResponse(target, headers={"Content-Type": SERVED[target.suffix]})
        if target.name == "report.html" and target.parent.is_dir():
            try:  # a run stored without its HTML: render it in memory, write nothing
                if (target.parent / "sweep.json").is_file():
                    raise web.HTTPNotFound(text="sweep without report.html; run selfhood report")
                html = await asyncio.to_thread(
                    lambda: render_run_html(load_run(target.parent)))
            except SelfhoodError as exc:
                raise web.HTTPNotFound(text=str(exc)) from None
            return web.Response(text=html, content_type="text/html")
        raise web.HTTPNotFound(text=f"no {rel} in {key}")

    async def compare(request: web.Request) -> web.Response:
        a_key, b_key = request.query.get("a", ""), request.query.get("b", "")
        a_dir, b_dir = _resolve(store, a_key), _resolve(store, b_key)
        try:
            a, b = await asyncio.to_thread(lambda: (load_sample(a_dir), load_sample(b_dir)))
        except SelfhoodError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        html = render_page("compare.html.j2", title=f"compare {a_key} and {b_key}",
                           a_key=a_key, b_key=b_key, a=a, b=b, rows=compare_rows(a, b))
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/compare", compare)
    app.router.add_get("/run/{name}/{stamp}/", file)
    app.router.add_get("/run/{name}/{stamp}/{path:.+}", file)
    return app


async def serve_forever(store: Path, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; prints the URL once listening."""
    from aiohttp import web

    runner = web.AppRunner(make_app(store), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        click.echo(f"selfhood serve: http://{host}:{bound}/ (store {store}; Ctrl-C stops)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    finally:
        await runner.cleanup()


@click.command("serve")
@click.argument("store", default="store", required=False,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; the store is not secret-free).")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True,
              help="TCP port (0: any free port, printed on start).")
def serve(store: Path, host: str, port: int) -> None:
    """Browse the runs in STORE: each report one click away, any two side by side."""
    from selfhood.errors import SpecError

    if not store.is_dir():
        raise SpecError(f"argument STORE: {store} is not a directory")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_forever(store, host, port))
    except OSError as exc:
        raise SpecError(f"option --host/--port: cannot listen on {host}:{port}: "
                        f"{exc.strerror or exc}") from None
