"""The replica process's pure and local parts: options, wire format, placement, outbox, API doc.

No Kafka here: the real processes are in test_replica_process.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replica_api import API, validate_request, validate_response
from selfhood.consistency.replica import Reply
from selfhood.errors import OutboxCorrupt, ReplicaOptionError
from selfhood.events import TurnAppended, make_event
from selfhood.replica.config import ReplicaOptions, resolve_options
from selfhood.replica.outbox import DurableOutbox
from selfhood.replica.placement import Member, assign
from selfhood.replica.wire import BadRequest, parse_op, read_only, reply_body

BASE = {"node": "r0", "bootstrap": "10.0.0.1:9092"}


# -- options ------------------------------------------------------------------------


def test_cli_beats_environment_beats_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "r.json"
    cfg.write_text(json.dumps({
        "node": "from-file", "listen": "10.9.9.9:1", "bootstrap": "file:1",
        "peers": {"r1": "http://10.0.0.3:8470"},
        "spec": {"modes": ["eventual"], "shards": 3, "instances": 2, "fencing": False}}))
    env = {"SELFHOOD_NODE": "from-env", "SELFHOOD_LISTEN": "10.0.0.2:8470",
           "SELFHOOD_KAFKA_BOOTSTRAP": "10.0.0.1:9092,10.0.0.5:9092",
           "SELFHOOD_DATABASE_URL": "postgresql://x@h/db"}
    o = resolve_options({"node": "r7"}, env, cfg)
    assert o.node == "r7"  # option
    assert (o.host, o.port) == ("10.0.0.2", 8470)  # environment, not file, not loopback
    assert o.bootstrap == "10.0.0.1:9092,10.0.0.5:9092"
    assert o.database_url == "postgresql://x@h/db"
    assert o.mode == "eventual" and o.spec.shards == 3 and not o.spec.fencing  # the spec
    assert o.instances == ("i0", "i1")
    assert dict(o.peers) == {"r1": "http://10.0.0.3:8470"}
    assert o.url == "http://10.0.0.2:8470"
    o6 = resolve_options({**BASE, "listen": "[::1]:0"}, {})
    assert (o6.host, o6.port, o6.url) == ("::1", 0, "http://[::1]:0")


def test_options_hold_the_spec_they_were_built_from(tmp_path: Path) -> None:
    """Configuration stated once: the deployment is the spec, the core's config derives."""
    import dataclasses

    from selfhood.consistency.config import ReplicaConfig
    from selfhood.spec import DEFAULT_SPEC, ExperimentSpec

    restated = {f.name for f in dataclasses.fields(ReplicaOptions)} & (
        {f.name for f in dataclasses.fields(ReplicaConfig)}
        | set(ExperimentSpec.__struct_fields__))
    assert restated <= {"lease_ms", "outbox_ms"}, restated  # the process's own timings
    cfg = tmp_path / "r.json"
    cfg.write_text(json.dumps({"node": "r1", "bootstrap": "h:1", "lease_ms": 900,
                               "spec": {"name": "exp7", "modes": ["eventual"], "shards": 3,
                                        "sharded_memory": True, "atomic_memory": False,
                                        "session_timeout_ms": 2500}}))
    o = resolve_options({"fencing": False}, {}, cfg)
    assert o.spec.name == "exp7" and o.spec.modes == ("eventual",)  # the file's spec...
    assert (o.spec.shards, o.spec.sharded_memory, o.spec.atomic_memory) == (3, True, False)
    assert o.spec.fencing is False and o.session_timeout_ms == 2500  # ...with the option on it
    assert o.replica == ReplicaConfig(mode="eventual", shards=3, sharded_memory=True,
                                      atomic_memory=False, fencing=False, lease_ms=900,
                                      outbox_ms=50)
    assert o.replica == dataclasses.replace(o.spec.replica_config("eventual"), lease_ms=900)
    d = resolve_options({**BASE, "instances": 3, "mode": "linearizable"}, {})
    assert d.spec == msgspec.structs.replace(DEFAULT_SPEC, modes=("linearizable",),
                                             instances=3, session_timeout_ms=6000)
    assert d.instances == ("i0", "i1", "i2") and d.instance_list is None
    n = tmp_path / "n.json"
    n.write_text(json.dumps({"node": "r1", "bootstrap": "h:1", "instances": ["a", "b"]}))
    named = resolve_options({}, {}, n)
    assert named.instances == ("a", "b") and named.spec.instances == 2


