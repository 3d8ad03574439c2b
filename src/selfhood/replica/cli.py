"""`selfhood replica serve`: run one replica OS process."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from selfhood.extras import require
from selfhood.replica.config import (
    ENV_BOOTSTRAP,
    ENV_DATABASE_URL,
    ENV_LISTEN,
    ENV_NODE,
    resolve_options,
)
from selfhood.spec import MODES


@click.group()
def replica() -> None:
    """Replica OS processes: the core over Kafka, serving the HTTP API (docs/replica.md)."""


@replica.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="JSON config file: {\"node\", \"spec\": {...}, ...} "
              "(options and environment override it).")
@click.option("--node", default=None, help=f"This replica's name, e.g. r0 (env {ENV_NODE}).")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help=f"Address to serve the API on (env {ENV_LISTEN}; default 127.0.0.1:8470).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help=f"Kafka bootstrap servers (env {ENV_BOOTSTRAP}).")
@click.option("--database-url", default=None,
              help=f"PostgreSQL URL for plug-in services (env {ENV_DATABASE_URL}); "
              "reported in /v1/status, not used by this replica.")
@click.option("--topic", default=None, help="Event topic (default 'selfhood').")
@click.option("--group", default=None,
              help="Consumer group of the replicas (default selfhood-replicas.<topic>).")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="Consistency mode (default sequential, or the spec's only mode).")
@click.option("--shards", type=int, default=None,
              help="Partitions of the topic (default 2, or the spec's).")
@click.option("--instances", type=int, default=None,
              help="Instances i0..i{N-1} to claim on owned partitions (default 4, or the spec's).")
@click.option("--sharded-memory/--no-sharded-memory", default=None,
              help="Memory modules on another partition than the transcript.")
@click.option("--atomic-memory/--no-atomic-memory", default=None,
              help="Sharded memory written atomically (a Kafka transaction).")
@click.option("--fencing/--no-fencing", default=None,
              help="Reducers reject events of older ownership epochs (default on).")
@click.option("--peer", "peers", multiple=True, metavar="NAME=URL",
              help="Another replica's base URL (repeatable), for forwarding to owners.")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Local disk for the durable outbox (default .selfhood/replicas/<node>).")
@click.option("--session-timeout-ms", type=int, default=None,
              help="Consumer group session timeout: how long a silent owner keeps its "
              "partitions (default 6000; brokers bound it by group.min.session.timeout.ms).")
@click.option("--poll-ms", type=int, default=None, help="Log poll / timer interval (20).")
@click.option("--lease-ms", type=int, default=None,
              help="Sequential reads are refused after this long without the log (500).")
@click.option("--outbox-ms", type=int, default=None,
              help="Eventual: ship the outbox at most this often (50).")
@click.option("-v", "--verbose", is_flag=True, help="Log every claim and rebalance at debug level.")
def serve(config: Path | None, verbose: bool, **values: Any) -> None:
    """Run one replica until SIGTERM: core + KafkaEventLog + HTTP API.

    Prints one line `... listening on http://HOST:PORT` on stdout once it
    serves; logs go to stderr.
    """
    opts = resolve_options(values, os.environ, config)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {opts.node} %(levelname)s %(message)s")
    # the driver logs every refused connection while brokers move; our own lines say enough
    logging.getLogger("aiokafka").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    require("cluster")  # aiohttp, aiokafka: one line and exit 69 if missing
    from selfhood.replica.http import serve as run

    asyncio.run(run(opts))


@replica.command()
@click.argument("url")
@click.option("--openapi", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The API document (default: the replica-api.yaml installed with selfhood).")
@click.option("--instance", default=None,
              help="Instance the probes write to (default: a fresh conform-<hex>).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 600), default=5.0,
              show_default=True, help="Seconds to wait for each answer.")
def conform(url: str, openapi: Path | None, instance: str | None, timeout_s: float) -> None:
    """Check that the service at URL speaks the replica API (docs/replica.md).

    Validates every answer against the OpenAPI document and probes meaning on
    a fresh instance: a turn, a memory write and a case read back, rules added
    and revoked, probe and fingerprint agreeing. Exit 1 with one line per
    problem, each naming the endpoint.
    """
    require("cluster")
    from selfhood.replica.conform import check_service

    report = asyncio.run(check_service(url, document=openapi, instance=instance,
                                       timeout_s=timeout_s))
    report.raise_for_findings()
    click.echo(f"{url} conforms: {report.exchanges} answers valid and meaning what they "
               f"should (instance {report.instance})")
