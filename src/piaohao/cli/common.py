"""What every operator command shares: settings, the database, output, errors."""

from __future__ import annotations

import json
from datetime import datetime

import typer

from piaohao.bootstrap import open_database
from piaohao.kernel.clock import SystemClock
from piaohao.kernel.errors import PiaohaoError
from piaohao.kernel.settings import Settings, SettingsError
from piaohao.platform import Platform

__all__ = ["_db", "_fail", "_json_default", "_platform", "_print", "_settings"]


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _db(migrate_now: bool | None = None):
    return open_database(_settings(), migrate_now=migrate_now)


def _print(obj, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(obj, default=_json_default, ensure_ascii=False))
    elif isinstance(obj, list):
        for row in obj:
            typer.echo("  ".join(f"{k}={_json_default(v) if isinstance(v, datetime) else v}" for k, v in row.items()))
    else:
        for k, v in obj.items():
            typer.echo(f"{k}: {_json_default(v) if isinstance(v, datetime) else v}")


def _json_default(v):
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def _fail(e: PiaohaoError) -> None:
    typer.echo(f"error: {e.code}: {e.message}", err=True)
    raise typer.Exit(1)


def _platform():
    return Platform(settings=_settings(), db=_db(), clock=SystemClock())