@pytest.mark.parametrize(("cli", "message"), [
    ({"bootstrap": "h:1"}, "node name is required"),
    ({"node": "r0"}, "bootstrap servers are required"),
    ({**BASE, "listen": "nohost"}, "option --listen"),
    ({**BASE, "listen": "h:70000"}, "option --listen: port 70000"),
    ({**BASE, "bootstrap": "a:1,b"}, "option --bootstrap"),
    ({**BASE, "shards": 0}, "option --shards: 0 must be an integer in 1..256"),
    ({**BASE, "mode": "strong"}, "option --mode: unknown mode 'strong'"),
    ({**BASE, "sharded_memory": True, "shards": 1}, "sharded memory needs shards >= 2"),
    ({**BASE, "poll_ms": 100, "lease_ms": 150}, "option --lease-ms: 150 must exceed"),
    ({**BASE, "peers": ("r1",)}, "option --peer: 'r1' is not NAME=URL"),
    ({**BASE, "peers": ("r1=ftp://x",)}, "is not an http(s)://host:port URL"),
    ({**BASE, "node": "bad name"}, "option --node: 'bad name'"),
])
def test_bad_options_name_the_option(cli: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplicaOptionError, match=message.replace("(", r"\(")
                       .replace(")", r"\)").replace("+", r"\+")):
        resolve_options(cli, {})


def test_bad_environment_names_the_variable() -> None:
    with pytest.raises(ReplicaOptionError, match="environment SELFHOOD_LISTEN"):
        resolve_options(BASE, {"SELFHOOD_LISTEN": "no port"})


@pytest.mark.parametrize(("text", "message"), [
    ('{"node": "r0",\n "shards": "x"}', r"r\.json:2: config field `shards`: expected int"),
    ('{"node": "r0",\n "colour": 1}', r"r\.json:2: config field `colour`: unknown field"),
    ('{"node": "r0", ', r"r\.json:1:\d+: malformed JSON"),
    ('[1]', r"r\.json:1: a replica config must be a JSON object"),
    ('{"node": "r0", "bootstrap": "h:1", "spec": {\n "shards": 0}}',
     r"r\.json:2: spec field `shards`"),
])
def test_bad_config_file_names_path_line_and_field(tmp_path: Path, text: str,
                                                   message: str) -> None:
    cfg = tmp_path / "r.json"
    cfg.write_text(text)
    with pytest.raises(ReplicaOptionError, match=message):
        resolve_options({}, {}, cfg)


