"""Run the sandbox channel on its own: its HTTP app under uvicorn plus its notifier thread.

`piaohao sandbox serve` calls `serve_standalone`. Merchants onboard over HTTP
(`POST /api/merchants`) or with `onboard(database_url, pem)` on the same database.
"""

from __future__ import annotations

import threading

import httpx
import structlog
import uvicorn

from .app import BANK_TIMEOUT_DELAY_S_DEFAULT, create_sandbox_app
from .notifier import DEFAULT_RETRY_S, SandboxNotifier, run_forever
from .service import DEFAULT_TZ
from .store import SandboxStore

__all__ = ["serve_standalone"]

log = structlog.get_logger(__name__)

NOTIFY_TIMEOUT_S = 10.0
NOTIFY_POLL_S = 0.2


def serve_standalone(host: str, port: int, database_url: str, *, public_base_url: str | None = None,
                     tz: str = DEFAULT_TZ, retry_s: tuple[float, ...] = DEFAULT_RETRY_S,
                     bank_timeout_delay_s: float = BANK_TIMEOUT_DELAY_S_DEFAULT) -> None:
    """Serve until interrupted. `public_base_url` defaults to `http://HOST:PORT`."""
    store = SandboxStore(database_url)
    base = (public_base_url or f"http://{host}:{port}").rstrip("/")
    app = create_sandbox_app(store, public_base_url=base, tz=tz, bank_timeout_delay_s=bank_timeout_delay_s)
    http = httpx.Client(timeout=NOTIFY_TIMEOUT_S)
    notifier = SandboxNotifier(store, http, retry_s=retry_s)
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(notifier, stop, NOTIFY_POLL_S), name="sandbox-notifier",
                              daemon=True)
    thread.start()
    log.info("sandbox.serve", host=host, port=port, public_base_url=base)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        stop.set()
        thread.join(timeout=NOTIFY_TIMEOUT_S + 5)
        notifier.close()
        http.close()
        store.dispose()
