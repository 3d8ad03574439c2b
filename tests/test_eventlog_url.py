"""Log URLs: what `open_log` accepts, and a clear LogUrlError for everything else."""

from __future__ import annotations

import pytest

from selfhood.errors import LogUrlError
from selfhood.eventlog.kafka import KafkaEventLog
from selfhood.eventlog.sqlite import SqliteEventLog
from selfhood.eventlog.url import open_log, parse_log_url


def test_sqlite_relative_and_absolute() -> None:
    assert parse_log_url("sqlite:///data/log.db").path == "data/log.db"
    assert parse_log_url("sqlite:////tmp/log.db").path == "/tmp/log.db"
    assert parse_log_url("sqlite:///log.db?partitions=4").partitions == 4
    log = open_log("sqlite:////tmp/x/log.db?partitions=3")
    assert isinstance(log, SqliteEventLog) and log.path == "/tmp/x/log.db"


def test_kafka_bootstrap_list_and_topic() -> None:
    u = parse_log_url("kafka://127.0.0.1:19092,localhost:19093/events?partitions=12")
    assert u.bootstrap == ("127.0.0.1:19092", "localhost:19093")
    assert (u.topic, u.partitions) == ("events", 12)
    log = open_log("kafka://h1:9092/t.x_y-z")
    assert isinstance(log, KafkaEventLog)
    assert (log.bootstrap, log.topic) == ("h1:9092", "t.x_y-z")


@pytest.mark.parametrize("url, needle", [
    ("log.db", "no scheme"),
    ("postgres://x/y", "unknown scheme 'postgres'"),
    ("sqlite://log.db", "three slashes"),
    ("sqlite:///", "three slashes"),
    ("sqlite:///dir/", "missing database file name"),
    ("sqlite:///log.db?partitions=zero", "not an integer"),
    ("sqlite:///log.db?partitions=0", "between 1 and 10000"),
    ("sqlite:///log.db?replicas=3", "unknown parameter(s) replicas"),
    ("kafka://host:9092", "missing topic"),
    ("kafka://host:9092/", "missing topic"),
    ("kafka://host/topic", "bootstrap server #1 'host'"),
    ("kafka://h:1,h:notaport/t", "bootstrap server #2 'h:notaport'"),
    ("kafka://h:70000/t", "bootstrap server #1"),
    ("kafka://h:1/bad topic", "invalid topic name"),
    ("kafka://h:1/a/b", "invalid topic name"),
])
def test_bad_urls_name_the_problem(url: str, needle: str) -> None:
    with pytest.raises(LogUrlError) as info:
        open_log(url)
    assert needle in str(info.value)
    assert url in str(info.value)