def test_serve_with_bad_options_exits_64_with_one_line(tmp_path: Path) -> None:
    for args in (["--shards", "0"], ["--listen", "x"], ["--config", str(tmp_path / "no.json")]):
        proc = subprocess.run([sys.executable, "-m", "selfhood", "replica", "serve",
                               "--node", "r0", "--bootstrap", "127.0.0.1:1", *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 64, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr


# -- wire ---------------------------------------------------------------------------


def test_op_bodies_parse_and_name_the_bad_field() -> None:
    op = parse_op({"req_id": "a", "f": "txn", "instance": "i0", "token": {"1": 4},
                   "value": [["append", "i0/transcript", 1]], "timeout_ms": 50})
    assert op.token == {1: 4} and op.timeout_ms == 50 and op.hops == 0
    fw = parse_op({"f": "probe", "instance": "i0", "from": "r1", "hops": 1}, forwarded=True)
    assert fw.origin == "r1" and fw.hops == 1
    for body, field in [({"f": "x"}, "f:"), ({"f": "txn", "value": [["x", "k", 1]]}, "value.0"),
                        ({"f": "probe", "token": {"a": 1}}, "token"),
                        ({"f": "probe", "token": {"0": -1}}, "token.0"),
                        ({"f": "probe", "timeout_ms": True}, "timeout_ms"),
                        ({"f": "probe", "instance": "a/b"}, "instance"),
                        ({"f": "probe", "hops": 1}, "hops: unknown field"),
                        ([], "body")]:
        with pytest.raises(BadRequest, match=field):
            parse_op(body)
    with pytest.raises(BadRequest, match="hops"):
        parse_op({"f": "probe", "from": "r1", "hops": 2}, forwarded=True)


def test_read_only_ops_are_the_ones_whose_timeout_is_a_fail() -> None:
    assert read_only("txn", [["r", "i/transcript", None]])
    assert not read_only("txn", [["r", "i/transcript", None], ["w", "i/mem/tool/a", 1]])
    assert read_only("probe", None) and not read_only("add-rule", 1)


def test_replies_and_requests_follow_the_openapi_document() -> None:
    body = reply_body(3, Reply(9, "ok", [["r", "i0/transcript", [1]]], None, {0: 2}), "r0")
    validate_response("POST", "/v1/ops", 200, body)
    assert body["token"] == {"0": 2} and body["req_id"] == 3
    validate_response("POST", "/v1/forward", 200,
                      reply_body(None, Reply(1, "fail", None, "fenced"), "r1"))
    with pytest.raises(jsonschema.ValidationError):
        validate_response("POST", "/v1/ops", 200, {**body, "type": "maybe"})
    with pytest.raises(AssertionError, match="does not document"):
        validate_response("POST", "/v1/ops", 418, body)
    validate_request("POST", "/v1/forward", {"f": "probe", "from": "r1", "hops": 1})
    with pytest.raises(jsonschema.ValidationError):
        validate_request("POST", "/v1/ops", {"f": "probe", "from": "r1"})


def test_openapi_document_is_well_formed() -> None:
    assert API["openapi"].startswith("3.1")
    for name, schema in API["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name
        for example in schema.get("examples", []):
            if name in ("OpRequest",):
                validate_request("POST", "/v1/ops", example)
    for path, item in API["paths"].items():
        for method, op in item.items():
            assert op["responses"], (path, method)
            assert op.get("operationId"), (path, method)


def test_health_tells_serving_from_current_with_the_log() -> None:
    """A replica serves HTTP before its first poll round has caught it up (it refuses
    sequential reads until then); `/v1/health` says so, and how far behind the last
    round left it (a round that fell short of the end it saw is not caught up)."""
    import time

    from selfhood.consistency.replica import LEASE_CAUGHT_UP, Clock, Records
    from selfhood.replica.node import ReplicaNode

    node = ReplicaNode(resolve_options({**BASE, "shards": 2}, {}))  # no IO before start
    fresh = node.health()
    validate_response("GET", "/v1/health", 200, fresh)
    assert fresh["caught_up"] is False and fresh["log_reachable"] is False
    assert fresh["behind"] is None and fresh["caught_up_ms_ago"] is None

    def poll_round(chunks: list[Any], ends: list[int]) -> dict[str, Any]:
        node.contact_mono = now = time.monotonic_ns()  # what `_poll_round` does
        node.ends = ends
        node.core.on_records(Records(chunks, ends, None, LEASE_CAUGHT_UP), Clock(now, now))
        health = node.health()
        validate_response("GET", "/v1/health", 200, health)
        return health

    short = poll_round([], [3, 0])  # the brokers answered; the fetch fell short
    assert short["log_reachable"] and not short["caught_up"], short
    assert short["behind"] == 3 and short["behind_partitions"] == {"0": 3, "1": 0}, short
    whole = poll_round([(0, [], 3)], [3, 0])  # (offsets 0-2 are markers: no records)
    assert whole["caught_up"] and whole["behind"] == 0 and whole["caught_up_ms_ago"] >= 0
    st = node.status()["log"]
    assert st["caught_up"] and st["next_offsets"] == [3, 0] and st["ends"] == [3, 0], st


# -- placement ----------------------------------------------------------------------


def test_placement_starts_like_the_simulator_and_only_moves_what_must() -> None:
    members = {f"m{k}": Member(f"r{k}") for k in range(3)}
    first = assign(members, range(4))
    assert first == {"m0": [0, 3], "m1": [1], "m2": [2]}
    # m1 dies: only its partition moves
    rest = {m: Member(members[m].node, tuple(first[m])) for m in ("m0", "m2")}
    after = assign(rest, range(4))
    assert after["m0"][:2] == [0, 3] or set(first["m0"]) <= set(after["m0"])
    assert set(first["m2"]) <= set(after["m2"])
    assert sorted(after["m0"] + after["m2"]) == [0, 1, 2, 3]


def test_placement_gives_a_contested_partition_to_the_later_generation() -> None:
    # r0 was paused past its session; r2 got partition 0 in generation 3; r0 rejoins
    members = {"a": Member("r0", (0,), 2), "b": Member("r1", (1,), 3),
               "c": Member("r2", (0,), 3)}
    out = assign(members, range(2))
    assert out == {"a": [], "b": [1], "c": [0]}


def test_placement_prefers_members_that_stayed_over_one_that_rejoins() -> None:
    # r1 left and rejoined as a new member (no generation); r2 stayed, idle
    members = {"a": Member("r0", (1,), 2), "b": Member("r1"), "c": Member("r2", (), 2)}
    assert assign(members, range(2)) == {"a": [1], "b": [], "c": [0]}


@given(st.dictionaries(st.text("abc", min_size=1, max_size=3),
                       st.lists(st.integers(0, 9), max_size=6), min_size=1, max_size=5),
       st.integers(0, 10))
def test_placement_is_a_balanced_partition_of_the_partitions(
        owned: dict[str, list[int]], n: int) -> None:
    members = {m: Member(f"node-{m}", tuple(ps), len(ps) % 3) for m, ps in owned.items()}
    out = assign(members, range(n))
    got = sorted(p for ps in out.values() for p in ps)
    assert got == list(range(n))  # every partition exactly once
    sizes = [len(ps) for ps in out.values()]
    assert max(sizes) - min(sizes) <= 1
    assert assign(members, range(n)) == out  # deterministic
    assert Member.decode(members[next(iter(members))].encode(), "x") == members[
        next(iter(members))]
    assert Member.decode(b"\xff", "m9") == Member("m9")


# -- outbox -------------------------------------------------------------------------


async def test_outbox_round_trips_and_a_corrupt_file_is_named(tmp_path: Path) -> None:
    ob = DurableOutbox(tmp_path / "r0")
    assert ob.load() == []
    entries = [(1, make_event("i0", TurnAppended(role="user", content=str(k)), writer="r0",
                              epoch=0)) for k in range(3)]
    await ob.save(entries)
    assert ob.load() == entries
    assert not (tmp_path / "r0" / "outbox.tmp").exists()
    await ob.save([])
    assert ob.load() == []
    ob.path.write_bytes(b"\x93garbage")
    with pytest.raises(OutboxCorrupt, match=str(ob.path)):
        ob.load()


def test_serve_with_a_corrupt_outbox_exits_65(tmp_path: Path) -> None:
    (tmp_path / "r0").mkdir()
    (tmp_path / "r0" / "outbox.msgpack").write_bytes(b"not msgpack at all")
    proc = subprocess.run([sys.executable, "-m", "selfhood", "replica", "serve", "--node", "r0",
                           "--bootstrap", "127.0.0.1:1", "--mode", "eventual",
                           "--data-dir", str(tmp_path / "r0")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 65, proc.stderr
    assert "outbox.msgpack" in proc.stderr and "Traceback" not in proc.stderr
