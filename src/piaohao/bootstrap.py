"""Assemble a running platform from settings: database, channels, HTTP app, workers."""

from __future__ import annotations

from dataclasses import dataclass, field

from piaohao.api.app import create_app
from piaohao.api.gateway import purge_nonces
from piaohao.channels.registry import KINDS
from piaohao.channels.spi.plugin import ChannelKind
from piaohao.db import migrate
from piaohao.db.database import Database
from piaohao.kernel.clock import Clock, SystemClock
from piaohao.kernel.settings import Settings
from piaohao.platform import Platform
from piaohao.services.agreements import sync_due_agreements
from piaohao.services.channel_accounts import provisioned_config, store_provisioned
from piaohao.services.keys import check_key
from piaohao.services.notifications import NOTIFY_CHANNEL, WAKE_TOPIC
from piaohao.services.payments import query_due_payments
from piaohao.workers.dispatcher import OutboxDispatcher
from piaohao.workers.expiry import ExpiryWorker
from piaohao.workers.payouts import PayoutExecutor
from piaohao.workers.recon import ReconWorker, idle_s
from piaohao.workers.refunds import RefundWorker
from piaohao.workers.runner import Loop, Runner
from piaohao.workers.settlement import SETTLEMENT_CHECK_EVERY_S, SettlementWorker
from piaohao.workers.wake import WakeListener

NONCE_PURGE_EVERY_S = 60.0
# The outbox loop is woken when an event is committed (in this process: Database.wake_after_commit;
# from others, on PostgreSQL: the NOTIFY trigger and the WakeListener), so it polls only for what
# nobody signals: retries falling due, expired leases, a listener that was down. Never longer than
# the retry schedule's smallest step, so a retry goes out at most that late (docs/operations.md).
OUTBOX_SAFETY_POLL_S = 2.0
CLOCK_LOOP_POLL_S = 1.0  # the slowest poll of the clock-driven loops (see `assemble`)


def outbox_idle_s(settings: Settings) -> float:
    return max(settings.worker_poll_s, min([OUTBOX_SAFETY_POLL_S, *settings.notify_retry_s]))


def open_database(settings: Settings, *, migrate_now: bool | None = None) -> Database:
    """Open the database; the embedded default (SQLite) migrates itself, PostgreSQL when asked."""
    db = Database(settings.database_url)
    if migrate_now if migrate_now is not None else db.is_sqlite:
        migrate.upgrade(db, sealer=settings.sealer)
    return db


@dataclass
class Assembly:
    platform: Platform
    app: object
    loops: list[Loop] = field(default_factory=list)
    closers: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    runner: Runner | None = None
    channel_runner: Runner | None = None
    wakes: dict = field(default_factory=dict)  # loop name -> its wake-up event
    listener: WakeListener | None = None  # PostgreSQL: started and stopped with the workers

    simulator_loops: list[Loop] = field(default_factory=list)

    def start_channel_simulators(self) -> None:
        """Loops of in-process simulated channels (the sandbox's notifier): they belong to the
        channel, not to the platform's workers, so they run even with --no-workers."""
        if self.simulator_loops and self.channel_runner is None:
            self.channel_runner = Runner(self.simulator_loops).start()

    def start_workers(self) -> Runner:
        for loop in self.loops:  # loops rebuilt by their name and interval (the drills) keep their wake-up
            if loop.wake is None:
                loop.wake = self.wakes.get(loop.name)
        if self.listener is not None:
            self.listener.start()
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
        if self.listener is not None:
            self.listener.stop()
        for c in self.closers:
            c()
        self.platform.db.dispose()


def assemble(settings: Settings, *, clock: Clock | None = None, migrate_now: bool | None = None,
             with_api: bool = True) -> Assembly:
    clock = clock or SystemClock()
    db = open_database(settings, migrate_now=migrate_now)
    p = Platform(settings=settings, db=db, clock=clock)
    check_key(p)  # a wrong PIAOHAO_SECRET_KEY is a clear error now, not a failure at the first request
    mounts: dict = {}
    loops: list[Loop] = []
    closers: list = []
    extras: dict = {}
    simulator_loops: list[Loop] = []
    for kind in KINDS.values():
        if kind.provision is not None:
            _provision(p, kind, mounts, simulator_loops, closers, extras)
    dispatcher = OutboxDispatcher(db, settings, clock, sealer=p.sealer)  # its own guarded outbound client
    closers.append(dispatcher.close)
    expiry = ExpiryWorker(p)
    poll = settings.worker_poll_s
    # Loops whose work becomes due by the clock (a trade expires, a payment is due for its active
    # query, a lease runs out) or that nobody signals (payouts): none promises sub-second timing,
    # so they poll five times slower than `worker_poll_s`, at most every CLOCK_LOOP_POLL_S.
    clock_poll = max(poll, min(CLOCK_LOOP_POLL_S, 5 * poll))
    wakes = {"outbox": db.wakeup(WAKE_TOPIC)}
    listener = None if db.is_sqlite else WakeListener(db.url, {NOTIFY_CHANNEL: wakes["outbox"]})
    loops += [
        Loop("outbox", dispatcher.run_once, outbox_idle_s(settings), wakes["outbox"]),
        Loop("expiry", expiry.run_once, clock_poll),
        Loop("active-query", lambda: query_due_payments(p), clock_poll),
        Loop("agreements", lambda: sync_due_agreements(p), clock_poll),
        Loop("nonce-purge", lambda: (purge_nonces(p), 0)[1], NONCE_PURGE_EVERY_S),
        Loop("payouts", PayoutExecutor(p).run_once, clock_poll),
        Loop("refunds", RefundWorker(p).run_once, clock_poll),
        Loop("settlement", SettlementWorker(p).run_once, max(poll, min(SETTLEMENT_CHECK_EVERY_S, 20 * poll))),
        Loop("recon", ReconWorker(p).run_once, idle_s(p)),
    ]
    app = create_app(p, extra_mounts=mounts) if with_api else None
    return Assembly(platform=p, app=app, loops=loops, closers=closers, extras=extras,
                    simulator_loops=simulator_loops, wakes=wakes, listener=listener)


def _provision(p: Platform, kind: ChannelKind, mounts: dict, loops: list[Loop], closers: list, extras: dict) -> None:
    """Start a self-provisioning channel kind (its simulator, its platform account). The first
    process to store the account's configuration wins; a process that lost the race starts again
    from the winner's, so every process shares one identity at the channel."""
    stored = provisioned_config(p, kind.name)
    done = kind.provision(stored, p.channel_context())
    if done is None:
        return
    if not store_provisioned(p, kind.name, done.config, create_only=stored is None):
        for close in done.closers:
            close()
        done = kind.provision(provisioned_config(p, kind.name), p.channel_context())
        store_provisioned(p, kind.name, done.config)
    elif stored is not None:
        store_provisioned(p, kind.name, done.config)
    channel = kind.build(done.config, p.channel_context())
    p.channels[kind.name] = channel
    mounts.update(done.mounts)
    loops.extend(Loop(loop.name, loop.run_once, loop.interval_s) for loop in done.loops)
    closers.extend(done.closers)
    if hasattr(channel, "http"):
        closers.append(channel.http.close)
    extras.update(done.extras)
