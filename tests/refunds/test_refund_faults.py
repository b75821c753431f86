"""Refunds against a misbehaving channel: timeouts, errors, refusals, late and unknown answers."""

from __future__ import annotations

import datetime as dt
import threading
import time

import httpx
import orjson
import pytest
from sqlalchemy import select

from piaohao import ledger
from piaohao.channels.spi import Outcome, RefundResult
from piaohao.db.schema_ledger import ledger_entries
from piaohao.db.schema_refunds import refunds
from piaohao.services import refund_results as svc
from piaohao.services.refund_tries import execute_refund
from tests.refunds.helpers import (
    alert_count,
    available,
    books_balance,
    count,
    event_count,
    paid_trade,
    posted,
    refund,
    refund_rows,
    trade_of,
    wait_refund,
)
from tests.support import patient
from tests.support.merchant import wait_until

# A refund call that times out: no ordinary call takes CHANNEL_TIMEOUT_S, even on 2 busy cores; the
# faulted one answers only after FAULT_DELAY_S, so the timeout fires whatever the load.
CHANNEL_TIMEOUT_S = 15.0  # (5 s was reached by an ordinary create call at a load average of 20 on 2 cores)
FAULT_DELAY_S = 30.0


@pytest.mark.timeout(300)
def test_refund_call_timing_out_is_settled_by_the_query_once(make_platform, receiver):
    running = make_platform(channel_timeout_s=CHANNEL_TIMEOUT_S)
    sandbox = running.assembly.sandbox_service
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    # The channel refunds, but its answer is lost, and its notification never arrives: only a
    # query can tell.
    sandbox.set_fault("refund", "timeout", delay_s=FAULT_DELAY_S, count=1)
    sandbox.set_fault("notify", "error")
    r = refund(m, trade, "R1", 100)
    assert r.status_code == 201 and r.json()["status"] == "processing", r.text
    no = r.json()["refund_no"]
    assert wait_refund(m, no, "succeeded", timeout_s=120)
    row = refund_rows(running, refunds.c.refund_no == no)[0]
    assert row["channel_refund_no"] and row["channel_calls"] == 1  # asked once, then only queried
    assert count(running, ledger_entries, ledger_entries.c.source_id == row["hold_id"]) == 1  # posted once
    sandbox.clear_faults()
    assert wait_until(lambda: receiver.events("refund.succeeded"), timeout_s=60)
    wait_until(lambda: False, timeout_s=1.5)
    assert event_count(running, "refund.succeeded", no) == 1
    assert len(receiver.events("refund.succeeded")) == 1
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []


def test_refund_the_channel_keeps_erroring_fails_is_parked_and_a_new_one_succeeds(make_platform, receiver):
    running = make_platform(extra={"refund_tries_max": 3})
    sandbox = running.assembly.sandbox_service
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    sandbox.set_fault("refund", "error")  # HTTP 500, nothing done, every time
    r = refund(m, trade, "R1", 60)
    assert r.status_code == 201 and r.json()["status"] == "processing"
    no = r.json()["refund_no"]
    assert available(running, "merchant_pending_settlement", m.merchant_id) == 40  # held meanwhile
    assert wait_refund(m, no, "failed", timeout_s=30)
    row = refund_rows(running, refunds.c.refund_no == no)[0]
    assert row["channel_calls"] == 3 and row["parked_at"] is not None and row["last_error"]
    assert alert_count(running, "refund_failed") == 1
    assert wait_until(lambda: receiver.events("refund.failed"))
    # The money is back: the trade is refundable in full again, the merchant's balance untouched.
    assert trade_of(m, trade)["refunded_amount"] == 0
    assert available(running, "merchant_pending_settlement", m.merchant_id) == 100
    again = refund(m, trade, "R1", 60)  # the failed refund replays as it is
    assert again.status_code == 200 and again.json()["status"] == "failed"
    sandbox.clear_faults()
    second = refund(m, trade, "R2", 100)
    assert second.status_code == 201, second.text
    assert wait_refund(m, second.json()["refund_no"], "succeeded")
    assert wait_until(lambda: trade_of(m, trade)["status"] == "refunded")
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []


def test_refund_the_channel_refuses_fails_at_once(running, receiver):
    sandbox = running.assembly.sandbox_service
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    sandbox.set_fault("refund", "fail", count=1)
    r = refund(m, trade, "R1", 100)
    assert r.status_code == 201 and r.json()["status"] == "failed", r.text
    assert trade_of(m, trade)["refunded_amount"] == 0 and trade_of(m, trade)["status"] == "succeeded"
    assert alert_count(running, "refund_failed") == 1
    ok = refund(m, trade, "R2", 100)
    assert wait_refund(m, ok.json()["refund_no"], "succeeded")
    assert books_balance(running) == []


def test_refund_still_processing_at_the_channel_is_not_given_up(make_platform, receiver):
    running = make_platform(extra={"refund_tries_max": 1})
    sandbox = running.assembly.sandbox_service
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    sandbox.set_fault("refund", "processing", delay_s=3.0, count=1)
    sandbox.set_fault("notify", "error")
    r = refund(m, trade, "R1", 100)
    no = r.json()["refund_no"]
    assert r.json()["status"] == "processing"
    # Tries are used up, but the channel says "processing": parked for an operator, never failed.
    assert wait_until(lambda: alert_count(running, "refund_stuck") == 1, timeout_s=60)
    assert refund_rows(running, refunds.c.refund_no == no)[0]["status"] == "processing"
    assert wait_refund(m, no, "succeeded", timeout_s=60)
    assert books_balance(running) == []


@pytest.mark.timeout(300)
def test_a_refund_notification_settles_a_processing_refund(make_platform, receiver):
    running = make_platform(channel_timeout_s=CHANNEL_TIMEOUT_S, active_query_after_s=600,
                            active_query_interval_max_s=1200)
    sandbox = running.assembly.sandbox_service
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    sandbox.set_fault("refund", "timeout", delay_s=FAULT_DELAY_S, count=1)
    r = refund(m, trade, "R1", 100)
    no = r.json()["refund_no"]
    # The worker would only query in 10 min: the channel's own notification is what settles it.
    assert wait_refund(m, no, "succeeded", timeout_s=120)
    row = refund_rows(running, refunds.c.refund_no == no)[0]
    assert row["channel_refund_no"]  # learned by one query after the notification
    assert books_balance(running) == []


def _signed_refund_notification(running, refund_no: str, amount: int, status: str = "SUCCESS") -> tuple[dict, bytes]:
    from piaohao.channels.sandbox import rsa
    from piaohao.channels.sandbox.wire import HEADER_SIGNATURE, HEADER_TIMESTAMP, response_canonical

    body = orjson.dumps({"kind": "refund", "mch_id": running.platform.channels["sandbox"].mch_id,
                         "out_trade_no": "pay_x", "out_refund_no": refund_no, "amount": amount, "currency": "CNY",
                         "status": status, "finished_at": dt.datetime.now(dt.UTC).isoformat()})
    ts = str(int(time.time()))
    keys = running.assembly.sandbox_store.channel_keys()
    return {HEADER_TIMESTAMP: ts, HEADER_SIGNATURE: rsa.sign(keys.private_pem, response_canonical(ts, body)),
            "Content-Type": "application/json"}, body


def test_a_refund_notification_for_an_unknown_refund_raises_an_alert(running):
    headers, body = _signed_refund_notification(running, "rf_unknown000000000000", 100)
    r = patient.post(running.platform.channel_notify_url("sandbox"), content=body, headers=headers)
    assert r.status_code == 200
    assert alert_count(running, "unknown_refund") == 1
    assert count(running, refunds) == 0


