"""`piaohao operators ...`: who may sign in to the console at /console (docs/console.md)."""

from __future__ import annotations

import typer

from piaohao.cli.common import _fail, _platform, _print
from piaohao.kernel.errors import PiaohaoError
from piaohao.services import operators

app = typer.Typer(help="Console operators (viewer, operator, admin).", no_args_is_help=True)


@app.command("add")
def operators_add(name: str, role: str = typer.Option(..., "--role", help="viewer | operator | admin"),
                  as_json: bool = typer.Option(False, "--json")):
    """Add an operator. Its password is generated and shown this once (only its hash is kept)."""
    if role not in operators.ROLES:
        typer.echo(f"error: --role must be one of {', '.join(operators.ROLES)}", err=True)
        raise typer.Exit(2)
    try:
        _print(operators.add_operator(_platform(), name, role), as_json)
    except PiaohaoError as e:
        _fail(e)


@app.command("list")
def operators_list(as_json: bool = typer.Option(False, "--json")):
    """Operators with their role and state (never a password or its hash)."""
    _print(operators.list_operators(_platform()), as_json)
