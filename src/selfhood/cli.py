"""The `selfhood` command.

Subcommands live beside the code they drive and are imported lazily, so
`selfhood check` does not pay for importing Kafka or SQLAlchemy, and
`selfhood --help` lists them from `COMMANDS` without importing any. User
mistakes become one clear line on stderr and a sysexits-style code, never a
traceback:

- 64 (EX_USAGE): bad CLI argument or spec (one line, with the command's --help)
- 65 (EX_DATAERR): unreadable or malformed input (history, event bytes, results.json,
  a file given as a log that is not one)
- 69 (EX_UNAVAILABLE): the command needs an extra that is not installed
  (one line naming it, e.g. ``pip install 'selfhood[kafka]'``)
- 1: any other selfhood error (cluster, log unavailable, ...)
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any, NamedTuple

import click

from selfhood import __version__
from selfhood._build import simulator_build
from selfhood.errors import (
    EventDecodeError,
    HistoryError,
    NoSuchLog,
    NotALog,
    OutboxCorrupt,
    ResultsError,
    SelfhoodError,
    SpecError,
)
from selfhood.extras import MissingExtra, missing_extra, unavailable

EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69

class Entry(NamedTuple):
    """A subcommand as `selfhood --help` lists it, without importing its module."""

    #: "module:attribute" of a click command or group
    target: str
    #: the first paragraph of the command's help (tests/test_cli_help.py keeps them equal)
    summary: str
    #: optional dependencies (`selfhood.extras.EXTRA_OF` names) its module imports
    imports: tuple[str, ...] = ()


#: command name -> where it lives and what the listing says of it
COMMANDS: dict[str, Entry] = {
    "cluster": Entry("selfhood.chaos.cluster_cli:cluster",
                     "Start, inspect and stop the real Kafka (KRaft) + PostgreSQL cluster."),
    "log": Entry("selfhood.eventlog.cli:log",
                 "Inspect and benchmark an event log (sqlite:///path/log.db or "
                 "kafka://host:port/topic)."),
    "check": Entry("selfhood.checkers.cli:check",
                   "Check HISTORY (JSON lines, elle-cli JSON, Jepsen EDN or a Jepsen log) "
                   "against a consistency model."),
    "project": Entry("selfhood.projections.cli:project",
                     "Project LOG_URL into the database --into, exactly once, resuming where "
                     "it stopped.", ("sqlalchemy",)),
    "instance": Entry("selfhood.projections.cli:instance",
                      "Look at instances, rebuilt from a log or read from a projection.",
                      ("sqlalchemy",)),
    "projections": Entry("selfhood.projections.cli:projections",
                         "Manage projection databases.", ("sqlalchemy",)),
    "run": Entry("selfhood.chaos.run_cli:run", "Run an experiment and compare the modes."),
    "hunt": Entry("selfhood.chaos.run_cli:hunt",
                  "Search seeds and fault schedules for a run that violates PROPERTY; "
                  "shrink it."),
    "report": Entry("selfhood.report.cli:report",
                    "Rebuild RUN_DIR/report.md and RUN_DIR/report.html and print the table."),
    "compare": Entry("selfhood.report.cli:compare",
                     "Compare two stored runs or sweeps, mode by mode."),
    "serve": Entry("selfhood.report.serve:serve",
                   "Browse the runs in STORE: each report one click away, any two side by "
                   "side."),
    "study": Entry("selfhood.chaos.study_cli:study",
                   "Answer the two research questions with a canned sweep; writes study.html "
                   "+ study.md."),
    "replica": Entry("selfhood.replica.cli:replica",
                     "Replica OS processes: the core over Kafka, serving the HTTP API "
                     "(docs/replica.md)."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's "Lazily Loading
    Subcommands"), and listed by ``--help`` from `COMMANDS` alone: the command
    modules import SQLAlchemy, the simulator and more, ~0.5 s that ``selfhood
    --help`` and ``selfhood check --help`` need not pay."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry.target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith("selfhood"):
                return None  # not built yet
            line = missing_extra(exc)
            if line is None:
                raise
            return _needs_extra(cmd_name, line)
        cmd = getattr(module, attr, None)
        return cmd if isinstance(cmd, click.Command) else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole summary (wrapped, not cut off), or the extra
        it needs when that is not installed; no command module is imported."""
        rows = []
        for name in self.list_commands(ctx):
            entry = COMMANDS[name]
            line = next(filter(None, map(unavailable, entry.imports)), None)
            rows.append((name, entry.summary if line is None else _needs_short(line)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _needs_short(line: str) -> str:
    return f"(needs {line.split(': ', 1)[-1]})"


def _needs_extra(name: str, line: str) -> click.Command:
    """A stand-in for a command whose extra is missing: listed by --help, exit 69 when run."""

    def fail(args: tuple[str, ...]) -> None:
        raise MissingExtra(line)

    return click.Command(
        name, callback=fail, help=f"Not available: {line}.",
        short_help=_needs_short(line),
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="selfhood",
                      message=f"%(prog)s %(version)s (simulator: {simulator_build()})")
def cli() -> None:
    """selfhood: does an AI instance stay the same instance when the machine under it is swapped?

    Event-sourced consistency testbed: instances are event logs, failover is
    rehydration, and checkers judge whether the instance that comes back is
    the same one.
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI and turn user errors into clear exit codes."""
    if not os.environ.get("SELFHOOD_DRIVER_LOGS"):
        # aiokafka logs every refused connection on its own; the adapter maps each
        # failure to one typed error, which is what a user should see (once)
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return cli.main(args=argv, prog_name="selfhood", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # one line, like every other user error (click's own output is four)
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {' '.join(exc.format_message().split())}{where}", err=True)
        sys.exit(EX_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (HistoryError, EventDecodeError, ResultsError, OutboxCorrupt, NotALog) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EX_DATAERR)
    except (SpecError, NoSuchLog) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EX_USAGE)
    except MissingExtra as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EX_UNAVAILABLE)
    except SelfhoodError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        click.echo(f"error: {line}", err=True)
        sys.exit(EX_UNAVAILABLE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
