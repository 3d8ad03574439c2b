"""`selfhood project`, `selfhood instance show|list`, `selfhood projections rebuild`.

A source is either a log (``kafka://...``, ``sqlite:///log.db``) or a
projection database (``postgresql://...``, ``sqlite:///proj.db``). A plain
``sqlite:///`` file is told apart by its tables, so both kinds of SQLite URL
can be typed the same way.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Literal

import click

from selfhood.errors import LogUrlError, NotALog, ProjectionError, StoreUrlError
from selfhood.eventlog.base import EventLog, scan
from selfhood.eventlog.sqlite import read_only_uri
from selfhood.eventlog.url import open_log, parse_log_url
from selfhood.projections.projector import Progress, Projector, replay_log
from selfhood.projections.snapshot import SnapshotPolicy
from selfhood.projections.state import InstanceState, Mode, fingerprint
from selfhood.projections.store import SqlProjectionStore, async_db_url, is_db_url

MODE_OPTION = click.option("--mode", type=click.Choice(["sequential", "eventual"]),
                           default=None, help="Reducer: sequential (default) or eventual.")


def source_kind(url: str, what: str = "--from") -> Literal["log", "db"]:
    """Is `url` (given as `what`) an event log or a projection database?"""
    if url.startswith("kafka://"):
        return "log"
    if is_db_url(url):
        return "db"
    if url.startswith("sqlite:///"):
        path = Path(url.split("?", 1)[0][len("sqlite:///"):])
        if not path.exists():
            raise click.BadParameter(f"{url}: no such file {path}", param_hint=what)
        try:
            conn = sqlite3.connect(read_only_uri(path)[0], uri=True)  # writes nothing
            try:
                names = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                conn.close()
        except sqlite3.Error as exc:  # malformed input (exit 65), like the log commands'
            raise NotALog(f"{what} {url}: not a SQLite database ({exc})") from None
        if "projection_meta" in names:
            return "db"
        if "records" in names:
            return "log"
        raise NotALog(f"{what} {url}: neither an event log nor a projection")
    raise click.BadParameter(f"{url}: use kafka://host:port/topic, sqlite:///path or "
                             f"postgresql://user@host:port/db", param_hint="--from")


def _check_log_url(url: str, hint: str) -> None:
    try:
        parsed = parse_log_url(url)
    except LogUrlError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if parsed.scheme == "sqlite" and not Path(parsed.path).exists():
        raise click.BadParameter(f"{url}: no such log file {parsed.path}", param_hint=hint)
    if parsed.scheme == "sqlite" and source_kind(url, hint) != "log":
        raise click.BadParameter(f"{url} is a projection database, not an event log",
                                 param_hint=hint)


def _check_db_url(url: str, hint: str, log_url: str) -> None:
    """A projection database URL that is neither the log's own file nor another log."""
    try:
        async_db_url(url)
    except StoreUrlError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    db, log = _sqlite_file(url), _sqlite_file(log_url)
    if db is None:
        return
    if log is not None and db.exists() and log.exists() and db.samefile(log):
        raise click.BadParameter(f"{url} is the log's own file; project into another database",
                                 param_hint=hint)
    if db.exists() and source_kind(url, hint) == "log":
        raise click.BadParameter(f"{url} is an event log, not a projection database",
                                 param_hint=hint)


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.split("?", 1)[0][len("sqlite:///"):])


