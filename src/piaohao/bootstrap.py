"""Assemble a running platform from settings: database, channels, HTTP app, workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from piaohao.api.app import create_app
from piaohao.api.gateway import purge_nonces
from piaohao.db import migrate
from piaohao.db.database import Database
from piaohao.kernel.clock import Clock, SystemClock
from piaohao.kernel.settings import Settings
from piaohao.platform import Platform
from piaohao.services.payments import query_due_payments
from piaohao.workers.dispatcher import OutboxDispatcher
from piaohao.workers.expiry import ExpiryWorker
from piaohao.workers.payouts import PayoutExecutor
from piaohao.workers.refunds import RefundWorker
from piaohao.workers.runner import Loop, Runner
from piaohao.workers.settlement import SETTLEMENT_CHECK_EVERY_S, SettlementWorker

NONCE_PURGE_EVERY_S = 60.0


def open_database(settings: Settings, *, migrate_now: bool | None = None) -> Database:
    """Open the database; the embedded default (SQLite) migrates itself, PostgreSQL when asked."""
    db = Database(settings.database_url)
    if migrate_now if migrate_now is not None else db.is_sqlite:
        migrate.upgrade(db)
    return db


def sandbox_store_url(settings: Settings) -> str:
    """The sandbox channel keeps its own storage: its own SQLite file beside ours by default."""
    if settings.sandbox_database_url:
        return settings.sandbox_database_url
    url = settings.database_url
    if url.startswith("sqlite:///") and url not in ("sqlite:///:memory:",):
        path = Path(url[len("sqlite:///"):])
        return f"sqlite:///{path.with_name(path.stem + '-sandbox' + (path.suffix or '.db'))}"
    return "sqlite:///piaohao-sandbox.db"


@dataclass
class Assembly:
    platform: Platform
    app: object
    loops: list[Loop] = field(default_factory=list)
    closers: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    runner: Runner | None = None
    channel_runner: Runner | None = None

    def start_channel_simulators(self) -> None:
        """Loops of in-process simulated channels (the sandbox's notifier): they belong to the
        channel, not to the platform's workers, so they run even with --no-workers."""
        if self.extras.get("sandbox_loops") and self.channel_runner is None:
            self.channel_runner = Runner(self.extras["sandbox_loops"]).start()

    def start_workers(self) -> Runner:
        self.runner = Runner(self.loops).start()
        return self.runner

    def __getattr__(self, name: str):
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(name)

    def close(self) -> None:
        for r in (self.runner, self.channel_runner):
            if r:
                r.stop()
        for c in self.closers:
            c()
        self.platform.db.dispose()


def assemble(settings: Settings, *, clock: Clock | None = None, migrate_now: bool | None = None,
             with_api: bool = True) -> Assembly:
    clock = clock or SystemClock()
    db = open_database(settings, migrate_now=migrate_now)
    p = Platform(settings=settings, db=db, clock=clock)
    mounts: dict = {}
    loops: list[Loop] = []
    closers: list = []
    from piaohao.channels.sandbox.wiring import wire_sandbox

    extras: dict = {}
    wire_sandbox(p, mounts, loops, closers, extras)
    dispatcher = OutboxDispatcher(db, settings, clock, http=httpx.Client())
    closers.append(dispatcher.close)
    expiry = ExpiryWorker(p)
    poll = settings.worker_poll_s
    loops += [
        Loop("outbox", dispatcher.run_once, poll),
        Loop("expiry", expiry.run_once, max(poll, 0.5)),
        Loop("active-query", lambda: query_due_payments(p), poll),
        Loop("nonce-purge", lambda: (purge_nonces(p), 0)[1], NONCE_PURGE_EVERY_S),
        Loop("payouts", PayoutExecutor(p).run_once, poll),
        Loop("refunds", RefundWorker(p).run_once, poll),
        Loop("settlement", SettlementWorker(p).run_once, max(poll, min(SETTLEMENT_CHECK_EVERY_S, 20 * poll))),
    ]
    app = create_app(p, extra_mounts=mounts) if with_api else None
    return Assembly(platform=p, app=app, loops=loops, closers=closers, extras=extras)
