"""`piaohao sandbox serve`: the simulated channel on its own port, so the platform talks to it over
real HTTP (point the platform at it with PIAOHAO_SANDBOX_URL=http://HOST:PORT)."""

from __future__ import annotations

import os

import typer

from piaohao.kernel.logs import configure

from .standalone import serve_standalone

app = typer.Typer(help="The sandbox payment channel.", no_args_is_help=True)


@app.command("serve")
def sandbox_serve(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8100, "--port"),
                  database_url: str = typer.Option("sqlite:///piaohao-sandbox.db", "--database-url")):
    """Run the sandbox channel on its own (its HTTP API, buyer pages and notifier)."""
    configure(os.environ.get("PIAOHAO_LOG_LEVEL", "INFO").upper())
    serve_standalone(host, port, database_url)
