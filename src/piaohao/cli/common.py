"""What every operator command shares: settings, the database, output, errors."""

from __future__ import annotations

import json
from datetime import datetime

import structlog
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from piaohao import __version__
from piaohao.bootstrap import open_database
from piaohao.kernel.clock import SystemClock
from piaohao.kernel.errors import PiaohaoError
from piaohao.kernel.logs import CurrentStderr
from piaohao.kernel.settings import Settings, SettingsError
from piaohao.platform import Platform

__all__ = ["NOTHING_FOUND", "_db", "_fail", "_json_default", "_platform", "_print", "_settings", "root"]


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _db(migrate_now: bool | None = None):
    return open_database(_settings(), migrate_now=migrate_now)


NOTHING_FOUND = "nothing found"
_PLAIN_WIDTH = 200  # columns when the output is not a terminal (piped, captured): tables never squeeze ids


def _print(obj, as_json: bool) -> None:
    """The answer on stdout: JSON with --json, else a readable table (a list) or key/value pairs
    (an object); "nothing found" for an empty list. Nothing else is ever written to stdout."""
    if as_json:
        typer.echo(json.dumps(obj, default=_json_default, ensure_ascii=False))
        return
    if not obj:
        typer.echo(NOTHING_FOUND)
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=_PLAIN_WIDTH)
    if isinstance(obj, list):
        columns = list(dict.fromkeys(k for row in obj for k in row))
        table = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False)
        for row in obj:
            table.add_row(*(_cell(row.get(k)) for k in columns))
        for column in table.columns:
            column.overflow = "fold"
    else:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for k, v in obj.items():
            table.add_row(str(k), _cell(v))
    console.print(table)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict | list):
        return json.dumps(v, default=_json_default, ensure_ascii=False)
    return str(v)


def _json_default(v):
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def _fail(e: PiaohaoError) -> None:
    typer.echo(f"error: {e.code}: {e.message}", err=True)
    raise typer.Exit(1)


def _platform():
    return Platform(settings=_settings(), db=_db(), clock=SystemClock())


def _version(show: bool) -> None:
    if show:
        typer.echo(f"piaohao {__version__}")
        raise typer.Exit()


def root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                      help="Print the version and exit.")) -> None:
    """piaohao: an aggregated payment platform. Every command acts on PIAOHAO_DATABASE_URL;
    `--json` prints the answer as JSON and nothing else."""
    # Always, not only when nothing configured structlog yet: a partial configuration made
    # elsewhere (structlog's capture_logs, say) keeps the default factory, which prints to
    # stdout. Log lines go to stderr; stdout carries the command's answer alone.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=CurrentStderr()))
