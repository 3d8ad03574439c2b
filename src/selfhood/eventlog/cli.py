"""`selfhood log stat | tail | bench LOG_URL`: look at and measure any log.

The bench appends a realistic mix (turns, memory writes, rule changes) from
several concurrent writers, reads everything back and verifies that every
acknowledged event came back exactly once, at the position its append
returned, in the order it was appended per instance. `order_verified` is
that check, not a timing artefact.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from selfhood.errors import LogError, LogTimeout, LogUnavailable, LogUrlError
from selfhood.eventlog.base import LogEntry, LogPosition, scan
from selfhood.eventlog.url import open_log, parse_log_url
from selfhood.events import (
    Case,
    Event,
    Hlc,
    MemoryWritten,
    Payload,
    RuleAdded,
    RuleRevoked,
    TurnAppended,
    make_event,
    seeded_event_ids,
    to_builtins,
)

if TYPE_CHECKING:
    from selfhood.eventlog.kafka import KafkaEventLog
    from selfhood.eventlog.sqlite import SqliteEventLog


def _open(url: str, *, must_exist: bool) -> SqliteEventLog | KafkaEventLog:
    """The adapter for a CLI argument; read-only commands never create a log."""
    try:
        parse_log_url(url)
    except LogUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="LOG_URL") from None
    return open_log(url, create=not must_exist)


@click.group("log")
def log() -> None:
    """Inspect and benchmark an event log (sqlite:///path/log.db or kafka://host:port/topic)."""


# ---------------------------------------------------------------------------
# stat


async def _stat(url: str) -> dict[str, Any]:
    async with _open(url, must_exist=True) as lg:
        ends = await lg.end_offsets()
        starts: dict[int, int] = {}
        if hasattr(lg, "beginning_offsets"):
            starts = await lg.beginning_offsets()
        parts = await lg.partitions()
    count = sum(ends[p] - starts.get(p, 0) for p in parts)
    return {
        "log": url,
        "partitions": len(parts),
        "end_offsets": {str(p): ends[p] for p in parts},
        "start_offsets": {str(p): starts.get(p, 0) for p in parts},
        "events": count,
    }


@log.command("stat")
@click.argument("log_url")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stat(log_url: str, as_json: bool) -> None:
    """Partitions, end offsets and the event count (records stored, dead letters included)."""
    info = asyncio.run(_stat(log_url))
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    click.echo(f"log         {info['log']}")
    click.echo(f"partitions  {info['partitions']}")
    click.echo(f"events      {info['events']}")
    for p, end in info["end_offsets"].items():
        click.echo(f"  partition {p:>3}  start {info['start_offsets'][p]:>10}  end {end:>10}")


# ---------------------------------------------------------------------------
# tail


def entry_json(entry: LogEntry) -> dict[str, Any]:
    """One JSON line per record; a record that does not decode becomes a dead letter."""
    pos = entry.position
    if entry.event is not None:
        return {"partition": pos.partition, "offset": pos.offset,
                "event": to_builtins(entry.event)}
    return {"partition": pos.partition, "offset": pos.offset, "dead_letter": True,
            "error": str(entry.error), "raw_b64": base64.b64encode(entry.raw).decode("ascii")}


async def _tail(url: str, instance: str | None, from_offset: int, limit: int | None,
                follow: bool, emit: Callable[[str], None]) -> int:
    printed = 0
    async with _open(url, must_exist=True) as lg:
        parts = await lg.partitions()
        if instance is not None:
            parts = [lg.partition_of(instance)]
        next_off = {p: from_offset for p in parts}
        while True:
            for p in parts:
                async for entry in scan(lg, p, next_off[p], batch=2000, timeout_s=0.5):
                    next_off[p] = entry.position.offset + 1
                    if (instance is not None and entry.event is not None
                            and entry.event.instance_id != instance):
                        continue
                    emit(json.dumps(entry_json(entry), sort_keys=True))
                    printed += 1
                    if limit is not None and printed >= limit:
                        return printed
            if not follow:
                return printed
            await asyncio.sleep(0.2)


@log.command("tail")
@click.argument("log_url")
@click.option("--instance", default=None, help="Only this instance's events (and its "
              "partition's dead letters).")
@click.option("--from", "from_offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start at this offset in each partition read.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after N lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events.")
def tail(log_url: str, instance: str | None, from_offset: int, limit: int | None,
         follow: bool) -> None:
    """Print events as JSON lines; undecodable records print as dead-letter lines."""
    def emit(line: str) -> None:
        click.echo(line)

    try:
        asyncio.run(_tail(log_url, instance, from_offset, limit, follow, emit))
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------
# bench


def bench_payload(rng: random.Random, n: int, live_rules: list[str]) -> Payload:
    """A realistic mix: 60% turns, 30% memory writes, 10% rule changes."""
    r = rng.random()
    if r < 0.6:
        role = "user" if n % 2 == 0 else "assistant"
        words = rng.randint(8, 40)
        return TurnAppended(role, " ".join(f"w{rng.randint(0, 999)}" for _ in range(words)))
    if r < 0.9:
        m = rng.random()
        if m < 0.4:
            return MemoryWritten("case_bank", f"case-{n}",
                                 case=Case(f"situation {n}", f"plan {rng.randint(0, 99)}",
                                           round(rng.random(), 3)))
        if m < 0.7:
            return MemoryWritten("subtask", f"k{rng.randint(0, 20)}", value=f"v{n}")
        return MemoryWritten("tool", f"tool-{rng.randint(0, 20)}", value=f"result {n}")
    if live_rules and rng.random() < 0.3:
        return RuleRevoked(live_rules.pop(rng.randrange(len(live_rules))), reason="bench")
    rule_id = f"rule-{n}"
    live_rules.append(rule_id)
    return RuleAdded(rule_id, f"never do thing {n}")


def bench_events(n_events: int, n_instances: int, seed: int) -> list[Event]:
    """Deterministic event mix; the hlc logical counter is the per-instance sequence."""
    rng = random.Random(seed)
    seq = [0] * n_instances
    rules: list[list[str]] = [[] for _ in range(n_instances)]
    out: list[Event] = []
    new_id = seeded_event_ids(f"bench/{seed}")  # the same seed, the same ids
    for n in range(n_events):
        i = rng.randrange(n_instances)
        out.append(make_event(f"bench-{seed}-{i}", bench_payload(rng, n, rules[i]),
                              writer=f"bench-{i % 4}", hlc=Hlc(seq[i], 0),
                              event_id=new_id()))
        seq[i] += 1
    return out


class _Progress:
    def __init__(self, enabled: bool, what: str, total: int) -> None:
        self.enabled, self.what, self.total = enabled, what, total
        self.done = 0
        self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= 1.0:
            self.last = now
            click.echo(f"{self.what} {self.done}/{self.total}", err=True)


async def run_bench(url: str, n_events: int, n_instances: int, *, batch: int = 500,
                    writers: int = 4, seed: int | None = None, retries: int = 5,
                    progress: bool = False,
                    log: SqliteEventLog | KafkaEventLog | None = None) -> dict[str, Any]:
    """Append, read back, verify. Returns the figures `log bench --json` prints.

    `log` (unstarted) overrides the adapter `url` would open, for tuned benchmarks.
    """
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 62)
    events = bench_events(n_events, n_instances, seed)
    by_writer: list[list[Event]] = [[] for _ in range(writers)]
    for e in events:
        by_writer[int(e.instance_id.rsplit("-", 1)[1]) % writers].append(e)
    acked: dict[str, LogPosition] = {}
    retried = 0
    prog = _Progress(progress, "append", n_events)

    async with log if log is not None else _open(url, must_exist=False) as lg:
        parts = await lg.partitions()
        starts = dict(await lg.end_offsets())

        async def writer(mine: list[Event]) -> None:
            nonlocal retried
            for i in range(0, len(mine), batch):
                chunk = mine[i:i + batch]
                for attempt in range(retries + 1):
                    try:
                        positions = await lg.append_batch(chunk)
                        break
                    except (LogTimeout, LogUnavailable) as exc:
                        if attempt == retries:
                            raise
                        retried += 1
                        if progress:
                            click.echo(f"append retry {attempt + 1}: {exc}", err=True)
                        await asyncio.sleep(0.5)
                for e, pos in zip(chunk, positions, strict=True):
                    acked[e.event_id] = pos
                prog.add(len(chunk))

        t0, c0 = time.perf_counter(), time.process_time()
        async with asyncio.TaskGroup() as tg:
            for mine in by_writer:
                if mine:
                    tg.create_task(writer(mine))
        append_s, append_cpu_s = time.perf_counter() - t0, time.process_time() - c0

        ends = await lg.end_offsets()
        # An id already in the log (a repeated seed, or a same-seed writer that got there
        # first) is acknowledged at its original position, before `starts`: read from there.
        for pos in acked.values():
            if pos.offset < starts.get(pos.partition, 0):
                starts[pos.partition] = pos.offset
        rprog = _Progress(progress, "read", sum(ends[p] - starts.get(p, 0) for p in parts))
        entries: list[LogEntry] = []
        t1, c1 = time.perf_counter(), time.process_time()
        for p in parts:
            async for entry in scan(lg, p, starts.get(p, 0), until=ends[p], batch=10_000):
                entries.append(entry)
                if len(entries) % 10_000 == 0:
                    rprog.add(10_000)
        read_s, read_cpu_s = time.perf_counter() - t1, time.process_time() - c1

    seen: dict[str, list[LogPosition]] = {}
    per_instance: dict[str, list[int]] = {}
    foreign = dead = 0
    for entry in entries:
        ev = entry.event
        if ev is None:
            dead += 1
            continue
        if ev.event_id not in acked:
            foreign += 1
            continue
        seen.setdefault(ev.event_id, []).append(entry.position)
        per_instance.setdefault(ev.instance_id, []).append(ev.hlc.wall)

    read_back = sum(len(v) for v in seen.values())
    missing = sum(1 for eid in acked if eid not in seen)
    duplicates = sum(len(v) - 1 for v in seen.values() if len(v) > 1)
    misplaced = sum(1 for eid, pos in acked.items() if eid in seen and seen[eid][0] != pos)
    out_of_order = sum(1 for seqs in per_instance.values()
                       for a, b in itertools.pairwise(seqs) if b <= a)
    expected = {e.instance_id for e in events}
    complete = all(len(seqs) == len(set(seqs)) and seqs == list(range(len(seqs)))
                   for seqs in per_instance.values()) and set(per_instance) == expected
    verified = (len(acked) == n_events and missing == 0 and duplicates == 0
                and misplaced == 0 and out_of_order == 0 and complete)
    return {
        "log": url,
        "events": n_events,
        "instances": n_instances,
        "partitions": len(parts),
        "acked": len(acked),
        "read_back": read_back,
        "missing": missing,
        "duplicates": duplicates,
        "misplaced": misplaced,
        "out_of_order": out_of_order,
        "other_records": foreign,
        "dead_letters": dead,
        "append_retries": retried,
        "append_s": round(append_s, 4),
        "read_s": round(read_s, 4),
        "append_eps": round(n_events / append_s, 1) if append_s > 0 else 0.0,
        "read_eps": round(len(entries) / read_s, 1) if read_s > 0 else 0.0,
        # CPU seconds of this process: figures that hold up on a loaded machine
        "append_cpu_s": round(append_cpu_s, 4),
        "read_cpu_s": round(read_cpu_s, 4),
        "read_cpu_eps": round(len(entries) / read_cpu_s, 1) if read_cpu_s > 0 else 0.0,
        "order_verified": verified,
        "seed": seed,
    }