class _Reporter:
    """Progress on stderr: a rewritten line on a terminal, a line a second otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not self.tty and now - self.last < 1.0:
            return
        self.last = now
        line = (f"projected {p.events} records ({p.rate():,.0f}/s), applied {p.applied}, "
                f"rejected {p.rejected}, dead letters {p.dead_letters}, lag {p.lag}")
        click.echo(("\r" + line) if self.tty else line, err=True, nl=not self.tty)

    def done(self) -> None:
        if self.tty and not self.quiet and self.last:
            click.echo("", err=True)


async def _project(log_url: str, db_url: str, mode: Mode, follow: bool, batch: int,
                   snapshot_every: int, reader: str, fencing: bool, quiet: bool,
                   rebuild: bool = False) -> tuple[Progress, int]:
    rep = _Reporter(quiet)
    if rebuild:
        await SqlProjectionStore(db_url).drop_database_tables()
    async with open_log(log_url, create=False) as log, SqlProjectionStore(db_url) as store:
        proj = Projector(log, store, reader=reader, mode=mode, fencing=fencing,
                         snapshots=SnapshotPolicy(snapshot_every), batch=batch)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if follow else ()
        for sig in signals:  # --follow ends at a batch boundary, cleanly
            loop.add_signal_handler(sig, stop.set)
        try:
            prog = await proj.run(follow=follow, on_progress=rep, stop=stop)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            rep.done()
        return prog, len(proj.states)


def _summary(prog: Progress, n_instances: int, into: str) -> str:
    return (f"projected {prog.events} records into {into}: applied {prog.applied}, "
            f"rejected {prog.rejected}, duplicates {prog.duplicates}, dead letters "
            f"{prog.dead_letters}; {n_instances} instances "
            f"(rehydrated {prog.rehydrated_instances}, replayed {prog.replayed_on_start} "
            f"on start); {prog.rate():,.0f} records/s")


@click.command("project")
@click.argument("log_url")
@click.option("--into", "db_url", required=True, help="Projection database URL.")
@MODE_OPTION
@click.option("--follow", is_flag=True, help="Keep projecting new events until interrupted.")
@click.option("--batch", default=2000, show_default=True, type=click.IntRange(1, 100_000),
              help="Records per transaction.")
@click.option("--snapshot-every", default=1000, show_default=True, type=click.IntRange(0),
              help="Snapshot an instance every N applied events (0: only at catch-up).")
@click.option("--reader", default="projector", show_default=True,
              help="Tracking name (several projectors may share one database).")
@click.option("--no-fencing", is_flag=True, help="Sequential mode without epoch fencing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def project(log_url: str, db_url: str, mode: str | None, follow: bool, batch: int,
            snapshot_every: int, reader: str, no_fencing: bool, quiet: bool) -> None:
    """Project LOG_URL into the database --into, exactly once, resuming where it stopped."""
    _check_log_url(log_url, "LOG_URL")
    _check_db_url(db_url, "--into", log_url)
    m: Mode = "eventual" if mode == "eventual" else "sequential"
    prog, n = asyncio.run(_project(log_url, db_url, m, follow, batch, snapshot_every, reader,
                                   not no_fencing, quiet))
    click.echo(_summary(prog, n, db_url))


async def replay_instance(log: EventLog, instance_id: str, mode: Mode,
                          fencing: bool = True) -> InstanceState:
    """Full replay of one instance from the log (no database involved)."""
    states = await replay_log(log, instance_id=instance_id, mode=mode, fencing=fencing)
    return states.get(instance_id) or InstanceState.empty(instance_id)


async def _log_instance_ids(log: EventLog) -> list[str]:
    ids: set[str] = set()
    for part in await log.partitions():
        async for entry in scan(log, part):
            if entry.event is not None:
                ids.add(entry.event.instance_id)
    return sorted(ids)


async def _show(instance_id: str, src: str, mode: str | None) -> dict[str, Any]:
    if source_kind(src) == "log":
        m: Mode = "eventual" if mode == "eventual" else "sequential"
        async with open_log(src, create=False) as log:
            st = await replay_instance(log, instance_id, m)
        if st.version == 0 and not st.seen:
            raise ProjectionError(f"no events for instance {instance_id!r} in {src}")
        out = st.summary()
        out["mode"] = m
        out["source"] = "log"
        return out
    async with SqlProjectionStore(src) as store:
        stored_mode = await store.mode()
        if mode is not None and stored_mode is not None and mode != stored_mode:
            raise ProjectionError(f"{src} holds a {stored_mode} projection, not {mode}")
        got = await store.load_instance(instance_id)
    if got is None:
        raise ProjectionError(f"no instance {instance_id!r} in projection {src}")
    st, stored_fp = got
    out = st.summary()
    out["mode"] = stored_mode
    out["source"] = "projection"
    out["stored_fingerprint"] = stored_fp
    return out


@click.group("instance")
def instance() -> None:
    """Look at instances, rebuilt from a log or read from a projection."""


@instance.command("show")
@click.argument("instance_id")
@click.option("--from", "src", required=True, help="LOG_URL or DB_URL.")
@MODE_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def show(instance_id: str, src: str, mode: str | None, as_json: bool) -> None:
    """Print INSTANCE_ID's state and fingerprint (a log replay and a projection agree)."""
    out = asyncio.run(_show(instance_id, src, mode))
    if out.get("stored_fingerprint") not in (None, out["fingerprint"]):
        click.echo(f"warning: rows give fingerprint {out['fingerprint']} but the projector "
                   f"recorded {out['stored_fingerprint']}", err=True)
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
        return
    click.echo(f"instance     {out['instance_id']}")
    click.echo(f"fingerprint  {out['fingerprint']}")
    click.echo(f"version      {out['version']}  ({out['mode']}, from {out['source']})")
    click.echo(f"owner        {out['owner']} (epoch {out['epoch']})")
    click.echo(f"transcript   {len(out['transcript'])} turns")
    for turn in out["transcript"][-5:]:
        click.echo(f"  {turn['role']:>9}: {turn['content'][:100]}")
    click.echo(f"case bank    {len(out['case_bank'])} cases")
    for module, recs in out["memory"].items():
        click.echo(f"{module:<12} {len(recs)} records")
    click.echo(f"rules        {len(out['rules'])} active, {len(out['revoked'])} revoked")
    for rid, text in list(out["rules"].items())[:10]:
        click.echo(f"  {rid}: {text[:100]}")
    if out["rejected"]:
        click.echo(f"rejected     {len(out['rejected'])} events")


async def _list(src: str) -> list[str]:
    if source_kind(src) == "log":
        async with open_log(src, create=False) as log:
            return await _log_instance_ids(log)
    async with SqlProjectionStore(src) as store:
        return await store.instance_ids()


@instance.command("list")
@click.option("--from", "src", required=True, help="LOG_URL or DB_URL.")
def list_(src: str) -> None:
    """Print the instance ids, one per line."""
    for iid in asyncio.run(_list(src)):
        click.echo(iid)


@click.group("projections")
def projections() -> None:
    """Manage projection databases."""


@projections.command("rebuild")
@click.argument("db_url")
@click.option("--from", "log_url", required=True, help="LOG_URL to project from.")
@MODE_OPTION
@click.option("--batch", default=2000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--snapshot-every", default=1000, show_default=True, type=click.IntRange(0))
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def rebuild(db_url: str, log_url: str, mode: str | None, batch: int, snapshot_every: int,
            quiet: bool) -> None:
    """Drop every projection table in DB_URL and project --from LOG_URL again."""
    _check_log_url(log_url, "--from")
    _check_db_url(db_url, "DB_URL", log_url)
    m: Mode = "eventual" if mode == "eventual" else "sequential"
    prog, n = asyncio.run(_project(log_url, db_url, m, False, batch, snapshot_every,
                                   "projector", True, quiet, rebuild=True))
    click.echo(_summary(prog, n, db_url))


__all__ = ["fingerprint", "instance", "project", "projections", "replay_instance"]
