"""How the platform plugs the sandbox channel in: mounted in-process at /sandbox (the embedded
default), or reached over HTTP at PIAOHAO_SANDBOX_URL (a standalone `piaohao sandbox serve`).

The platform's RSA key pair for the channel lives in `channel_credentials`; the channel's public
key and our merchant number there come from onboarding, as with a real channel's console.
"""

from __future__ import annotations

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from piaohao.db.schema import channel_credentials
from piaohao.platform import Platform
from piaohao.workers.runner import Loop

from . import rsa
from .app import create_sandbox_app
from .client import SandboxChannel, onboard_remote
from .notifier import SandboxNotifier
from .service import SandboxService
from .store import SandboxStore

CHANNEL = "sandbox"
NOTIFY_HTTP_TIMEOUT_S = 10.0


def _platform_private_pem(p: Platform) -> str:
    with p.db.read() as conn:
        row = conn.execute(select(channel_credentials).where(channel_credentials.c.channel == CHANNEL)).first()
    if row is not None:
        return row.private_key_pem
    private_pem = rsa.generate_private_pem()
    try:
        p.db.write(lambda conn: conn.execute(insert(channel_credentials).values(
            channel=CHANNEL, mch_id="", private_key_pem=private_pem, channel_public_key_pem=None,
            created_at=p.clock.now())))
    except IntegrityError:
        pass  # another process made one first: use theirs
    return _platform_private_pem(p)


def _remember(p: Platform, mch_id: str, channel_pem: str) -> None:
    p.db.write(lambda conn: conn.execute(update(channel_credentials).where(
        channel_credentials.c.channel == CHANNEL).values(mch_id=mch_id, channel_public_key_pem=channel_pem)))


def wire_sandbox(p: Platform, mounts: dict, loops: list, closers: list, extras: dict) -> None:
    """Register the sandbox channel on `p`; add its app to `mounts` and its notifier to `loops`."""
    from piaohao.bootstrap import sandbox_store_url

    settings = p.settings
    private_pem = _platform_private_pem(p)
    public_pem = rsa.public_pem_of(private_pem)
    if settings.sandbox_url:
        base = settings.sandbox_url.rstrip("/")
        mch_id, channel_pem = onboard_remote(base, public_pem, reuse_existing=True)
    else:
        base = f"{p.base_url}/sandbox"
        store = SandboxStore(sandbox_store_url(settings))
        app = create_sandbox_app(store, public_base_url=base, clock=p.clock, tz=settings.business_tz,
                                 bank_timeout_delay_s=settings.channel_timeout_s + 1)
        service: SandboxService = app.state.sandbox
        answer = service.onboard(public_pem, reuse_existing=True)
        mch_id, channel_pem = answer["mch_id"], answer["channel_public_key_pem"]
        notifier = SandboxNotifier(store, httpx.Client(timeout=NOTIFY_HTTP_TIMEOUT_S, trust_env=False), p.clock)
        mounts["/sandbox"] = app
        # The simulated channel's own worker: it runs wherever the sandbox is mounted, workers or not.
        extras["sandbox_loops"] = [Loop("sandbox-notifier", notifier.run_once, settings.worker_poll_s)]
        extras["sandbox_service"], extras["sandbox_store"], extras["sandbox_notifier"] = service, store, notifier
        closers += [notifier.close, store.dispose]
    _remember(p, mch_id, channel_pem)
    channel = SandboxChannel(base, mch_id, private_pem, channel_pem, timeout_s=settings.channel_timeout_s,
                             http_client=httpx.Client(timeout=settings.channel_timeout_s, trust_env=False),
                             clock=p.clock)
    p.channels[CHANNEL] = channel
    closers.append(channel.http.close)
