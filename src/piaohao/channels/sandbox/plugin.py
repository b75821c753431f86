"""The sandbox as a channel kind: how the platform builds its adapter and runs the simulated
channel (the "other company") in-process, without naming either.

Its own settings (read from the platform's PIAOHAO_* environment):
    PIAOHAO_SANDBOX               on | off; default on for the embedded default, off otherwise
    PIAOHAO_SANDBOX_URL           empty: the simulator is mounted in-process at /sandbox; else the
                                  base URL of a standalone `piaohao sandbox serve`
    PIAOHAO_SANDBOX_DATABASE_URL  the simulator's own storage; default `<db>-sandbox.db` beside a
                                  SQLite database, else ./piaohao-sandbox.db

The platform's key pair at the sandbox and its merchant number there are the platform account's
configuration, which the core stores (the private key sealed) and hands back at the next start,
so a restart keeps its merchant number and the payments made under it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import httpx

from piaohao.channels.spi.plugin import ChannelContext, ChannelKind, ConfigError, Provisioned, SimulatorLoop

from . import rsa
from .app import create_sandbox_app
from .cli import app as sandbox_cli
from .client import SandboxChannel, onboard_remote
from .notifier import SandboxNotifier
from .service import SandboxService
from .store import SandboxStore

__all__ = ["KIND", "sandbox_enabled", "store_url"]

NAME = "sandbox"
NOTIFY_HTTP_TIMEOUT_S = 10.0
SECRET_FIELDS = frozenset({"private_key_pem"})


class _Clock:
    """The platform's clock as the sandbox's `Clock` protocol (an object with `now()`)."""

    def __init__(self, now: Callable[[], datetime]):
        self.now = now


def sandbox_enabled(ctx: ChannelContext) -> bool:
    mode = (ctx.env.get("PIAOHAO_SANDBOX") or "").strip().lower()
    if mode not in ("", "on", "off"):
        raise ConfigError(f"PIAOHAO_SANDBOX must be on or off, not {mode[:16]!r}")
    return mode == "on" if mode else ctx.embedded


def store_url(ctx: ChannelContext) -> str:
    """The simulator keeps its own storage: its own SQLite file beside ours by default."""
    if url := ctx.env.get("PIAOHAO_SANDBOX_DATABASE_URL"):
        return url
    url = ctx.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        return f"sqlite:///{path.with_name(path.stem + '-sandbox' + (path.suffix or '.db'))}"
    return "sqlite:///piaohao-sandbox.db"


def _build(config: Mapping[str, str], ctx: ChannelContext) -> SandboxChannel:
    try:
        rsa.public_pem_of(config["private_key_pem"])
        rsa.load_public(config["channel_public_key_pem"])
    except (KeyError, ValueError) as e:
        raise ConfigError(f"sandbox account configuration: {type(e).__name__}") from None
    return SandboxChannel(config["base_url"], config["mch_id"], config["private_key_pem"],
                          config["channel_public_key_pem"], timeout_s=ctx.timeout_s,
                          http_client=ctx.http_client(), clock=_Clock(ctx.now))


def _provision(stored: Mapping[str, str] | None, ctx: ChannelContext) -> Provisioned | None:
    if not sandbox_enabled(ctx):
        return None
    private_pem = (stored or {}).get("private_key_pem") or rsa.generate_private_pem()
    public_pem = rsa.public_pem_of(private_pem)
    remote = (ctx.env.get("PIAOHAO_SANDBOX_URL") or "").rstrip("/")
    if remote:
        mch_id, channel_pem = onboard_remote(remote, public_pem, reuse_existing=True)
        return Provisioned(config={"base_url": remote, "mch_id": mch_id, "private_key_pem": private_pem,
                                   "channel_public_key_pem": channel_pem})
    base = f"{ctx.base_url.rstrip('/')}/sandbox"
    clock = _Clock(ctx.now)
    store = SandboxStore(store_url(ctx))
    app = create_sandbox_app(store, public_base_url=base, clock=clock, tz=ctx.business_tz,
                             bank_timeout_delay_s=ctx.timeout_s + 1)
    service: SandboxService = app.state.sandbox
    answer = service.onboard(public_pem, reuse_existing=True)
    notifier = SandboxNotifier(store, httpx.Client(timeout=NOTIFY_HTTP_TIMEOUT_S, trust_env=False), clock)
    return Provisioned(
        config={"base_url": base, "mch_id": answer["mch_id"], "private_key_pem": private_pem,
                "channel_public_key_pem": answer["channel_public_key_pem"]},
        mounts={"/sandbox": app},
        loops=[SimulatorLoop("sandbox-notifier", notifier.run_once, ctx.worker_poll_s)],
        closers=[notifier.close, store.dispose],
        extras={"sandbox_service": service, "sandbox_store": store, "sandbox_notifier": notifier},
    )


KIND = ChannelKind(name=NAME, products=SandboxChannel.products, secret_fields=SECRET_FIELDS, build=_build,
                   describe=lambda config: config.get("mch_id", ""), provision=_provision, cli=sandbox_cli)
