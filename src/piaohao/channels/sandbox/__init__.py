"""The sandbox channel: a simulated third-party payment channel (its own app, storage, keys and
wire vocabulary) and the platform's adapter for it.

Embedded wiring (the platform's default):
    store = SandboxStore(sandbox_store_url(settings))  # a file or PostgreSQL; avoid "sqlite://" under load
    app.mount("/sandbox", create_sandbox_app(store, public_base_url=base_url + "/sandbox", clock=clock))
    mch_id, channel_pem = onboard(store, platform_public_key_pem, reuse_existing=True)
    channel = SandboxChannel(base_url + "/sandbox", mch_id, platform_private_pem, channel_pem,
                             timeout_s=settings.channel_timeout_s)
    notifier = SandboxNotifier(store, httpx.Client(timeout=...), clock)  # run_once() in a worker loop
"""

from __future__ import annotations

from piaohao.db.database import Database

from .app import create_sandbox_app
from .client import ChannelUnavailable, SandboxChannel, onboard_remote
from .notifier import SandboxNotifier, run_forever
from .service import SandboxService
from .standalone import serve_standalone
from .store import SandboxStore

__all__ = ["create_sandbox_app", "SandboxStore", "SandboxService", "SandboxNotifier", "SandboxChannel",
           "ChannelUnavailable", "onboard", "onboard_remote", "run_forever", "serve_standalone"]


def onboard(store_or_url: SandboxStore | Database | str, platform_public_key_pem: str, *,
            reuse_existing: bool = False) -> tuple[str, str]:
    """Register the platform with an in-process sandbox: returns (mch_id, channel_public_key_pem).
    With `reuse_existing`, a key registered before gets its old merchant back (restarts)."""
    own = not isinstance(store_or_url, SandboxStore)
    store = SandboxStore(store_or_url) if own else store_or_url
    try:
        answer = SandboxService(store, public_base_url="").onboard(platform_public_key_pem,
                                                                   reuse_existing=reuse_existing)
    finally:
        if own and not isinstance(store_or_url, Database):
            store.dispose()
    return answer["mch_id"], answer["channel_public_key_pem"]
