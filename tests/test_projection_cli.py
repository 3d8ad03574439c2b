"""`selfhood project | instance show/list | projections rebuild` end to end (embedded)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from selfhood.cli import main
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.projections.reducer import fold_all
from selfhood.projections.state import fingerprint
from selfhood.projections.strategies import scenario_events


def sh(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `selfhood ARGS` in-process through the real entry point (exit codes included)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    res = subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    if ok:
        assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def log_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "log.db"

    async def fill() -> None:
        async with SqliteEventLog(path, partitions=3) as log:
            await log.append_batch(scenario_events(1200, 8, seed=4))

    asyncio.run(fill())
    return f"sqlite:///{path}"


def test_project_show_list_agree(log_url: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/proj.db"
    res = sh("project", log_url, "--into", db)
    assert "projected" in res.stdout and "8 instances" in res.stdout
    assert "projected" in res.stderr  # progress
    ids_log = sh("instance", "list", "--from", log_url).stdout.split()
    ids_db = sh("instance", "list", "--from", db).stdout.split()
    assert ids_log == ids_db and len(ids_db) == 8
    ref = fold_all(scenario_events(1200, 8, seed=4))
    for iid in ids_db[:3]:
        a = json.loads(sh("instance", "show", iid, "--from", log_url, "--json").stdout)
        b = json.loads(sh("instance", "show", iid, "--from", db, "--json").stdout)
        assert a["fingerprint"] == b["fingerprint"] == fingerprint(ref[iid])
        assert a["version"] == b["version"] == ref[iid].version
        assert a["instance_id"] == iid
    human = sh("instance", "show", ids_db[0], "--from", db).stdout
    assert f"fingerprint  {fingerprint(ref[ids_db[0]])}" in human
    # a second run projects nothing new
    again = sh("project", log_url, "--into", db, "-q")
    assert again.stdout.startswith("projected 0 records") and again.stderr == ""


def test_eventual_mode_and_rebuild(log_url: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/ev.db"
    sh("project", log_url, "--into", db, "--mode", "eventual", "-q")
    ref = fold_all(scenario_events(1200, 8, seed=4), mode="eventual")
    iid = sorted(ref)[0]
    a = json.loads(sh("instance", "show", iid, "--from", log_url, "--mode", "eventual",
                      "--json").stdout)
    b = json.loads(sh("instance", "show", iid, "--from", db, "--json").stdout)
    assert a["fingerprint"] == b["fingerprint"] == fingerprint(ref[iid])
    # the database is bound to its mode ...
    bad = sh("project", log_url, "--into", db, "--mode", "sequential", ok=False)
    assert bad.returncode == 1 and "eventual projection" in bad.stderr
    # ... until it is rebuilt
    sh("projections", "rebuild", db, "--from", log_url, "--mode", "sequential", "-q")
    seq = fold_all(scenario_events(1200, 8, seed=4))
    c = json.loads(sh("instance", "show", iid, "--from", db, "--json").stdout)
    assert c["fingerprint"] == fingerprint(seq[iid]) and c["mode"] == "sequential"


def test_user_errors_are_one_line(log_url: str, tmp_path: Path) -> None:
    other_db, not_db = tmp_path / "other.db", tmp_path / "notes.txt"
    conn = sqlite3.connect(other_db)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    not_db.write_text("not a database, just words\n")
    cases = [
        (("project", "sqlite:///nope/log.db", "--into", f"sqlite:///{tmp_path}/x.db"), 64,
         "no such log file"),
        (("project", log_url, "--into", "mysql://h/db"), 64, "unsupported backend"),
        (("project", "http://x", "--into", f"sqlite:///{tmp_path}/x.db"), 64, "unknown scheme"),
        (("instance", "show", "nobody", "--from", log_url), 1, "no events for instance"),
        (("instance", "list", "--from", f"sqlite:///{tmp_path}/missing.db"), 64,
         "no such file"),
        (("instance", "list", "--from", "ftp://x"), 64, "use kafka://"),
        # a file that is no log and no projection is malformed input, as for `log stat`
        (("instance", "list", "--from", f"sqlite:///{other_db}"), 65,
         f"--from sqlite:///{other_db}: neither an event log nor a projection"),
        (("instance", "list", "--from", f"sqlite:///{not_db}"), 65, "not a SQLite database"),
        (("project", f"sqlite:///{other_db}", "--into", f"sqlite:///{tmp_path}/x.db"), 65,
         f"LOG_URL sqlite:///{other_db}: neither an event log nor a projection"),
        (("project", log_url), 64, "Missing option '--into'"),
        (("project", log_url, "--into", log_url), 64, "the log's own file"),
        (("projections", "rebuild", log_url, "--from", log_url), 64, "the log's own file"),
        (("project", "--bogus"), 64, "No such option"),
        (("project", log_url, "--into", f"sqlite:///{tmp_path}/no-dir/x.db"), 1,
         f"directory {tmp_path}/no-dir does not exist"),
    ]
    for args, code, msg in cases:
        res = sh(*args, ok=False)
        assert res.returncode == code, (args, res.stderr)
        assert msg in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr and "OperationalError" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)


def test_project_never_writes_into_a_log_or_reads_a_projection_as_one(
        log_url: str, tmp_path: Path) -> None:
    log_file = Path(log_url[len("sqlite:///"):])
    before = log_file.read_bytes()
    other = tmp_path / "other-log.db"

    async def make_other() -> None:
        async with SqliteEventLog(other, partitions=1) as log:
            await log.append_batch(scenario_events(5, 1, seed=1))

    asyncio.run(make_other())
    other_before = other.read_bytes()
    res = sh("project", log_url, "--into", f"sqlite:///{other}", ok=False)
    assert res.returncode == 64 and "is an event log" in res.stderr
    assert other.read_bytes() == other_before
    db = f"sqlite:///{tmp_path}/proj.db"
    sh("project", log_url, "--into", db, "-q")
    assert log_file.read_bytes() == before  # projecting only reads the log
    res = sh("project", db, "--into", f"sqlite:///{tmp_path}/p2.db", ok=False)
    assert res.returncode == 64 and "is a projection database" in res.stderr
    assert not (tmp_path / "p2.db").exists()


def test_follow_projects_new_events_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal

    from selfhood.events import TurnAppended, make_event
    from selfhood.projections.store import SqlProjectionStore

    log_path = tmp_path / "log.db"
    db = f"sqlite:///{tmp_path}/follow.db"

    async def append_and_wait(text: str) -> None:
        async with SqliteEventLog(log_path, partitions=2) as log, \
                SqlProjectionStore(db) as store:
            pos = await log.append(make_event("f1", TurnAppended("user", text), writer="w"))
            await store.wait_for("projector", pos, timeout_s=60)

    async def first() -> None:
        async with SqliteEventLog(log_path, partitions=2) as log:
            await log.append(make_event("f1", TurnAppended("user", "first"), writer="w"))

    asyncio.run(first())
    proc = subprocess.Popen([sys.executable, "-m", "selfhood", "project", f"sqlite:///{log_path}",
                             "--into", db, "--follow", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        asyncio.run(append_and_wait("second"))  # projected while it follows
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "projected 2 records" in out
    shown = json.loads(sh("instance", "show", "f1", "--from", db, "--json").stdout)
    assert [t["content"] for t in shown["transcript"]] == ["first", "second"]
    again = sh("project", f"sqlite:///{log_path}", "--into", db, "-q").stdout
    assert "replayed 0 on start" in again  # the graceful stop left fresh snapshots
