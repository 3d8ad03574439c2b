"""`open_log(url)`: a log is named by a URL (pure parsing, lazy adapter import).

- ``sqlite:///path/log.db[?partitions=N]`` - embedded; relative paths use
  ``sqlite:///rel/log.db`` (three slashes, like SQLAlchemy) and absolute ones
  ``sqlite:////abs/log.db``.
- ``kafka://host:port[,host:port...]/topic[?partitions=N]`` - Kafka.

Anything else raises `LogUrlError` naming the offending part, never a
traceback from deep inside a driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs

from selfhood.errors import LogUrlError

if TYPE_CHECKING:
    from selfhood.eventlog.kafka import KafkaEventLog
    from selfhood.eventlog.sqlite import SqliteEventLog

_KNOWN_PARAMS = {"partitions"}


@dataclass(frozen=True, slots=True)
class LogUrl:
    """A parsed log URL."""

    scheme: Literal["sqlite", "kafka"]
    path: str = ""
    bootstrap: tuple[str, ...] = ()
    topic: str = ""
    partitions: int | None = None


def _parse_query(url: str, query: str) -> int | None:
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise LogUrlError(f"log URL {url!r}: malformed query {query!r}") from None
    unknown = set(params) - _KNOWN_PARAMS
    if unknown:
        raise LogUrlError(f"log URL {url!r}: unknown parameter(s) {', '.join(sorted(unknown))}"
                          f" (known: partitions)")
    if "partitions" not in params:
        return None
    raw = params["partitions"][-1]
    try:
        n = int(raw)
    except ValueError:
        raise LogUrlError(f"log URL {url!r}: partitions={raw!r} is not an integer") from None
    if not 1 <= n <= 10_000:
        raise LogUrlError(f"log URL {url!r}: partitions={n} must be between 1 and 10000")
    return n


def parse_log_url(url: str) -> LogUrl:
    """Parse and validate a log URL without opening anything."""
    if "://" not in url:
        raise LogUrlError(f"log URL {url!r} has no scheme; use sqlite:///path/log.db "
                          f"or kafka://host:port/topic")
    scheme, rest = url.split("://", 1)
    rest, _, query = rest.partition("?")
    partitions = _parse_query(url, query)
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise LogUrlError(f"log URL {url!r}: expected sqlite:///path/log.db (three slashes)")
        path = rest[1:]
        if not path or path.endswith("/"):
            raise LogUrlError(f"log URL {url!r}: missing database file name")
        return LogUrl("sqlite", path=path, partitions=partitions)
    if scheme == "kafka":
        hosts, sep, topic = rest.partition("/")
        if not sep or not topic:
            raise LogUrlError(f"log URL {url!r}: missing topic (kafka://host:port/topic)")
        if "/" in topic or not all(c.isalnum() or c in "._-" for c in topic) or len(topic) > 249:
            raise LogUrlError(f"log URL {url!r}: invalid topic name {topic!r} "
                              f"(letters, digits, '.', '_', '-')")
        servers: list[str] = []
        for i, hp in enumerate(hosts.split(",")):
            host, colon, port = hp.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise LogUrlError(f"log URL {url!r}: bootstrap server #{i + 1} {hp!r} "
                                  f"is not host:port")
            servers.append(f"{host}:{int(port)}")
        return LogUrl("kafka", bootstrap=tuple(servers), topic=topic, partitions=partitions)
    raise LogUrlError(f"log URL {url!r}: unknown scheme {scheme!r} (use sqlite or kafka)")


def open_log(url: str, *, create: bool = True,
             writer: str | None = None) -> SqliteEventLog | KafkaEventLog:
    """An adapter for `url`, not yet started (use ``async with open_log(url) as log``).

    With ``create=False`` a missing log (sqlite file, Kafka topic) is a
    `LogUnavailable` on start() instead of being created. ``writer`` names a
    writer that keeps its name across restarts (a replica's node name): on
    Kafka it is the transactional id, so a restarted writer fences the
    transactions its previous incarnation left open. SQLite needs no name.
    """
    parsed = parse_log_url(url)
    if parsed.scheme == "sqlite":
        from selfhood.eventlog.sqlite import SqliteEventLog

        return SqliteEventLog(parsed.path, partitions=parsed.partitions, create=create)
    from selfhood.eventlog.kafka import KafkaEventLog

    return KafkaEventLog(",".join(parsed.bootstrap), parsed.topic,
                         partitions=parsed.partitions, create=create,
                         transactional_id=(None if writer is None
                                           else f"selfhood-{parsed.topic}-{writer}"))
