"""`selfhood cluster up | down | status`: the real Kafka + PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from selfhood.chaos.cluster import (
    DEFAULT_UP_TIMEOUT_S,
    ENV_BASE_PORT,
    ENV_STATE_DIR,
    ClusterManager,
)
from selfhood.errors import ClusterError

state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), envvar=ENV_STATE_DIR,
    default=Path(".selfhood"), show_default=True,
    help=f"Where pid files, configs, data and logs live (env {ENV_STATE_DIR}).")


def _quiet_driver() -> None:
    """aiokafka logs every refused connection while brokers boot; progress lines say enough."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _progress(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


@click.group()
def cluster() -> None:
    """Start, inspect and stop the real Kafka (KRaft) + PostgreSQL cluster."""
    _quiet_driver()


@cluster.command()
@click.option("--brokers", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="Combined broker+controller nodes.")
@click.option("--netns", is_flag=True, help="Run each broker in its own network namespace.")
@state_dir_option
@click.option("--base-port", type=click.IntRange(1024, 65000), envvar=ENV_BASE_PORT,
              default=None, help="First broker port (default 19092; env SELFHOOD_BASE_PORT). "
              "Controllers use +10.., PostgreSQL +20.")
@click.option("--timeout", type=float, default=DEFAULT_UP_TIMEOUT_S, show_default=True,
              help="Seconds to wait for the cluster to become healthy.")
def up(brokers: str, netns: bool, state_dir: Path, base_port: int | None,
       timeout: float) -> None:
    """Start the cluster (idempotent) and wait until it is really healthy."""
    mgr = ClusterManager(state_dir)
    status = asyncio.run(mgr.up(int(brokers), netns=netns, base_port=base_port,
                                limit=timeout, progress=_progress))
    click.echo(f"bootstrap: {status.bootstrap}")
    click.echo(f"database_url: {status.database_url}")


@cluster.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop what `up` started (by pid file) and remove its namespaces and data."""
    asyncio.run(ClusterManager(state_dir).down(progress=_progress))


@cluster.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(state_dir: Path, as_json: bool) -> None:
    """Report each node; exit 1 unless every node is healthy."""
    st = asyncio.run(ClusterManager(state_dir).status())
    if as_json:
        click.echo(json.dumps(st.to_json(), indent=2))
    elif not st.configured:
        click.echo(f"no cluster in {st.state_dir}")
    else:
        click.echo(f"state dir: {st.state_dir}{'  (netns)' if st.netns else ''}")
        click.echo(f"bootstrap: {st.bootstrap}")
        click.echo(f"database_url: {st.database_url}")
        for b in st.brokers:
            state = "healthy" if b.healthy else ("paused" if b.paused else
                                                 ("alive, not serving" if b.alive else "down"))
            click.echo(f"broker {b.id}  {b.address:<22} pid {b.pid}  {state}")
        if st.postgres is not None:
            pg = st.postgres
            state = "healthy" if pg.healthy else ("alive, not ready" if pg.alive else "down")
            click.echo(f"postgres  {pg.address:<22} pid {pg.pid}  {state}")
    if not st.healthy:
        raise SystemExit(1)


__all__ = ["ClusterError", "cluster"]
