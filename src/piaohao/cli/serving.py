"""What `piaohao serve` tells its operator: where it listens and what runs, once it is ready."""

from __future__ import annotations

import threading

import typer
import uvicorn
from sqlalchemy.engine import make_url

from piaohao import __version__
from piaohao.kernel.settings import Settings

__all__ = ["announce_when_ready", "ready_message"]

READY_WAIT_S_MAX = 600.0  # give up announcing (the server prints its own error) after this long


def ready_message(settings: Settings, host: str, port: int, *, workers: list[str], channels: list[str]) -> str:
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    sandbox = settings.channel_env.get("PIAOHAO_SANDBOX_URL") or ""
    loops = f"workers ({', '.join(workers)})" if workers else "no workers (--no-workers)"
    return "\n".join([
        f"piaohao {__version__} listening on http://{host}:{port}",
        f"  runs      API, cashier, {loops}",
        f"  channels  {', '.join(channels) or 'none yet (piaohao channels add)'}",
        f"  database  {database}",
        f"  public    {settings.base_url}" + (f"  (sandbox channel at {sandbox})" if sandbox else ""),
        f"  docs      {base}/docs   health {base}/healthz   Ctrl-C stops",
    ])


def announce_when_ready(server: uvicorn.Server, settings: Settings, host: str, port: int, *, workers: list[str],
                        channels: list[str]) -> None:
    """Print the ready message on stderr as soon as `server` accepts connections."""
    message = ready_message(settings, host, port, workers=workers, channels=channels)

    def wait_then_print() -> None:
        step_s, waited_s = 0.05, 0.0
        while not server.started and not server.should_exit and waited_s < READY_WAIT_S_MAX:
            threading.Event().wait(step_s)
            waited_s += step_s
        if server.started:
            typer.echo(message, err=True)

    threading.Thread(target=wait_then_print, name="serve-ready", daemon=True).start()
