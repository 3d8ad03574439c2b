"""What one replica process is told: options from the CLI, environment and a config file.

Precedence: command-line option > environment variable > config file >
built-in default. The environment variables are the plug-in contract
(issue 10): any instance service that speaks the replica API is started
with the same four (`ENV_NODE`, `ENV_LISTEN`, `ENV_BOOTSTRAP`,
`ENV_DATABASE_URL`). The config file is JSON: the experiment spec (the
deployment part of it: shards, instances, sharded memory, fencing, the
group session timeout) plus this node's own settings.

The deployment is stated once: `ReplicaOptions.spec` is that experiment
spec (or the defaults) with the options, environment and config fields laid
over it, and the core's `ReplicaConfig` is derived from it
(`ReplicaOptions.replica`), not restated beside it.

Every bad value raises `ReplicaOptionError` naming where it came from (the
option, the variable, or ``path:line`` and the field), never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from selfhood.consistency.config import ReplicaConfig
from selfhood.errors import ReplicaOptionError, SpecError
from selfhood.spec import DEFAULT_SPEC, MODES, ExperimentSpec, _line_of, spec_from_mapping

ENV_NODE: Final = "SELFHOOD_NODE"
ENV_LISTEN: Final = "SELFHOOD_LISTEN"
ENV_BOOTSTRAP: Final = "SELFHOOD_KAFKA_BOOTSTRAP"
ENV_DATABASE_URL: Final = "SELFHOOD_DATABASE_URL"

#: option name -> environment variable
ENV: Final[dict[str, str]] = {"node": ENV_NODE, "listen": ENV_LISTEN,
                              "bootstrap": ENV_BOOTSTRAP, "database_url": ENV_DATABASE_URL}

DEFAULT_TOPIC: Final = "selfhood"
#: Kafka brokers refuse smaller session timeouts unless group.min.session.timeout.ms is lowered
DEFAULT_SESSION_TIMEOUT_MS: Final = 6000

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")

#: fields a config file may hold (besides "spec"), with their JSON types
_FILE_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "node": (str,), "listen": (str,), "bootstrap": (str,), "database_url": (str,),
    "topic": (str,), "group": (str,), "mode": (str,), "shards": (int,),
    "instances": (int, list), "sharded_memory": (bool,), "atomic_memory": (bool,),
    "fencing": (bool,), "peers": (dict,), "data_dir": (str,),
    "session_timeout_ms": (int,), "poll_ms": (int,), "lease_ms": (int,),
    "outbox_ms": (int,),
}


@dataclass(frozen=True)
class ReplicaOptions:
    """Everything `selfhood replica serve` needs, validated (plain data).

    `spec` is the deployment (mode, shards, instances, sharded and atomic
    memory, fencing, the group session timeout), stated once: the config
    file's experiment spec, or the defaults, with the options, environment
    and config fields applied; its one mode is this replica's. The rest is
    this process's own: where it listens, the log, peers, timings.
    """

    node: str
    host: str
    port: int
    bootstrap: str
    spec: ExperimentSpec
    #: instance names when given as a list; otherwise the spec's i0..i{n-1}
    instance_list: tuple[str, ...] | None = None
    topic: str = DEFAULT_TOPIC
    group: str = ""
    peers: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path = Path(".selfhood/replicas")
    poll_ms: int = 20
    lease_ms: int = 500
    outbox_ms: int = 50
    database_url: str | None = None

    @property
    def mode(self) -> str:
        return self.spec.modes[0]

    @property
    def instances(self) -> tuple[str, ...]:
        """The instances this replica claims on the partitions it owns."""
        return self.instance_list if self.instance_list is not None else self.spec.instance_names

    @property
    def session_timeout_ms(self) -> int:
        return self.spec.session_timeout_ms

    @property
    def replica(self) -> ReplicaConfig:
        """The core's configuration: the spec's for this mode, with this process's timings."""
        return dataclasses.replace(self.spec.replica_config(self.mode), lease_ms=self.lease_ms,
                                   outbox_ms=self.outbox_ms)

    @property
    def url(self) -> str:
        """This replica's own base URL (what peers are told)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def group_id(self) -> str:
        return self.group or f"selfhood-replicas.{self.topic}"


@dataclass(frozen=True)
class _Value:
    value: Any
    where: str


def _bad(where: str, message: str) -> ReplicaOptionError:
    return ReplicaOptionError(f"{where}: {message}")


def parse_listen(text: str, where: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", text.strip())
    if m is None:
        raise _bad(where, f"{text!r} is not HOST:PORT (e.g. 10.0.0.2:8470)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise _bad(where, f"port {port} must be in 0..65535")
    return host, port


def parse_peer(text: str, where: str) -> tuple[str, str]:
    """``NAME=URL`` (a peer replica and its base URL)."""
    name, sep, url = text.partition("=")
    if not sep:
        raise _bad(where, f"{text!r} is not NAME=URL (e.g. r1=http://10.0.0.3:8470)")
    return _check_peer(name.strip(), url.strip(), where)


def _check_peer(name: str, url: str, where: str) -> tuple[str, str]:
    if not _NAME_RE.fullmatch(name):
        raise _bad(where, f"peer name {name!r} must be letters, digits, '_', '.', '-'")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _bad(where, f"peer {name}: {url!r} is not an http(s)://host:port URL")
    return name, url.rstrip("/")


def load_config_file(path: Path) -> tuple[dict[str, Any], str]:
    """The config file's object and its text (for line numbers); errors name path:line."""
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReplicaOptionError(f"{src}: cannot read replica config: "
                                 f"{exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ReplicaOptionError(f"{src}: replica config is not UTF-8 (byte {exc.start})"
                                 ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplicaOptionError(f"{src}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}"
                                 ) from None
    if not isinstance(data, dict):
        raise ReplicaOptionError(f"{src}:1: a replica config must be a JSON object")
    for key, value in data.items():
        where = _file_where(src, text, key)
        if key == "spec":
            continue
        types = _FILE_FIELDS.get(key)
        if types is None:
            raise _bad(where, f"unknown field (expected spec, {', '.join(_FILE_FIELDS)})")
        if isinstance(value, bool) and bool not in types:
            raise _bad(where, f"expected {types[0].__name__}, got {value!r}")
        if not isinstance(value, types):
            raise _bad(where, f"expected {types[0].__name__}, got {value!r}")
    return data, text


def _file_where(src: str, text: str, key: str) -> str:
    line = _line_of(text, key)
    return f"{src}:{line}: config field `{key}`" if line else f"{src}: config field `{key}`"


def resolve_options(cli: Mapping[str, Any], env: Mapping[str, str],
                    config: Path | None = None) -> ReplicaOptions:
    """Merge CLI values (None = not given), the environment and a config file; validate."""
    data: dict[str, Any] = {}
    text = ""
    src = ""
    if config is not None:
        data, text = load_config_file(config)
        src = str(config)
    spec: ExperimentSpec | None = None
    if "spec" in data:
        try:
            spec = spec_from_mapping(data["spec"], source=src, text=text)
        except SpecError as exc:
            raise ReplicaOptionError(str(exc)) from None

    def get(name: str, flag: str, default: Any = None,
            from_spec: Any = None) -> _Value:
        v = cli.get(name)
        if v is not None and v != ():
            return _Value(v, f"option --{flag}")
        var = ENV.get(name)
        if var is not None and env.get(var):
            return _Value(env[var], f"environment {var}")
        if name in data:
            return _Value(data[name], _file_where(src, text, name))
        if from_spec is not None:
            return _Value(from_spec, f"{src}: spec field `{name}`")
        return _Value(default, "default")

    node = get("node", "node")
    if node.value is None:
        raise ReplicaOptionError(f"the node name is required (option --node, environment "
                                 f"{ENV_NODE}, or config field `node`)")
    if not _NAME_RE.fullmatch(str(node.value)):
        raise _bad(node.where, f"{node.value!r} must be 1-64 letters, digits, '_', '.', '-'")
    listen = get("listen", "listen", "127.0.0.1:8470")
    host, port = parse_listen(str(listen.value), listen.where)
    bootstrap = get("bootstrap", "bootstrap")
    if not bootstrap.value:
        raise ReplicaOptionError(f"the Kafka bootstrap servers are required (option "
                                 f"--bootstrap, environment {ENV_BOOTSTRAP}, or config "
                                 f"field `bootstrap`)")
    for server in str(bootstrap.value).split(","):
        parse_listen(server, bootstrap.where)
    topic = get("topic", "topic", DEFAULT_TOPIC)
    if not _TOPIC_RE.fullmatch(str(topic.value)):
        raise _bad(topic.where, f"{topic.value!r} is not a Kafka topic name")
    group = get("group", "group", "")
    if group.value and not _TOPIC_RE.fullmatch(str(group.value)):
        raise _bad(group.where, f"{group.value!r} is not a consumer group name")

    spec_mode = spec.modes[0] if spec is not None and len(spec.modes) == 1 else None
    mode = get("mode", "mode", "sequential", spec_mode)
    if mode.value not in MODES:
        raise _bad(mode.where, f"unknown mode {mode.value!r} (choose from {', '.join(MODES)})")
    base = DEFAULT_SPEC if spec is None else spec
    shards = get("shards", "shards", DEFAULT_SPEC.shards, spec.shards if spec else None)
    _int_range(shards, 1, 256)
    inst = get("instances", "instances", DEFAULT_SPEC.instances,
               spec.instances if spec else None)
    instances = _instances(inst)
    sharded = get("sharded_memory", "sharded-memory", DEFAULT_SPEC.sharded_memory,
                  spec.sharded_memory if spec else None)
    atomic = get("atomic_memory", "atomic-memory", DEFAULT_SPEC.atomic_memory,
                 spec.atomic_memory if spec else None)
    fencing = get("fencing", "fencing", DEFAULT_SPEC.fencing, spec.fencing if spec else None)
    if sharded.value and shards.value < 2:
        raise _bad(sharded.where, "sharded memory needs shards >= 2")
    session = get("session_timeout_ms", "session-timeout-ms", DEFAULT_SESSION_TIMEOUT_MS,
                  spec.session_timeout_ms if spec else None)
    _int_range(session, 100, 3_600_000)
    poll = get("poll_ms", "poll-ms", 20)
    _int_range(poll, 1, 10_000)
    lease = get("lease_ms", "lease-ms", 500)
    _int_range(lease, 1, 3_600_000)
    if lease.value <= 2 * poll.value:
        raise _bad(lease.where, f"{lease.value} must exceed twice the poll interval "
                                f"({poll.value} ms): every poll renews the lease")
    outbox = get("outbox_ms", "outbox-ms", 50)
    _int_range(outbox, 0, 3_600_000)
    peers = _peers(cli, data, src, text)
    if str(node.value) in peers:
        peers.pop(str(node.value))
    data_dir = get("data_dir", "data-dir", None)
    dd = (Path(data_dir.value) if data_dir.value is not None
          else Path(".selfhood") / "replicas" / str(node.value))
    db = get("database_url", "database-url")
    # already validated above, in this process's own bounds (the spec's validation
    # bounds a run's session timeout tighter): a plain replace, not a re-validation
    deployment = msgspec.structs.replace(
        base, modes=(str(mode.value),), shards=int(shards.value), instances=len(instances),
        sharded_memory=bool(sharded.value), atomic_memory=bool(atomic.value),
        fencing=bool(fencing.value), session_timeout_ms=int(session.value))
    named = isinstance(inst.value, list)
    return ReplicaOptions(
        node=str(node.value), host=host, port=port, bootstrap=str(bootstrap.value),
        spec=deployment, instance_list=instances if named else None,
        topic=str(topic.value), group=str(group.value or ""), peers=peers,
        data_dir=dd, poll_ms=int(poll.value), lease_ms=int(lease.value),
        outbox_ms=int(outbox.value), database_url=str(db.value) if db.value else None)


def _int_range(v: _Value, lo: int, hi: int) -> None:
    if isinstance(v.value, bool) or not isinstance(v.value, int) or not lo <= v.value <= hi:
        raise _bad(v.where, f"{v.value!r} must be an integer in {lo}..{hi}")


def _instances(v: _Value) -> tuple[str, ...]:
    """A count (instances i0..i{n-1}, as the spec names them) or a list of names."""
    if isinstance(v.value, list):
        names = tuple(str(x) for x in v.value)
        if not names or len(set(names)) != len(names):
            raise _bad(v.where, "instance names must be a non-empty list without repeats")
        for n in names:
            if not _NAME_RE.fullmatch(n):
                raise _bad(v.where, f"instance name {n!r} must be letters, digits, '_', '.', '-'")
        return names
    _int_range(v, 1, 1000)
    return tuple(f"i{i}" for i in range(int(v.value)))


def _peers(cli: Mapping[str, Any], data: Mapping[str, Any], src: str,
           text: str) -> dict[str, str]:
    given = cli.get("peers") or ()
    if given:
        return dict(parse_peer(str(p), "option --peer") for p in given)
    raw = data.get("peers")
    if raw is None:
        return {}
    where = _file_where(src, text, "peers")
    return dict(_check_peer(str(k), str(u), where) for k, u in raw.items())