@log.command("bench")
@click.argument("log_url")
@click.option("--events", "n_events", type=click.IntRange(min=1), default=100_000,
              show_default=True, help="How many events to append.")
@click.option("--instances", "n_instances", type=click.IntRange(min=1), default=100,
              show_default=True, help="Spread over this many instances.")
@click.option("--batch", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Events per append_batch call.")
@click.option("--writers", type=click.IntRange(min=1), default=8, show_default=True,
              help="Concurrent writer tasks (each owns a disjoint set of instances).")
@click.option("--seed", type=int, default=None, help="Seed for the event mix and ids.")
@click.option("--progress/--no-progress", default=None,
              help="Progress lines on stderr (default: on for a terminal or >= 50000 events).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(log_url: str, n_events: int, n_instances: int, batch: int, writers: int,
          seed: int | None, progress: bool | None, as_json: bool) -> None:
    """Append a realistic event mix, read it all back, verify count and order, print eps."""
    _open(log_url, must_exist=False)  # validate the URL before doing any work
    result = asyncio.run(run_bench(log_url, n_events, n_instances, batch=batch,
                                   writers=min(writers, n_instances), seed=seed,
                                   progress=progress if progress is not None else
                                   sys.stderr.isatty() or n_events >= 50_000))
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"log             {result['log']}")
        click.echo(f"events          {result['events']} over {result['instances']} instances")
        click.echo(f"append          {result['append_eps']:.0f} events/s")
        click.echo(f"read            {result['read_eps']:.0f} events/s")
        click.echo(f"order verified  {result['order_verified']}"
                   f" (missing {result['missing']}, duplicates {result['duplicates']},"
                   f" out of order {result['out_of_order']})")
    if not result["order_verified"]:
        raise LogError("bench: events did not come back exactly once and in order")
