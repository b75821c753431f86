"""The transactional outbox and the merchant-notification dispatcher, end to end over real HTTP."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from datetime import datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, insert, select, update

from piaohao.db.database import Database
from piaohao.db.schema import apps, merchants, outbox_events
from piaohao.kernel import signing
from piaohao.kernel.errors import EventNotFound
from piaohao.kernel.ids import new_id, new_secret
from piaohao.kernel.sealing import Sealer
from piaohao.services import notifications as notif
from piaohao.services.merchants import seal_secret
from tests.conftest import TEST_SECRET_KEY
from tests.support.servers import free_port

TRADE = {"trade_no": "T1", "out_trade_no": "A1", "amount": 1999, "currency": "CNY", "status": "succeeded"}


def enqueue(db, clock, app, url, *, subject="T1", type="trade.succeeded", data=None, dedupe_key=None):
    return db.write(lambda conn: notif.enqueue(
        conn, now=clock.now(), merchant_id=app.merchant_id, app_id=app.app_id, type=type, subject_id=subject,
        data=data if data is not None else dict(TRADE, trade_no=subject), notify_url=url, dedupe_key=dedupe_key))


def stored_payload(db, event_id) -> bytes:
    return notif.get_event(db, event_id)["payload"].encode()


def assert_signed(req, app, secret=None):
    h = req["headers"]
    assert h["content-type"] == "application/json"
    assert h["x-app-id"] == app.app_id
    assert re.fullmatch(r"[0-9a-f]{32}", h["x-nonce"])
    expected = signing.sign(secret or app.secret, "POST", req["path_and_query"], h["x-timestamp"], h["x-nonce"],
                            req["body"])
    assert h["x-signature"] == expected


# ---------------------------------------------------------------- enqueue

def test_enqueue_freezes_payload_and_is_pending(db, clock, app, receiver):
    eid = enqueue(db, clock, app, receiver.url + "/n")
    assert eid and eid.startswith("evt_")
    ev = notif.get_event(db, eid)
    assert ev["status"] == "pending" and ev["attempts"] == 0 and ev["dedupe_key"] == "trade.succeeded:T1"
    body = orjson.loads(ev["payload"])
    assert body == {"id": eid, "type": "trade.succeeded", "created_at": "2026-11-23T02:00:00+00:00",
                    "data": dict(TRADE)}
    assert datetime.fromisoformat(body["created_at"]) == clock.now()


def test_enqueue_twice_same_dedupe_key_one_event_and_caller_commits(db, clock, app, receiver):
    other = new_id("mch")

    def tx(conn):
        first = notif.enqueue(conn, now=clock.now(), merchant_id=app.merchant_id, app_id=app.app_id,
                              type="trade.succeeded", subject_id="T1", data=TRADE, notify_url=receiver.url)
        second = notif.enqueue(conn, now=clock.now(), merchant_id=app.merchant_id, app_id=app.app_id,
                               type="trade.succeeded", subject_id="T1", data=TRADE, notify_url=receiver.url)
        # the caller's own state change, after the duplicate: the transaction must still be usable
        conn.execute(insert(merchants).values(merchant_id=other, name="after", created_at=clock.now()))
        return first, second

    first, second = db.write(tx)
    assert first is not None and second is None
    # and again in a later transaction (a replayed state change)
    assert enqueue(db, clock, app, receiver.url) is None
    # an explicit dedupe key distinguishes facts
    assert enqueue(db, clock, app, receiver.url, dedupe_key="trade.succeeded:T1#2") is not None
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(outbox_events)
                            .where(outbox_events.c.dedupe_key == "trade.succeeded:T1")).scalar_one() == 1
        assert conn.execute(select(merchants.c.name).where(merchants.c.merchant_id == other)).scalar_one() == "after"


def test_enqueue_rolls_back_with_the_callers_transaction(db, clock, app, receiver):
    class Boom(Exception):
        pass

    def tx(conn):
        notif.enqueue(conn, now=clock.now(), merchant_id=app.merchant_id, app_id=app.app_id,
                      type="trade.succeeded", subject_id="T9", data=TRADE, notify_url=receiver.url)
        raise Boom

    with pytest.raises(Boom):
        db.write(tx)
    assert notif.list_events(db) == []


def test_no_notify_url_is_recorded_skipped_and_never_sent(db, clock, app, receiver, make_dispatcher):
    eid = enqueue(db, clock, app, None)
    assert notif.get_event(db, eid)["status"] == "skipped"
    d = make_dispatcher()
    clock.advance(3600)
    assert d.run_once() == 0
    assert notif.list_events(db, status="skipped")[0]["id"] == eid
    assert receiver.requests == []


# ---------------------------------------------------------------- delivery

def test_delivered_once_signed_with_app_secret(db, clock, app, receiver, make_dispatcher):
    url = receiver.url + "/hooks/pay?shop=7&x=a%20b"
    eid = enqueue(db, clock, app, url)
    d = make_dispatcher()
    assert d.run_once() == 1
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req["path_and_query"] == "/hooks/pay?shop=7&x=a%20b"
    assert req["headers"]["x-timestamp"] == str(int(clock.now().timestamp()))
    assert_signed(req, app)
    assert req["body"] == stored_payload(db, eid)
    assert orjson.loads(req["body"])["id"] == eid

    ev = notif.get_event(db, eid)
    assert ev["status"] == "delivered" and ev["attempts"] == 1 and ev["last_status_code"] == 200
    assert ev["delivered_at"] == "2026-11-23T02:00:00+00:00" and ev["last_error"] is None
    [attempt] = notif.list_attempts(db, eid)
    assert attempt["attempt_no"] == 1 and attempt["status_code"] == 200 and attempt["error"] is None

    assert d.run_once() == 0
    clock.advance(86400)
    assert d.run_once() == 0
    assert len(receiver.requests) == 1


def test_signs_with_the_apps_current_secret(db, clock, app, receiver, make_dispatcher):
    enqueue(db, clock, app, receiver.url + "/n")
    rotated = new_secret()
    sealer = Sealer(TEST_SECRET_KEY)
    db.write(lambda conn: conn.execute(update(apps).where(apps.c.app_id == app.app_id).values(
        secret_sealed=seal_secret(sealer, app.app_id, rotated),
        previous_secret_sealed=seal_secret(sealer, app.app_id, app.secret, "previous_secret_sealed"))))
    assert make_dispatcher().run_once() == 1
    assert_signed(receiver.requests[0], app, secret=rotated)


def test_fails_three_times_then_succeeds(db, clock, app, receiver, make_dispatcher, settings):
    receiver.fail_next = 3
    eid = enqueue(db, clock, app, receiver.url + "/n")
    d = make_dispatcher()
    assert d.run_once() == 1
    for k in (1, 2, 3):
        wait = settings.notify_retry_s[k - 1]
        ev = notif.get_event(db, eid)
        assert ev["status"] == "pending" and ev["attempts"] == k and ev["last_error"] == "HTTP 500"
        assert ev["last_status_code"] == 500
        clock.advance(wait - 0.5)
        assert d.run_once() == 0, "retried before its interval"
        clock.advance(0.5)
        assert d.run_once() == 1
    ev = notif.get_event(db, eid)
    assert ev["status"] == "delivered" and ev["attempts"] == 4
    assert len(receiver.requests) == 4
    assert {r["id"] for r in receiver.requests} == {eid}
    assert {r["body"] for r in receiver.requests} == {stored_payload(db, eid)}
    assert len({r["headers"]["x-nonce"] for r in receiver.requests}) == 4
    for r in receiver.requests:
        assert_signed(r, app)
    assert [(a["attempt_no"], a["status_code"]) for a in notif.list_attempts(db, eid)] == [
        (1, 500), (2, 500), (3, 500), (4, 200)]
    clock.advance(86400)
    assert d.run_once() == 0


def drive(d, clock, *, max_rounds=50, step=1000.0):
    """Run, then jump past any retry interval, until nothing is due any more."""
    total = 0
    for _ in range(max_rounds):
        n = d.run_once()
        total += n
        if n == 0:
            clock.advance(step)
            if d.run_once() == 0:
                return total
            total += 1
    raise AssertionError("dispatcher never went idle")


def test_always_failing_is_parked_after_the_last_try(db, clock, app, receiver, make_dispatcher, settings):
    receiver.always_fail, receiver.fail_status = True, 503
    eid = enqueue(db, clock, app, receiver.url + "/n", type="refund.failed", subject="R1")
    d = make_dispatcher()
    tries = drive(d, clock)
    assert tries == len(settings.notify_retry_s) + 1 == len(receiver.requests)
    assert {r["id"] for r in receiver.requests} == {eid}

    [parked] = notif.list_parked(db)
    assert parked["id"] == eid and parked["type"] == "refund.failed" and parked["status"] == "parked"
    assert parked["attempts"] == 4 and parked["last_error"] == "HTTP 503"
    assert parked["merchant_id"] == app.merchant_id and parked["subject_id"] == "R1"
    assert parked["notify_url"] == receiver.url + "/n" and parked["parked_at"] and parked["created_at"]
    assert len(notif.list_attempts(db, eid)) == 4
    clock.advance(10 * 86400)
    assert d.run_once() == 0
    orjson.dumps(notif.list_parked(db))  # what `notifications list --parked --json` prints


def test_resend_parked_event_delivers_it_with_the_same_id(db, clock, app, receiver, make_dispatcher):
    receiver.always_fail = True
    eid = enqueue(db, clock, app, receiver.url + "/n")
    d = make_dispatcher()
    drive(d, clock)
    assert notif.get_event(db, eid)["status"] == "parked"
    receiver.reset()

    ev = notif.resend(db, eid, clock.now())
    assert ev["id"] == eid and ev["status"] == "pending" and ev["attempts"] == 0 and ev["parked_at"] is None
    assert notif.list_parked(db) == []
    assert d.run_once() == 1
    [req] = receiver.requests
    assert req["id"] == eid and req["body"] == stored_payload(db, eid)
    ev = notif.get_event(db, eid)
    assert ev["status"] == "delivered" and ev["attempts"] == 1

    # a delivered event can be resent as well: delivered again, same id and bytes
    notif.resend(db, eid, clock.now())
    assert d.run_once() == 1
    assert [r["id"] for r in receiver.requests] == [eid, eid]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]


def test_resend_starts_the_retry_schedule_again(db, clock, app, receiver, make_dispatcher, settings):
    receiver.always_fail = True
    eid = enqueue(db, clock, app, receiver.url + "/n")
    d = make_dispatcher()
    drive(d, clock)
    notif.resend(db, eid, clock.now())
    assert drive(d, clock) == len(settings.notify_retry_s) + 1
    assert notif.get_event(db, eid)["status"] == "parked"


def test_resend_unknown_event(db, clock):
    with pytest.raises(EventNotFound):
        notif.resend(db, "evt_nope", clock.now())
    with pytest.raises(EventNotFound):
        notif.get_event(db, "evt_nope")


def test_expired_lease_is_delivered_later_with_the_same_id(db, clock, app, receiver, make_dispatcher):
    eid = enqueue(db, clock, app, receiver.url + "/n")
    crashed, survivor = make_dispatcher(), make_dispatcher()
    [claim] = crashed.claim()  # ...and the worker dies before delivering or recording
    assert claim.event_id == eid and claim.attempt == 1
    assert survivor.run_once() == 0, "leased events are not picked by others"
    assert claim.lease_until > clock.now()
    clock.set(claim.lease_until - timedelta(seconds=1))
    assert survivor.run_once() == 0
    clock.set(claim.lease_until)
    assert survivor.run_once() == 1
    [req] = receiver.requests
    assert req["id"] == eid and req["body"] == stored_payload(db, eid)
    ev = notif.get_event(db, eid)
    assert ev["status"] == "delivered" and ev["attempts"] == 2

    # the crashed worker comes back and records a (late) failure: it no longer holds the lease
    late = dataclasses.replace(crashed.deliver(claim), ok=False, status_code=500, error="HTTP 500")
    assert crashed.record(claim, late) is False
    ev = notif.get_event(db, eid)
    assert ev["status"] == "delivered" and ev["last_status_code"] == 200 and ev["last_error"] is None
    assert [a["attempt_no"] for a in notif.list_attempts(db, eid)] == [2, 1]  # the late try is still logged


def test_resend_during_delivery_drops_the_in_flight_result(db, clock, app, receiver, make_dispatcher):
    receiver.always_fail = True
    eid = enqueue(db, clock, app, receiver.url + "/n")
    d = make_dispatcher()
    [claim] = d.claim()
    notif.resend(db, eid, clock.now())  # operator resends while the try is in flight
    assert d.record(claim, d.deliver(claim)) is False
    ev = notif.get_event(db, eid)
    assert ev["status"] == "pending" and ev["attempts"] == 0
    receiver.always_fail = False
    assert d.run_once() == 1
    assert notif.get_event(db, eid)["status"] == "delivered"


def test_timeout_counts_as_a_failure(db, clock, app, receiver, make_dispatcher, settings):
    receiver.delay_s = 1.5
    eid = enqueue(db, clock, app, receiver.url + "/slow")
    d = make_dispatcher(settings_=settings.with_(notify_timeout_s=0.3))
    t0 = time.monotonic()
    assert d.run_once() == 1
    assert time.monotonic() - t0 < 1.4
    ev = notif.get_event(db, eid)
    assert ev["status"] == "pending" and ev["attempts"] == 1 and ev["last_status_code"] is None
    assert "timeout" in ev["last_error"]
    [attempt] = notif.list_attempts(db, eid)
    assert attempt["status_code"] is None and "timeout" in attempt["error"]

    receiver.delay_s = 0
    clock.advance(settings.notify_retry_s[0])
    assert d.run_once() == 1
    assert notif.get_event(db, eid)["status"] == "delivered"
    assert receiver.counts()[eid] == 2


def test_redirect_is_not_followed_and_fails(db, clock, app, receiver, make_dispatcher):
    receiver.fail_next, receiver.fail_status = 1, 302
    eid = enqueue(db, clock, app, receiver.url + "/n")
    d = make_dispatcher()
    assert d.run_once() == 1
    ev = notif.get_event(db, eid)
    assert ev["status"] == "pending" and ev["last_status_code"] == 302 and ev["last_error"] == "HTTP 302"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("url, error", [
    ("ftp://127.0.0.1/notify", "http(s)"),
    ("file:///etc/passwd", "http(s)"),
    ("/relative/notify", "http(s)"),
    ("http://", "invalid notify_url"),
    ("http://[::1/notify", "invalid notify_url"),
    ("http://user:pw@127.0.0.1/n", "credentials"),
])
def test_malformed_notify_url_is_a_recorded_failure(db, clock, app, receiver, make_dispatcher, settings, url, error):
    eid = enqueue(db, clock, app, url)
    d = make_dispatcher()
    assert drive(d, clock) == len(settings.notify_retry_s) + 1
    ev = notif.get_event(db, eid)
    assert ev["status"] == "parked" and error in ev["last_error"]
    assert all(error in a["error"] for a in notif.list_attempts(db, eid))


def test_connection_refused_is_a_failure(db, clock, app, make_dispatcher):
    eid = enqueue(db, clock, app, f"http://127.0.0.1:{free_port()}/n")
    assert make_dispatcher().run_once() == 1
    ev = notif.get_event(db, eid)
    assert ev["status"] == "pending" and ev["attempts"] == 1 and "ConnectError" in ev["last_error"]


def test_long_errors_are_truncated(db, clock, app, make_dispatcher):
    eid = enqueue(db, clock, app, "http://" + "a" * 300 + "." + "b" * 300 + ".invalid/n")
    assert make_dispatcher().run_once() == 1
    ev = notif.get_event(db, eid)
    assert ev["status"] == "pending" and len(ev["last_error"]) <= 500


def test_a_batch_is_delivered_concurrently_and_in_full(db, clock, app, receiver, make_dispatcher):
    receiver.delay_s = 0.3
    ids = [enqueue(db, clock, app, receiver.url + "/n", subject=f"T{i}") for i in range(16)]
    d = make_dispatcher(batch_size=10, concurrency=8)
    t0 = time.monotonic()
    assert d.run_once() == 10
    assert time.monotonic() - t0 < 0.3 * 10 * 0.8, "deliveries ran one after another"
    assert d.run_once() == 6
    assert d.run_once() == 0
    assert receiver.counts() == {i: 1 for i in ids}
    assert [e["status"] for e in notif.list_events(db)] == ["delivered"] * 16


@pytest.mark.postgres_only
def test_two_dispatchers_on_postgresql_deliver_each_event_once(db, db_url, clock, app, receiver, make_dispatcher):
    def tx(conn):
        return [notif.enqueue(conn, now=clock.now(), merchant_id=app.merchant_id, app_id=app.app_id,
                              type="trade.succeeded", subject_id=f"T{i}", data=dict(TRADE, trade_no=f"T{i}"),
                              notify_url=receiver.url + "/n") for i in range(200)]

    ids = db.write(tx)
    dispatchers = [make_dispatcher(db_=Database(db_url), batch_size=20, concurrency=4, worker_id=f"w{i}")
                   for i in range(2)]
    attempted = [0, 0]
    errors: list[BaseException] = []

    def loop(i):
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                n = dispatchers[i].run_once()
                attempted[i] += n
                if n == 0:
                    with db.read() as conn:
                        left = conn.execute(select(func.count()).select_from(outbox_events)
                                            .where(outbox_events.c.status != "delivered")).scalar_one()
                    if left == 0:
                        return
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    for d in dispatchers:
        d.db.dispose()
    assert not errors
    counts = receiver.counts()
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert sum(attempted) == 200
    assert [e["status"] for e in notif.list_events(db, limit=1000)] == ["delivered"] * 200


def test_event_of_an_unknown_app_fails_without_sending(db, clock, app, receiver, make_dispatcher):
    ghost = dataclasses.replace(app, app_id=new_id("app"))
    eid = enqueue(db, clock, ghost, receiver.url + "/n")
    assert make_dispatcher().run_once() == 1
    ev = notif.get_event(db, eid)
    assert ev["status"] == "pending" and "unknown app" in ev["last_error"]
    assert receiver.requests == []
