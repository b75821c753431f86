"""An ASGI factory for running several API processes (`piaohao serve --processes N`).

Each process assembles its own platform from the environment (the parent has already migrated
the database and set PIAOHAO_BASE_URL), runs the sandbox simulator when it is in-process, and
runs its own workers unless PIAOHAO_SERVE_WORKERS=0: workers claim work with leases and
SKIP LOCKED, so several processes share it safely.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from piaohao.bootstrap import assemble
from piaohao.kernel.logs import configure
from piaohao.kernel.settings import Settings


def create():


    settings = Settings.from_env()
    configure(settings.log_level)
    assembly = assemble(settings, migrate_now=False)
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