def test_duplicated_refund_notifications_have_one_effect(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    no = refund(m, trade, "R1", 100).json()["refund_no"]
    assert wait_refund(m, no, "succeeded")
    headers, body = _signed_refund_notification(running, no, 100)
    url = running.platform.channel_notify_url("sandbox")
    threads = [threading.Thread(target=httpx.post, args=(url,), kwargs={"content": body, "headers": headers})
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: False, timeout_s=0.5)
    assert event_count(running, "refund.succeeded", no) == 1
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []


def test_a_notified_amount_that_disagrees_changes_nothing(make_platform, receiver):
    running = make_platform(channel_timeout_s=CHANNEL_TIMEOUT_S)
    sandbox = running.assembly.sandbox_service
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    sandbox.set_fault("refund", "error")
    no = refund(m, trade, "R1", 100).json()["refund_no"]
    headers, body = _signed_refund_notification(running, no, 99)
    notify_url = running.platform.channel_notify_url("sandbox")
    assert patient.post(notify_url, content=body, headers=headers).status_code == 200
    assert alert_count(running, "refund_amount_mismatch") == 1
    assert refund_rows(running, refunds.c.refund_no == no)[0]["status"] == "processing"
    sandbox.clear_faults()
    assert wait_refund(m, no, "succeeded")
    assert books_balance(running) == []


def test_two_workers_never_take_the_same_refund_at_once(make_platform, receiver):
    running = make_platform(workers=False)  # the channel still notifies: the trade gets paid
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    sandbox = running.assembly.sandbox_service
    sandbox.set_fault("refund", "error", count=1)  # taken first (oldest), by the API's try
    sandbox.set_fault("refund", "slow", delay_s=0.5)  # then every call is slow
    calls: list[str] = []
    real = running.platform.channels["sandbox"]

    class Counting:
        name = real.name

        def __getattr__(self, attr):
            return getattr(real, attr)

        def refund(self, req):
            calls.append(req.refund_no)
            return real.refund(req)

    running.platform.channels["sandbox"] = Counting()
    no = refund(m, trade, "R1", 100).json()["refund_no"]  # first try: 500, unknown
    assert calls == [no]
    p = running.platform
    p.db.write(lambda conn: conn.execute(refunds.update().where(refunds.c.refund_no == no).values(
        next_attempt_at=p.clock.now())))
    results: list[str] = []
    workers = [threading.Thread(target=lambda: results.append(execute_refund(p, no))) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    taken = [x for x in results if x != "not_claimed"]
    # The channel's notification may settle it first ("duplicate"): either way one worker talked.
    assert len(taken) == 1 and taken[0] in ("succeeded", "duplicate"), results
    assert wait_refund(m, no, "succeeded")
    assert calls == [no, no]
    assert books_balance(running) == []


def test_a_refund_paid_by_the_channel_after_we_failed_it_is_taken_back_or_carried(make_platform, receiver):
    running = make_platform(extra={"refund_tries_max": 1})
    sandbox = running.assembly.sandbox_service
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    sandbox.set_fault("refund", "error")
    first = refund(m, trade, "R1", 100).json()["refund_no"]
    assert wait_refund(m, first, "failed", timeout_s=20)
    p = running.platform
    # The channel turns out to have paid it after all (its answer was late): the trade can still
    # take it back, so the refund becomes succeeded.
    late = RefundResult(Outcome.SUCCEEDED, channel_refund_no="R-late-1", amount=100)
    assert svc.apply_refund_result(p, first, late, source="test") == "late_succeeded"
    assert svc.apply_refund_result(p, first, late, source="test") == "duplicate"
    assert refund_status_of(running, first) == "succeeded"
    assert trade_of(m, trade)["refunded_amount"] == 100
    assert wait_until(lambda: trade_of(m, trade)["status"] == "refunded")
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []

    # A second trade: the failed refund is re-issued and succeeds, then the first one's late
    # success arrives: the trade cannot take it back, the platform carries it in suspense.
    trade2 = paid_trade(m, receiver, "A2", amount=100)
    failed = refund(m, trade2, "R1", 100).json()["refund_no"]
    assert wait_refund(m, failed, "failed", timeout_s=20)
    sandbox.clear_faults()
    ok = refund(m, trade2, "R2", 100).json()["refund_no"]
    assert wait_refund(m, ok, "succeeded")
    assert svc.apply_refund_result(p, failed, late, source="test") == "late_to_suspense"
    assert svc.apply_refund_result(p, failed, late, source="test") == "duplicate"
    assert refund_status_of(running, failed) == "failed"
    assert alert_count(running, "refund_succeeded_after_failure") == 2
    with p.db.read() as conn:
        from piaohao.books import chart

        suspense = chart.lookup(conn, "platform_suspense", chart.PLATFORM_OWNER_ID, "CNY")
        assert ledger.balance(conn, suspense.account_id).posted == 100  # owed to the platform
    assert books_balance(running) == []


def refund_status_of(running, refund_no: str) -> str:
    with running.platform.db.read() as conn:
        return conn.execute(select(refunds.c.status).where(refunds.c.refund_no == refund_no)).scalar_one()
