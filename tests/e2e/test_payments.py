"""End to end through real HTTP: merchant → cashier → sandbox channel → platform → merchant notification."""

from __future__ import annotations

import csv
import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from piaohao.db.schema import alerts, outbox_events, payments
from piaohao.kernel.clock import FakeClock
from piaohao.kernel.signing import sign
from tests.api.test_gateway import trade_body
from tests.support import patient
from tests.support.merchant import Receiver, wait_until

# A channel call that times out: an ordinary call never takes CHANNEL_TIMEOUT_S, even on 2 busy cores; the
# faulted one answers only after FAULT_DELAY_S.
CHANNEL_TIMEOUT_S = 5.0
FAULT_DELAY_S = 8.0


def create(m, receiver, out_trade_no="A1", amount=1999, **extra):
    r = m.call("POST", "/v1/trades", trade_body(out_trade_no, amount, notify_url=receiver.url, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def start(trade) -> str:
    r = patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["redirect_url"]


def succeed(redirect_url: str, mode: str | None = None, delay_s: float | None = None) -> httpx.Response:
    body = {}
    if mode:
        body["notify"] = mode
    if delay_s is not None:
        body["notify_delay_s"] = delay_s
    r = patient.post(redirect_url + "/succeed", json=body or None, timeout=30)
    assert r.status_code < 300, r.text
    return r


def status_of(m, trade) -> str:
    return m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"]


def wait_status(m, trade, status: str, timeout_s: float = 30) -> bool:
    return bool(wait_until(lambda: status_of(m, trade) == status, timeout_s))


def count(running, table, *where) -> int:
    with running.platform.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_happy_path_pays_and_notifies_the_merchant_with_a_verifiable_signature(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    cashier = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    assert [x["method"] for x in cashier["methods"]] == ["sandbox", "netbank"]
    succeed(start(trade))
    assert wait_status(m, trade, "succeeded")
    paid = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()
    assert paid["paid_at"] is not None and paid["amount"] == 1999
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    delivery = receiver.deliveries[-1]
    h = delivery["headers"]
    expected = sign(m.secret, "POST", delivery["path"], h["x-timestamp"], h["x-nonce"], delivery["body"])
    assert h["x-signature"] == expected and h["x-app-id"] == m.app_id
    event = receiver.events("trade.succeeded")[0]
    assert event["id"].startswith("evt_") and event["data"]["trade_no"] == trade["trade_no"]
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["components"] == [{"method": "sandbox", "amount": 1999, "refunded_amount": 0}]
    assert_books_balance(running)
    assert merchant_pending(running, m) == 1999


def assert_books_balance(running):
    from piaohao import ledger

    assert ledger.check(running.platform.db) == []


def merchant_pending(running, m) -> int:
    from piaohao import ledger
    from piaohao.books import chart

    with running.platform.db.read() as conn:
        account = chart.lookup(conn, "merchant_pending_settlement", m.merchant_id, "CNY")
        return ledger.balance(conn, account.account_id).posted if account else 0


def test_paying_twice_on_the_cashier_reuses_the_open_attempt(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    assert start(trade) == start(trade)
    assert count(running, payments, payments.c.trade_no == trade["trade_no"]) == 1


@pytest.mark.parametrize("mode", ["normal", "duplicate", "never", "bad_signature", "amount_mismatch"])
def test_every_notify_mode_ends_succeeded_with_one_merchant_event(running, receiver, mode):
    m = running.merchant()
    trade = create(m, receiver)
    succeed(start(trade), mode)
    assert wait_status(m, trade, "succeeded"), mode
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    paid = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()
    assert paid["amount"] == 1999
    if mode == "amount_mismatch":  # however the query and the notification interleave (the alert comes either way)
        assert wait_until(lambda: count(running, alerts, alerts.c.kind == "amount_mismatch") >= 1)
    if mode == "bad_signature":
        assert wait_until(lambda: count(running, alerts, alerts.c.kind == "notification_rejected") >= 1)
    # Give duplicates and retries time to arrive, then count: one event (a redelivery keeps its id).
    wait_until(lambda: False, timeout_s=1.5)
    assert len({e["id"] for e in receiver.events("trade.succeeded")}) == 1
    assert count(running, outbox_events, outbox_events.c.subject_id == trade["trade_no"],
                 outbox_events.c.type == "trade.succeeded") == 1
    assert_books_balance(running)
    assert merchant_pending(running, m) == 1999


def test_the_same_notification_ten_times_at_once_has_one_effect(running, receiver):
    """Replays one genuinely signed sandbox notification 10 times concurrently."""
    m = running.merchant()
    trade = create(m, receiver)
    succeed(start(trade), "never")
    # Build the channel's own signed notification for this payment and fire it 10 times at once.
    headers, body = signed_sandbox_notification(running, _payment_no(running, trade), 1999)
    url = running.platform.channel_notify_url("sandbox")
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: patient.post(url, content=body, headers=headers), range(10)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert status_of(m, trade) == "succeeded"
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    wait_until(lambda: False, timeout_s=1)
    assert len({e["id"] for e in receiver.events("trade.succeeded")}) == 1


def signed_sandbox_notification(running, payment_no: str, amount: int) -> tuple[dict, bytes]:
    """What the sandbox channel would send for this payment, signed with the channel's own key."""
    import time

    import orjson

    from piaohao.channels.sandbox import rsa
    from piaohao.channels.sandbox.wire import HEADER_SIGNATURE, HEADER_TIMESTAMP, response_canonical

    with running.platform.db.read() as conn:
        txn_no = conn.execute(select(payments.c.channel_txn_no).where(payments.c.payment_no == payment_no)
                              ).scalar_one()
    body = orjson.dumps({"kind": "payment", "mch_id": running.platform.channels["sandbox"].mch_id,
                         "out_trade_no": payment_no, "txn_no": txn_no, "amount": amount, "currency": "CNY",
                         "status": "SUCCESS", "finished_at": dt.datetime.now(dt.UTC).isoformat()})
    ts = str(int(time.time()))
    keys = running.assembly.sandbox_store.channel_keys()
    return {HEADER_TIMESTAMP: ts, HEADER_SIGNATURE: rsa.sign(keys.private_pem, response_canonical(ts, body)),
            "Content-Type": "application/json"}, body


def _payment_no(running, trade) -> str:
    with running.platform.db.read() as conn:
        return conn.execute(select(payments.c.payment_no).where(payments.c.trade_no == trade["trade_no"])).scalar_one()


def test_failed_payment_leaves_the_trade_payable_and_a_new_attempt_succeeds(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    first = start(trade)
    assert patient.post(first + "/fail").status_code < 300
    assert wait_until(lambda: count(running, payments, payments.c.trade_no == trade["trade_no"],
                                    payments.c.status == "failed") == 1)
    assert status_of(m, trade) == "pending"
    second = start(trade)
    assert second != first
    succeed(second)
    assert wait_status(m, trade, "succeeded")


def test_close_of_a_trade_being_paid_closes_it_at_the_channel_first(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    redirect = start(trade)
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/close")
    assert r.status_code == 200 and r.json()["status"] == "closed"
    # The channel refuses the buyer now: no money can land on a closed trade.
    assert patient.post(redirect + "/succeed").status_code == 409
    assert patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}).status_code == 409


def test_close_of_a_paid_trade_is_refused(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    succeed(start(trade), "never")  # paid at the channel; we have not heard yet
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/close")
    assert r.status_code == 409 and r.json()["code"] == "TRADE_NOT_CLOSABLE"
    assert status_of(m, trade) == "succeeded"  # the close asked the channel and learned the truth


def test_close_while_the_channel_is_down_is_refused_and_changes_nothing(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    start(trade)
    running.assembly.sandbox_service.set_fault("close", "error")
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/close")
    assert r.status_code == 409 and r.json()["code"] == "TRADE_NOT_CLOSABLE"
    assert status_of(m, trade) == "pending"


@pytest.mark.timeout(300)  # waits out channel timeouts (5 s each) on a loaded machine
def test_create_payment_timeout_is_settled_by_the_active_query(make_platform, receiver):
    running = make_platform(channel_timeout_s=CHANNEL_TIMEOUT_S)
    m = running.merchant()
    trade = create(m, receiver)
    running.assembly.sandbox_service.set_fault("pay", "timeout", delay_s=FAULT_DELAY_S, count=1)
    r = patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30)
    assert r.status_code == 503 and r.json()["code"] == "CHANNEL_UNAVAILABLE"
    # The buyer tries again: the same attempt, the same channel order.
    redirect = start(trade)
    succeed(redirect, "never")
    assert wait_status(m, trade, "succeeded", timeout_s=120)
    assert count(running, payments, payments.c.trade_no == trade["trade_no"]) == 1


def test_expired_trade_is_closed_by_the_worker_and_notified(make_platform, receiver):
    clock = FakeClock(dt.datetime.now(dt.UTC))  # the trade expires when the test moves time, not on its own
    running = make_platform(clock=clock)
    m = running.merchant()
    trade = create(m, receiver, expires_at=(clock.now() + dt.timedelta(seconds=60)).isoformat())
    redirect = start(trade)
    assert status_of(m, trade) == "pending"
    clock.advance(61)
    assert wait_status(m, trade, "closed", timeout_s=30)
    closed = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()
    assert closed["close_reason"] == "expired"
    assert patient.post(redirect + "/succeed").status_code == 409  # closed at the channel too
    assert wait_until(lambda: receiver.events("trade.closed"))


def test_receiver_failing_three_times_gets_the_same_event_on_the_fourth(running):
    flaky = Receiver(fail_times=3)
    try:
        m = running.merchant()
        trade = create(m, flaky)
        succeed(start(trade))
        assert wait_until(lambda: len(flaky.deliveries) >= 4, timeout_s=20)
        wait_until(lambda: False, timeout_s=1)
        events = [e for e in flaky.events() if e["type"] == "trade.succeeded"]
        assert len(events) >= 4 and len({e["id"] for e in events}) == 1  # a slow answer may cost one more try
        assert len({d["body"] for d in flaky.deliveries}) == 1
        assert wait_until(lambda: count(running, outbox_events, outbox_events.c.status == "delivered",
                                        outbox_events.c.type == "trade.succeeded") == 1)
    finally:
        flaky.close()


def test_receiver_that_always_fails_is_parked_and_listed(running):
    from piaohao.services import notifications

    down = Receiver(always_fail=True)
    try:
        m = running.merchant()
        trade = create(m, down)
        succeed(start(trade))
        parked = wait_until(lambda: notifications.list_parked(running.platform.db), timeout_s=20)
        assert parked and parked[0]["type"] == "trade.succeeded"
        assert parked[0]["attempts"] == len(running.settings.notify_retry_s) + 1
        assert parked[0]["last_error"]
    finally:
        down.close()


def test_statement_lists_the_days_payments(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    succeed(start(trade))
    assert wait_status(m, trade, "succeeded")
    day = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    r = m.call("GET", f"/v1/statements/{day}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0] == ("record_type,trade_no,out_trade_no,refund_no,out_request_no,amount,fee,"
                                      "currency,status,channel,channel_txn_no,finished_at")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["record_type"], x["trade_no"], x["amount"], x["status"]) for x in rows] == [
        ("payment", trade["trade_no"], "1999", "succeeded")]
    assert rows[0]["channel"] == "sandbox" and rows[0]["channel_txn_no"]
    other = running.merchant("Other")
    assert len(list(csv.DictReader(io.StringIO(other.call("GET", f"/v1/statements/{day}").text)))) == 0
    assert m.call("GET", "/v1/statements/2026-13-01").status_code == 400


def test_slow_channel_within_the_timeout_still_pays(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    running.assembly.sandbox_service.set_fault("pay", "slow", delay_s=0.3)
    succeed(start(trade))
    assert wait_status(m, trade, "succeeded")


def test_lost_notifications_and_failing_queries_are_retried_until_the_truth_is_known(running, receiver):
    """The channel never notifies and its query answers 500 three times: the active query keeps asking."""
    m = running.merchant()
    trade = create(m, receiver)
    running.assembly.sandbox_service.set_fault("query", "error", count=3)
    succeed(start(trade), "never")
    assert wait_status(m, trade, "succeeded", timeout_s=30)
    with running.platform.db.read() as conn:
        attempts = conn.execute(select(payments.c.query_attempts).where(
            payments.c.trade_no == trade["trade_no"])).scalar_one()
    assert attempts >= 4


@pytest.mark.timeout(300)  # waits out channel timeouts (5 s each) on a loaded machine
def test_query_that_times_out_is_unknown_not_failed(make_platform, receiver):
    running = make_platform(channel_timeout_s=CHANNEL_TIMEOUT_S)
    m = running.merchant()
    trade = create(m, receiver)
    running.assembly.sandbox_service.set_fault("query", "timeout", delay_s=FAULT_DELAY_S, count=2)
    succeed(start(trade), "never")
    assert wait_status(m, trade, "succeeded", timeout_s=120)
    assert count(running, payments, payments.c.trade_no == trade["trade_no"], payments.c.status == "failed") == 0


def test_notification_for_an_unknown_payment_raises_an_alert_and_changes_nothing(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    start(trade)
    headers, body = signed_sandbox_notification(running, _payment_no(running, trade), 1999)
    forged = body.replace(_payment_no(running, trade).encode(), b"pay_unknown0000000000000")
    from piaohao.channels.sandbox import rsa
    from piaohao.channels.sandbox.wire import HEADER_SIGNATURE, HEADER_TIMESTAMP, response_canonical

    keys = running.assembly.sandbox_store.channel_keys()
    headers[HEADER_SIGNATURE] = rsa.sign(keys.private_pem, response_canonical(headers[HEADER_TIMESTAMP], forged))
    r = patient.post(running.platform.channel_notify_url("sandbox"), content=forged, headers=headers)
    assert r.status_code == 200
    assert count(running, alerts, alerts.c.kind == "unknown_payment") == 1
    assert status_of(m, trade) == "pending"


def test_unsigned_notification_is_refused_and_changes_nothing(running, receiver):
    m = running.merchant()
    trade = create(m, receiver)
    start(trade)
    headers, body = signed_sandbox_notification(running, _payment_no(running, trade), 1999)
    from piaohao.channels.sandbox.wire import HEADER_SIGNATURE

    headers[HEADER_SIGNATURE] = "AAAA"
    r = patient.post(running.platform.channel_notify_url("sandbox"), content=body, headers=headers)
    assert r.status_code == 400
    assert status_of(m, trade) == "pending"  # the buyer has not paid: the query finds nothing either
    assert count(running, alerts, alerts.c.kind == "notification_rejected") == 1
