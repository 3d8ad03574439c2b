"""`selfhood log stat | tail | bench` end to end, on the embedded log and on real Kafka."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventlog_contract import turn
from selfhood.cli import EX_DATAERR, EX_USAGE, main
from selfhood.eventlog.sqlite import SqliteEventLog

BENCH_KEYS = {"events", "append_eps", "read_eps", "order_verified"}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def benched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Any]]:
    url = f"sqlite:///{tmp_path}/log.db"
    code, out, err = run_cli(["log", "bench", url, "--events", "3000", "--instances", "12",
                              "--seed", "5", "--json"], capsys)
    assert code == 0, err
    return url, json.loads(out)


def test_bench_json_verifies_order(benched: tuple[str, dict[str, Any]]) -> None:
    _url, result = benched
    assert BENCH_KEYS <= set(result)
    assert result["events"] == result["acked"] == result["read_back"] == 3000
    assert result["order_verified"] is True
    assert result["missing"] == result["duplicates"] == result["out_of_order"] == 0
    assert result["append_eps"] > 0 and result["read_eps"] > 0


def test_bench_mix_is_realistic(benched: tuple[str, dict[str, Any]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = benched
    code, out, _err = run_cli(["log", "tail", url], capsys)
    assert code == 0
    kinds = [line["event"]["kind"] for line in lines(out)]
    assert len(kinds) == 3000
    for kind in ("turn_appended", "memory_written", "rule_added", "rule_revoked"):
        assert kinds.count(kind) > 30, kind
    assert kinds.count("turn_appended") > kinds.count("memory_written") > kinds.count(
        "rule_added")


def test_bench_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_cli(["log", "bench", f"sqlite:///{tmp_path}/t.db", "--events",
                               "500", "--instances", "3"], capsys)
    assert code == 0
    assert "order verified  True" in out and "events/s" in out


def test_stat_json(benched: tuple[str, dict[str, Any]],
                   capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = benched
    code, out, _err = run_cli(["log", "stat", url, "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["partitions"] == 8 and info["events"] == 3000
    assert sum(info["end_offsets"].values()) == 3000
    code, out, _err = run_cli(["log", "stat", url], capsys)
    assert "partitions  8" in out and "events      3000" in out


def test_tail_instance_and_from(benched: tuple[str, dict[str, Any]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = benched
    code, out, _err = run_cli(["log", "tail", url, "--instance", "bench-5-3"], capsys)
    got = lines(out)
    assert code == 0 and got
    assert {g["event"]["instance_id"] for g in got} == {"bench-5-3"}
    seqs = [g["event"]["hlc"][0] for g in got]
    assert seqs == list(range(len(seqs)))  # the instance's events, in its order
    part = got[0]["partition"]
    code, out, _err = run_cli(["log", "tail", url, "--instance", "bench-5-3", "--from",
                               str(got[3]["offset"]), "--limit", "2"], capsys)
    later = lines(out)
    assert [g["offset"] for g in later] == [got[3]["offset"], got[4]["offset"]]
    assert all(g["partition"] == part for g in later)


def test_tail_prints_dead_letters_instead_of_crashing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dl.db"

    async def fill() -> None:
        async with SqliteEventLog(path) as log:
            await log.append(turn("x", 0))
            await log.append_raw("x", b"\x00garbage")
            await log.append(turn("x", 1))

    asyncio.run(fill())
    code, out, _err = run_cli(["log", "tail", f"sqlite:///{path}"], capsys)
    assert code == 0
    got = lines(out)
    assert len(got) == 3
    dead = got[1]
    assert dead["dead_letter"] is True
    assert f"offset {dead['offset']}" in dead["error"]
    assert base64.b64decode(dead["raw_b64"]) == b"\x00garbage"
    assert got[2]["event"]["hlc"] == [1, 0]


def test_bad_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(["log", "stat", "mysql://x/y"], capsys)
    assert code == EX_USAGE
    assert "unknown scheme 'mysql'" in err and "Traceback" not in err


def test_missing_log_file_is_a_clear_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("tail", "stat"):  # the user's path: a usage error, like the projection tools'
        code, _out, err = run_cli(["log", cmd, f"sqlite:///{tmp_path}/none.db"], capsys)
        assert code == EX_USAGE, (cmd, err)
        assert "no log at" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # and nothing was created


def test_read_only_commands_refuse_what_is_not_a_log_and_write_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    conn.close()
    proj = tmp_path / "proj.db"
    with sqlite3.connect(proj) as conn:  # the shape of a projection database
        conn.execute("CREATE TABLE projection_meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.close()
    text = tmp_path / "text.db"
    text.write_text("hello, not a database at all\n" * 200)
    listing = sorted(p.name for p in tmp_path.iterdir())
    for f in (empty, other, proj, text):
        before = f.read_bytes()
        for cmd in ("stat", "tail"):
            code, _out, err = run_cli(["log", cmd, f"sqlite:///{f}"], capsys)
            assert code == EX_DATAERR, (f, cmd, err)  # malformed input, not an outage
            assert err.startswith(f"error: sqlite log {f}:") and "Traceback" not in err
            assert len(err.strip().splitlines()) == 1, err
            assert f.read_bytes() == before, (f, cmd)  # no table was created
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no -journal, -wal, -shm
    code, _out, err = run_cli(["log", "stat", f"sqlite:///{empty}"], capsys)
    assert "not a selfhood log" in err


def test_read_only_commands_leave_no_file_beside_the_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stat, tail, instance list/show and project read the log without writing beside it."""
    logdir = tmp_path / "logs"
    logdir.mkdir()
    url = f"sqlite:///{logdir}/log.db"
    code, _out, err = run_cli(["log", "bench", url, "--events", "300", "--instances", "3",
                               "--seed", "2", "--json"], capsys)
    assert code == 0, err
    listing = sorted(p.name for p in logdir.iterdir())
    assert listing == ["log.db"]  # the writer checkpointed and removed its WAL on close
    before = (logdir / "log.db").read_bytes()
    code, out, _err = run_cli(["log", "stat", url, "--json"], capsys)
    assert code == 0 and json.loads(out)["events"] == 300
    code, out, _err = run_cli(["log", "tail", url], capsys)
    assert code == 0 and len(lines(out)) == 300
    code, out, err = run_cli(["instance", "list", "--from", url], capsys)
    assert code == 0, err
    first = out.split()[0]
    code, out, err = run_cli(["instance", "show", first, "--from", url], capsys)
    assert code == 0 and first in out, err
    code, _out, err = run_cli(["project", url, "--into", f"sqlite:///{tmp_path}/proj.db",
                               "--quiet"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in logdir.iterdir()) == listing
    assert (logdir / "log.db").read_bytes() == before


def test_a_read_only_open_sees_what_a_writer_appends_later(tmp_path: Path) -> None:
    """Opened with nothing beside the file (immutable), the reader reopens once a writer
    comes (as `tail --follow` and `project --follow` need), through the writer's WAL."""
    path = tmp_path / "log.db"

    def listing() -> list[str]:
        return sorted(os.listdir(tmp_path))

    async def go() -> None:
        async with SqliteEventLog(path, partitions=1) as w:
            await w.append(turn("x", 0))
        assert listing() == ["log.db"]
        async with SqliteEventLog(path, create=False) as r:
            assert await r.end_offsets() == {0: 1}
            assert listing() == ["log.db"]
            async with SqliteEventLog(path) as w:
                await w.append(turn("x", 1))  # in the WAL, not in the main file yet
                assert await r.end_offsets() == {0: 2}
                await w.append(turn("x", 2))
                got = await r.read(0, 0, timeout_s=0)
                assert [e.event.hlc.wall for e in got.entries if e.event] == [0, 1, 2]
            async with SqliteEventLog(path) as w:  # reader still on mode=ro: sees it live
                await w.append(turn("x", 3))
                assert await r.end_offsets() == {0: 4}

    asyncio.run(go())


def test_bench_with_a_repeated_seed_finds_every_event(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Same seed, same event ids: appends are retries at the original positions."""
    url = f"sqlite:///{tmp_path}/log.db"
    args = ["log", "bench", url, "--events", "600", "--instances", "6", "--seed", "9", "--json"]
    for _ in range(2):
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        result = json.loads(out)
        assert result["missing"] == 0 and result["read_back"] == 600, result
        assert result["order_verified"] is True
    code, out, _ = run_cli(["log", "stat", url, "--json"], capsys)
    assert json.loads(out)["events"] == 600  # stored once


def test_three_same_seed_writers_each_verify(tmp_path: Path) -> None:
    from selfhood.eventlog.cli import run_bench

    url = f"sqlite:///{tmp_path}/log.db"

    async def three() -> list[dict[str, Any]]:
        first = await run_bench(url, 450, 9, batch=50, writers=3, seed=4)  # half there already
        return [first, *await asyncio.gather(*(run_bench(url, 900, 9, batch=50, writers=3,
                                                         seed=4) for _ in range(3)))]

    results = asyncio.run(three())
    for r in results:
        assert r["missing"] == 0 and r["duplicates"] == 0 and r["misplaced"] == 0, r
        assert r["order_verified"] is True, r


def test_unreachable_kafka_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(["log", "stat", "kafka://127.0.0.1:1/t"], capsys)
    assert code == 1
    assert err.startswith("error: kafka") and "Traceback" not in err


def test_unreachable_kafka_is_one_line_from_the_real_command(tmp_path: Path) -> None:
    """As a user sees it (a process of its own): no aiokafka log line, no exception repr."""
    for args in (["log", "stat", "kafka://127.0.0.1:1/t"],
                 ["log", "bench", "kafka://127.0.0.1:1/t", "--events", "10"]):
        done = subprocess.run([sys.executable, "-m", "selfhood", *args], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path,
                              env={k: v for k, v in os.environ.items()
                                   if k != "SELFHOOD_DRIVER_LOGS"})
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines() == [
            "error: kafka connect to 127.0.0.1:1: no broker reachable"], done.stderr


@pytest.mark.kafka
def test_bench_stat_tail_on_kafka(kafka_bootstrap: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    url = f"kafka://{kafka_bootstrap}/cli-{uuid.uuid4().hex[:12]}"
    code, out, err = run_cli(["log", "bench", url, "--events", "5000", "--instances", "20",
                              "--seed", "9", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert BENCH_KEYS <= set(result)
    assert result["order_verified"] is True and result["read_back"] == 5000
    code, out, err = run_cli(["log", "stat", url, "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["events"] == 5000 and info["partitions"] == 8
    code, out, err = run_cli(["log", "tail", url, "--instance", "bench-9-7"], capsys)
    got = lines(out)
    assert got and {g["event"]["instance_id"] for g in got} == {"bench-9-7"}
    assert [g["event"]["hlc"][0] for g in got] == list(range(len(got)))


@pytest.mark.kafka
def test_stat_of_a_missing_topic_does_not_create_it(kafka_bootstrap: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url = f"kafka://{kafka_bootstrap}/missing-{uuid.uuid4().hex[:12]}"
    for _ in range(2):  # the second look must fail the same way: nothing was created
        code, _out, err = run_cli(["log", "stat", url], capsys)
        assert code == 1
        assert "does not exist" in err and "Traceback" not in err
