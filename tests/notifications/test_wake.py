"""Workers wake when there is work: the in-process wake-up after commit, the PostgreSQL NOTIFY
trigger and its listener, and a Runner that waits on the wake-up (docs/operations.md, "How
workers wake").

No test here depends on timing: the safety poll is set to 300 s, so a delivery inside the
generous bounded waits can only come from a wake-up; the absence of a NOTIFY is proved by a
marker NOTIFY committed after it (PostgreSQL delivers a listener's notifications in commit order).
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import text

from piaohao.db.database import Database
from piaohao.services import notifications as notif
from piaohao.workers.runner import Loop, Runner
from piaohao.workers.wake import WakeListener, libpq_url
from tests.notifications.test_outbox import TRADE, enqueue
from tests.support.merchant import wait_until as poll_until

HUGE_S = 300.0  # a safety poll no test waits for
BOUND_S = 60.0  # generous: reached only when something is broken
MARKER = "piaohao_test_marker"


def wait_until(predicate, what: str, bound_s: float = BOUND_S) -> None:
    assert poll_until(predicate, timeout_s=bound_s, interval_s=0.01), f"not within {bound_s:g} s: {what}"


class Rounds:
    """Wraps a `run_once` and counts its finished rounds."""

    def __init__(self, run_once):
        self._run_once = run_once
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self) -> int:
        try:
            return self._run_once()
        finally:
            with self.lock:
                self.n += 1


def outbox_loop(db, dispatcher) -> tuple[Loop, Rounds]:
    rounds = Rounds(dispatcher.run_once)
    return Loop("outbox", rounds, HUGE_S, db.wakeup(notif.WAKE_TOPIC)), rounds


# ---------------------------------------------------------------- in-process, after commit

def test_a_committed_notification_sets_the_wake_up_and_a_rolled_back_one_does_not(db, clock, app, receiver):
    wake = db.wakeup(notif.WAKE_TOPIC)
    assert db.wakeup(notif.WAKE_TOPIC) is wake  # one event per topic and database

    class Boom(Exception):
        pass

    def rolled_back(conn):
        notif.enqueue(conn, now=clock.now(), merchant_id=app.merchant_id, app_id=app.app_id, type="trade.succeeded",
                      subject_id="T1", data=dict(TRADE), notify_url=receiver.url + "/n")
        raise Boom

    with pytest.raises(Boom):
        db.write(rolled_back)
    assert not wake.is_set()
    db.write(lambda conn: None)  # a later write on the same connection does not inherit the wake-up
    assert not wake.is_set()

    enqueue(db, clock, app, None, subject="T0")  # no notify_url: skipped, nothing to deliver
    assert not wake.is_set()

    enqueue(db, clock, app, receiver.url + "/n", subject="T1")
    assert wake.is_set()

    wake.clear()
    assert enqueue(db, clock, app, receiver.url + "/n", subject="T1") is None  # a duplicate: nothing new
    assert not wake.is_set()


def test_enqueue_many_and_resend_wake_too(db, clock, app, receiver):
    wake = db.wakeup(notif.WAKE_TOPIC)
    event = dict(merchant_id=app.merchant_id, app_id=app.app_id, type="trade.succeeded", data=dict(TRADE))
    db.write(lambda conn: notif.enqueue_many(conn, [dict(event, subject_id="T1", notify_url=None)], now=clock.now()))
    assert not wake.is_set()
    db.write(lambda conn: notif.enqueue_many(conn, [dict(event, subject_id="T2", notify_url=receiver.url + "/n")],
                                             now=clock.now()))
    assert wake.is_set()
    wake.clear()
    skipped = enqueue(db, clock, app, None, subject="T3")
    notif.resend(db, skipped, clock.now())
    assert wake.is_set()


def test_a_committed_notification_wakes_the_dispatcher_loop(db, clock, app, receiver, make_dispatcher):
    loop, rounds = outbox_loop(db, make_dispatcher())
    runner = Runner([loop]).start()
    try:
        wait_until(lambda: rounds.n >= 1, "the first (idle) round")
        eid = enqueue(db, clock, app, receiver.url + "/n")
        wait_until(lambda: receiver.counts()[eid] == 1, "delivery after the wake-up")
        wait_until(lambda: notif.get_event(db, eid)["status"] == "delivered", "the delivery recorded")
    finally:
        runner.stop(timeout_s=BOUND_S)
    assert not any(t.is_alive() for t in runner.threads)


# ---------------------------------------------------------------- the Runner

def test_a_wake_up_during_a_round_is_not_lost():
    wake = threading.Event()
    calls: list[int] = []
    second = threading.Event()

    def run_once() -> int:
        calls.append(1)
        if len(calls) == 1:
            wake.set()  # work committed while the round runs, after its query
        else:
            second.set()
        return 0

    runner = Runner([Loop("x", run_once, HUGE_S, wake)]).start()
    try:
        assert second.wait(BOUND_S), "the wake-up set during the first round did not start a second"
    finally:
        runner.stop(timeout_s=BOUND_S)


@pytest.mark.parametrize("with_wake", [True, False])
def test_stop_returns_while_loops_wait(with_wake):
    waiting = threading.Event()

    def run_once() -> int:
        waiting.set()
        return 0

    runner = Runner([Loop("x", run_once, HUGE_S, threading.Event() if with_wake else None)]).start()
    assert waiting.wait(BOUND_S)
    runner.stop(timeout_s=BOUND_S)  # a loop still waiting out its 300 s would be alive after this
    assert not any(t.is_alive() for t in runner.threads)


# ---------------------------------------------------------------- PostgreSQL: NOTIFY and the listener

def notify(url: str, channel: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"NOTIFY {channel}")


@pytest.fixture
def listener(db_url):
    events = {notif.NOTIFY_CHANNEL: threading.Event(), MARKER: threading.Event()}
    lst = WakeListener(db_url, events).start()
    assert lst.listening.wait(BOUND_S)
    for e in events.values():
        e.clear()  # set once on connecting
    yield lst
    thread = lst._thread
    lst.stop(timeout_s=BOUND_S)
    assert thread is None or not thread.is_alive()


def nothing_notified_before_a_marker(db_url, lst) -> bool:
    """True when no outbox NOTIFY arrived before a marker NOTIFY committed now."""
    notify(db_url, MARKER)
    assert lst.channels[MARKER].wait(BOUND_S)
    lst.channels[MARKER].clear()
    return not lst.channels[notif.NOTIFY_CHANNEL].is_set()


@pytest.mark.postgres_only
def test_the_trigger_notifies_committed_pending_events_only(db, db_url, clock, app, receiver, listener):
    wake = listener.channels[notif.NOTIFY_CHANNEL]
    other = Database(db_url)  # another process's database: its in-process wake-up is not ours
    try:
        def rolled_back(conn):
            notif.enqueue(conn, now=clock.now(), merchant_id=app.merchant_id, app_id=app.app_id,
                          type="trade.succeeded", subject_id="T1", data=dict(TRADE), notify_url=receiver.url)
            conn.rollback()

        with other.engine.connect() as conn:
            rolled_back(conn)
        skipped = enqueue(other, clock, app, None, subject="T0")
        assert nothing_notified_before_a_marker(db_url, listener)

        enqueue(other, clock, app, receiver.url + "/n", subject="T1")
        assert wake.wait(BOUND_S)
        wake.clear()

        notif.resend(other, skipped, clock.now())  # skipped -> pending
        assert wake.wait(BOUND_S)
        wake.clear()

        with other.engine.begin() as conn:  # a failed try: still pending, due later; no NOTIFY
            conn.execute(text("UPDATE outbox_events SET attempts = attempts + 1, last_error = 'x'"
                              " WHERE subject_id = 'T1'"))
        assert nothing_notified_before_a_marker(db_url, listener)
    finally:
        other.dispose()


@pytest.mark.postgres_only
def test_the_listener_reconnects_after_its_connection_is_dropped(db_url, listener):
    wake = listener.channels[notif.NOTIFY_CHANNEL]
    pid = listener.pid
    assert pid is not None
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    wait_until(lambda: listener.connects >= 2 and listener.listening.is_set(), "the listener reconnected")
    assert listener.pid != pid
    wake.clear()  # set on reconnecting (what was notified meanwhile is found by one round)
    notify(db_url, notif.NOTIFY_CHANNEL)
    assert wake.wait(BOUND_S)


@pytest.mark.postgres_only
def test_a_notification_from_another_process_wakes_the_dispatcher_loop(db, db_url, clock, app, receiver,
                                                                        make_dispatcher):
    loop, rounds = outbox_loop(db, make_dispatcher())
    lst = WakeListener(db_url, {notif.NOTIFY_CHANNEL: loop.wake}).start()
    runner = Runner([loop]).start()
    other = Database(db_url)
    try:
        assert lst.listening.wait(BOUND_S)
        n = rounds.n
        wait_until(lambda: rounds.n > n and not loop.wake.is_set(), "an idle round after the listener connected")
        eid = enqueue(other, clock, app, receiver.url + "/n")
        wait_until(lambda: receiver.counts()[eid] == 1, "delivery after the NOTIFY")
    finally:
        runner.stop(timeout_s=BOUND_S)
        lst.stop(timeout_s=BOUND_S)
        other.dispose()
    assert not any(t.is_alive() for t in runner.threads)


# ---------------------------------------------------------------- as assembled by bootstrap

def test_the_assembled_outbox_loop_is_woken(database_url, tmp_path, receiver, monkeypatch):
    """The wiring of `bootstrap.assemble`: on SQLite the in-process wake-up, on PostgreSQL a commit
    from another process's connection reaching the loop through the trigger and the listener."""
    from piaohao import bootstrap
    from piaohao.services.merchants import create_merchant
    from tests.conftest import fast_settings
    from tests.support.servers import free_port

    monkeypatch.setattr(bootstrap, "OUTBOX_SAFETY_POLL_S", HUGE_S)
    settings = fast_settings(database_url, free_port(), tmp_path, notify_retry_s=(HUGE_S,), channel_env={})
    a = bootstrap.assemble(settings, with_api=False)
    db = a.platform.db
    outbox = next(loop for loop in a.loops if loop.name == "outbox")
    assert outbox.idle_s == HUGE_S and outbox.wake is db.wakeup(notif.WAKE_TOPIC)
    assert (a.listener is None) == db.is_sqlite
    rounds = outbox.run_once = Rounds(outbox.run_once)
    shop = create_merchant(a.platform, "Wake Shop")
    writer = db if db.is_sqlite else Database(database_url)  # PostgreSQL: as if another process
    a.start_workers()
    try:
        if a.listener is not None:
            assert a.listener.listening.wait(BOUND_S)
        wait_until(lambda: rounds.n >= 1, "the first (idle) round")
        eid = enqueue(writer, a.platform.clock, shop, receiver.url + "/n")
        wait_until(lambda: receiver.counts()[eid] == 1, "delivery after the wake-up")
    finally:
        a.close()
        if writer is not db:
            writer.dispose()
