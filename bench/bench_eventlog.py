"""Event-log throughput: our adapters beside a reference measured in the same run.

Kafka (needs `selfhood cluster up --brokers 3`): append and read throughput of
KafkaEventLog against Kafka's own Java tools, ProducerPerformance and
ConsumerPerformance (org.apache.kafka.tools, from the cluster's jar cache), on
the same cluster, each on a fresh topic with 8 partitions, RF 3,
min.insync.replicas 2, acks=all on both sides, and the Java record size set
to the median encoded size of our event mix, and the same batch limit
(256 KiB, our default; Java's own default of 16 KiB is slower here). Our side is `log bench`'s run:
a realistic mix, several writer tasks, every event verified back in order
(verification is not timed). Reps alternate Java and ours so load drift on
the machine hits both alike; medians are printed with the ratio ours / Java.

Embedded: SqliteEventLog append and read (decode included) against raw
sqlite3 inserting/selecting the same bytes in one transaction (the floor the
adapter's bookkeeping, group commit and decoding sit on).

Medians are printed with the spread (min..max over the reps): on a shared box the
Java tool's own figure moves a lot from run to run.

Kafka end offsets (what a replica's poll loop and the linearizable read barrier
ask): latency of `KafkaEventLog.end_offsets()`, which has a client of its own,
beside the same ListOffsets query sent on the reader's connection (where it used
to go), alternated call by call on one open log whose reader is idle at the tail:
there the broker answers it only after the reader's 100 ms fetch long-poll.

    python bench/bench_eventlog.py [--events 100000] [--reps 5] [--no-kafka | --no-embedded]
                                   [--offset-calls 200] [--json out]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from selfhood.chaos.cluster import ENV_STATE_DIR, ClusterManager, kafka_classpath
from selfhood.eventlog.cli import bench_events, run_bench
from selfhood.eventlog.kafka import KafkaEventLog, delete_topic
from selfhood.eventlog.partitioning import partition_for
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.events import encode

REPO = Path(__file__).resolve().parents[1]
#: Both producers get the same per-partition batch limit (KafkaEventLog's default).
BATCH_BYTES = 256 * 1024


def spread(xs: list[float], digits: int = 0) -> str:
    """min..max of the reps, for the printed table and the JSON."""
    return f"{min(xs):.{digits}f}..{max(xs):.{digits}f}"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median_record_size(n: int = 20_000) -> int:
    return int(statistics.median(len(encode(e)) for e in bench_events(n, 100, 1)))


# --- Kafka -------------------------------------------------------------------------


async def cluster_bootstrap() -> str:
    state = Path(os.environ.get(ENV_STATE_DIR, REPO / ".selfhood"))
    status = (await ClusterManager(state).status()).to_json()
    if not status.get("healthy"):
        raise SystemExit(f"no healthy cluster in {state}; run `selfhood cluster up --brokers 3`")
    return str(status["bootstrap"])


async def fresh_topic(bootstrap: str, tag: str) -> str:
    """Create a topic exactly as the adapter does (8 partitions, RF 3, min ISR 2)."""
    topic = f"perf-{tag}-{uuid.uuid4().hex[:10]}"
    async with KafkaEventLog(bootstrap, topic) as log:
        assert log.partition_count == 8
    return topic


def java(classpath: str, main: str, *args: str) -> str:
    proc = subprocess.run(["java", "-Xmx512m", "-cp", classpath, main, *args],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{main} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def java_produce(classpath: str, bootstrap: str, topic: str, n: int, size: int) -> float:
    out = java(classpath, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
               "--num-records", str(n), "--record-size", str(size), "--throughput", "-1",
               "--producer-props", "acks=all", "enable.idempotence=true",
               f"batch.size={BATCH_BYTES}", f"bootstrap.servers={bootstrap}")
    last = [ln for ln in out.splitlines() if "records sent" in ln][-1]
    m = re.search(r"records sent, ([\d.]+) records/sec", last)
    assert m is not None, last
    return float(m.group(1))


def java_consume(classpath: str, bootstrap: str, topic: str, n: int) -> float:
    """Records/s while fetching (ConsumerPerformance's fetch.nMsg.sec: group join excluded)."""
    out = java(classpath, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
               bootstrap, "--topic", topic, "--num-records", str(n), "--timeout", "120000")
    rows = [ln for ln in out.splitlines() if ln and ln[0].isdigit()]
    fields = [f.strip() for f in rows[-1].split(",")]
    consumed = int(fields[4])
    if consumed < n:
        raise SystemExit(f"ConsumerPerformance read only {consumed} of {n} records")
    return float(fields[9])


async def ours(bootstrap: str, n: int) -> dict[str, Any]:
    topic = f"perf-ours-{uuid.uuid4().hex[:10]}"
    result = await run_bench(f"kafka://{bootstrap}/{topic}", n, 100, batch=2000, writers=8,
                             seed=1, log=KafkaEventLog(bootstrap, topic))
    if not result["order_verified"]:
        raise SystemExit(f"our Kafka run did not verify: {result}")
    return result


async def bench_kafka(n: int, reps: int) -> dict[str, Any]:
    bootstrap = await cluster_bootstrap()
    classpath = await kafka_classpath()
    size = median_record_size()
    say(f"kafka: {bootstrap}, {n} records/rep, record size {size} B, {reps} reps")
    j_app, j_read, o_app, o_read = [], [], [], []
    for rep in range(reps):
        topic = await fresh_topic(bootstrap, "java")
        j_app.append(await asyncio.to_thread(java_produce, classpath, bootstrap, topic, n, size))
        j_read.append(await asyncio.to_thread(java_consume, classpath, bootstrap, topic, n))
        r = await ours(bootstrap, n)
        o_app.append(r["append_eps"])
        o_read.append(r["read_eps"])
        say(f"  rep {rep + 1}: java append {j_app[-1]:.0f}/s read {j_read[-1]:.0f}/s | "
            f"ours append {o_app[-1]:.0f}/s read {o_read[-1]:.0f}/s")
    med = statistics.median
    return {
        "records": n, "record_size": size, "reps": reps, "brokers": 3, "acks": "all",
        "java_append_eps": med(j_app), "java_read_eps": med(j_read),
        "ours_append_eps": med(o_app), "ours_read_eps": med(o_read),
        "append_ratio": med(o_app) / med(j_app), "read_ratio": med(o_read) / med(j_read),
        "samples": {"java_append": j_app, "java_read": j_read,
                    "ours_append": o_app, "ours_read": o_read},
        "spread": {
            "java_append": spread(j_app), "java_read": spread(j_read),
            "ours_append": spread(o_app), "ours_read": spread(o_read),
            # per rep: ours / Java of the same rep (side by side, same load)
            "append_ratio": spread([o / j for o, j in zip(o_app, j_app, strict=True)], 2),
            "read_ratio": spread([o / j for o, j in zip(o_read, j_read, strict=True)], 2),
        },
    }


async def bench_end_offsets(bootstrap: str, calls: int) -> dict[str, Any]:
    """Latency of end_offsets: own connection (now) vs the reader's connection (before)."""
    topic = f"perf-ends-{uuid.uuid4().hex[:10]}"
    say(f"kafka end offsets: {calls} calls each way")
    own: list[float] = []
    reader: list[float] = []
    async with KafkaEventLog(bootstrap, topic) as log:
        await log.append_batch(bench_events(100, 10, 1))
        tps = list(log._tps.values())
        await log._consumer.end_offsets(tps)  # warm both connections
        want = await log.end_offsets()
        for _ in range(calls):
            t0 = time.perf_counter()
            got = await log.end_offsets()
            own.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            old = await log._consumer.end_offsets(tps)
            reader.append(time.perf_counter() - t0)
            if got != want or {tp.partition: int(o) for tp, o in old.items()} != want:
                raise SystemExit(f"end offsets moved on an idle topic: {got} {old} {want}")
    await delete_topic(bootstrap, topic)
    med = statistics.median
    q = statistics.quantiles
    return {
        "calls": calls,
        "own_ms": med(own) * 1000, "reader_ms": med(reader) * 1000,
        "own_p90_ms": q(own, n=10)[-1] * 1000, "reader_p90_ms": q(reader, n=10)[-1] * 1000,
        "speedup": med(reader) / med(own),
        "spread": {"own_ms": spread([x * 1000 for x in own], 1),
                   "reader_ms": spread([x * 1000 for x in reader], 1)},
    }


# --- embedded -------------------------------------------------------------------------


def raw_sqlite(path: Path, records: list[tuple[int, int, str, str, bytes]]) -> tuple[float, float]:
    """The floor: one executemany in one transaction, then one SELECT of every row."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE records (part INTEGER NOT NULL, off INTEGER NOT NULL,"
                 " event_id TEXT, instance_id TEXT NOT NULL, data BLOB NOT NULL,"
                 " PRIMARY KEY (part, off)) WITHOUT ROWID")
    conn.execute("CREATE UNIQUE INDEX records_event_id ON records (event_id)")
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", records)
    conn.execute("COMMIT")
    append = len(records) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    got = 0
    for p in range(8):
        got += len(conn.execute("SELECT off, data FROM records WHERE part = ? ORDER BY off",
                                (p,)).fetchall())
    read = got / (time.perf_counter() - t0)
    conn.close()
    return append, read


async def bench_sqlite(n: int, reps: int) -> dict[str, Any]:
    say(f"embedded: {n} events/rep, {reps} reps")
    evs = bench_events(n, 100, 1)
    ends: dict[int, int] = {}
    records = []
    for e in evs:
        p = partition_for(e.instance_id, 8)
        off = ends.get(p, 0)
        ends[p] = off + 1
        records.append((p, off, e.event_id, e.instance_id, encode(e)))
    o_app, o_read, o_read_cpu, r_app, r_read = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            ra, rr = raw_sqlite(Path(tmp) / f"raw{rep}.db", records)
            r_app.append(ra)
            r_read.append(rr)
            path = Path(tmp) / f"log{rep}.db"
            res = await run_bench(f"sqlite:///{path}", n, 100, batch=2000, writers=4, seed=1,
                                  log=SqliteEventLog(path))
            if not res["order_verified"]:
                raise SystemExit(f"embedded run did not verify: {res}")
            o_app.append(res["append_eps"])
            o_read.append(res["read_eps"])
            o_read_cpu.append(res["read_cpu_eps"])
            say(f"  rep {rep + 1}: raw sqlite insert {ra:.0f}/s select {rr:.0f}/s | "
                f"SqliteEventLog append {o_app[-1]:.0f}/s read+decode {o_read[-1]:.0f}/s "
                f"({o_read_cpu[-1]:.0f} per CPU-second)")
    med = statistics.median
    return {
        "events": n, "reps": reps,
        "raw_insert_eps": med(r_app), "raw_select_eps": med(r_read),
        "ours_append_eps": med(o_app), "ours_read_eps": med(o_read),
        "ours_read_cpu_eps": med(o_read_cpu),
        "append_ratio": med(o_app) / med(r_app), "read_ratio": med(o_read) / med(r_read),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--offset-calls", type=int, default=200,
                    help="end_offsets calls each way (Kafka)")
    ap.add_argument("--no-kafka", action="store_true", help="only the embedded log")
    ap.add_argument("--no-embedded", action="store_true", help="only Kafka")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if args.no_kafka and args.no_embedded:
        ap.error("--no-kafka and --no-embedded leave nothing to measure")
    out: dict[str, Any] = {}
    if not args.no_embedded:
        out["embedded"] = asyncio.run(bench_sqlite(args.events, args.reps))
    if not args.no_kafka:
        out["kafka"] = asyncio.run(bench_kafka(args.events, args.reps))
        out["kafka_end_offsets"] = asyncio.run(
            bench_end_offsets(asyncio.run(cluster_bootstrap()), args.offset_calls))

    if "embedded" in out:
        e = out["embedded"]
        print(f"\nembedded SQLite log, {e['events']} events, median of {e['reps']}")
        print(f"  append  SqliteEventLog {e['ours_append_eps']:>10.0f}/s   raw sqlite3 "
              f"{e['raw_insert_eps']:>10.0f}/s   ratio {e['append_ratio']:.2f}")
        print(f"  read    SqliteEventLog {e['ours_read_eps']:>10.0f}/s   raw sqlite3 "
              f"{e['raw_select_eps']:>10.0f}/s   ratio {e['read_ratio']:.2f}  (ours decodes)")
        print(f"  replay  SqliteEventLog {e['ours_read_cpu_eps']:>10.0f} events per CPU-second "
              f"(holds on a loaded box; projections need >= 200000/s)")
    if "kafka" in out:
        k = out["kafka"]
        sp = k["spread"]
        print(f"\nKafka, 3 brokers, acks=all, {k['records']} records of {k['record_size']} B, "
              f"median of {k['reps']} (min..max)")
        print(f"  append  KafkaEventLog {k['ours_append_eps']:>8.0f}/s ({sp['ours_append']})  "
              f"ProducerPerformance {k['java_append_eps']:>8.0f}/s ({sp['java_append']})  "
              f"ratio {k['append_ratio']:.2f} ({sp['append_ratio']})")
        print(f"  read    KafkaEventLog {k['ours_read_eps']:>8.0f}/s ({sp['ours_read']})  "
              f"ConsumerPerformance {k['java_read_eps']:>8.0f}/s ({sp['java_read']})  "
              f"ratio {k['read_ratio']:.2f} ({sp['read_ratio']})")
    if "kafka_end_offsets" in out:
        o = out["kafka_end_offsets"]
        print(f"\nKafka end_offsets, {o['calls']} calls each way, median (p90; min..max)")
        print(f"  own connection   {o['own_ms']:>6.1f} ms ({o['own_p90_ms']:.1f}; "
              f"{o['spread']['own_ms']})")
        print(f"  reader's (before){o['reader_ms']:>6.1f} ms ({o['reader_p90_ms']:.1f}; "
              f"{o['spread']['reader_ms']})   speedup {o['speedup']:.1f}x")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
