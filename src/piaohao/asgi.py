"""An ASGI factory for running several API processes (`piaohao serve --processes N`).

Each process assembles its own platform from the environment (the parent has already migrated
the database and set PIAOHAO_BASE_URL), runs the sandbox simulator when it is in-process, and
runs its own workers unless PIAOHAO_SERVE_WORKERS=0: workers claim work with leases and
SKIP LOCKED, so several processes share it safely.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

import structlog

from piaohao.bootstrap import assemble
from piaohao.kernel.logs import configure
from piaohao.kernel.settings import Settings

log = structlog.get_logger(__name__)


def create():
    settings = Settings.from_env()
    configure(settings.log_level)
    try:
        assembly = assemble(settings, migrate_now=False)
    except Exception:
        # Logged here, through the scrubber: escaping, it would be printed raw by multiprocessing.
        # Exit code 1 (not uvicorn's startup failure, 3): the supervisor starts the child again,
        # so a transient failure (a locked SQLite file while the other child starts) heals.
        log.exception("serve.process_start_failed")
        raise SystemExit(1) from None
    app = assembly.app
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        assembly.start_channel_simulators()
        if os.environ.get("PIAOHAO_SERVE_WORKERS", "1") != "0":
            assembly.start_workers()
        try:
            async with inner(a) as state:
                yield state
        finally:
            assembly.close()

    app.router.lifespan_context = lifespan
    return app
