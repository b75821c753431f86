"""Money that no trade can take goes back to the buyer by itself; close and pay never both win."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest
from sqlalchemy import select

from piaohao import ledger
from piaohao.books import chart
from piaohao.channels.spi import Outcome, PaymentResult
from piaohao.db.schema import payments, trades
from piaohao.db.schema_refunds import refunds
from piaohao.domain import refunds as rs
from piaohao.services.payments import apply_channel_result
from tests.e2e.test_payments import signed_sandbox_notification
from tests.refunds.helpers import (
    alert_count,
    books_balance,
    create_trade,
    payment_of,
    posted,
    refund_rows,
    start,
    succeed,
    trade_of,
)
from tests.support import patient
from tests.support.merchant import wait_until


class CloseLagsBehindPayment:
    """The sandbox channel, except that its close answers CLOSED without knowing the buyer has
    just paid: real channels' records lag like this, and it is how money lands on a closed trade."""

    def __init__(self, real):
        self.real = real
        self.name = real.name

    def __getattr__(self, attr):
        return getattr(self.real, attr)

    def close_payment(self, payment_no: str) -> PaymentResult:
        return PaymentResult(Outcome.CLOSED)


def suspense_posted(running) -> int:
    with running.platform.db.read() as conn:
        account = chart.lookup(conn, "platform_suspense", chart.PLATFORM_OWNER_ID, "CNY")
        return ledger.balance(conn, account.account_id).posted if account else 0


def stray_refunds(running, payment_no: str) -> list:
    return refund_rows(running, refunds.c.payment_no == payment_no, refunds.c.kind == rs.KIND_STRAY)


def notify_paid(running, payment_no: str, amount: int) -> httpx.Response:
    headers, body = signed_sandbox_notification(running, payment_no, amount)
    return patient.post(running.platform.channel_notify_url("sandbox"), content=body, headers=headers, timeout=30)


def test_paid_after_close_is_refunded_to_the_buyer_automatically(make_platform, receiver):
    # No active query: on a loaded machine it could learn of the payment before the close runs,
    # and the trade would succeed instead (seen in CI); the truth arrives by notification below.
    running = make_platform(active_query_after_s=3600)
    p = running.platform
    p.channels["sandbox"] = CloseLagsBehindPayment(p.channels["sandbox"])
    m = running.merchant()
    trade = create_trade(m, receiver, "A1", 100)
    succeed(start(trade), "never")  # the buyer paid; we have not heard
    closed = m.call("POST", f"/v1/trades/{trade['trade_no']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    pay = payment_of(running, trade)
    assert notify_paid(running, pay["payment_no"], 100).status_code == 200
    assert alert_count(running, "paid_after_close") == 1
    assert wait_until(lambda: [r["status"] for r in stray_refunds(running, pay["payment_no"])] == ["succeeded"])
    stray = stray_refunds(running, pay["payment_no"])[0]
    assert stray["amount"] == 100 and stray["channel_refund_no"]
    t = trade_of(m, trade)
    assert t["status"] == "closed" and t["refunded_amount"] == 0  # never the merchant's sale
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert suspense_posted(running) == 0  # in and out of suspense
    # The merchant never hears of it: no event, not in its API.
    r = m.call("GET", f"/v1/refunds/{stray['refund_no']}")
    assert r.status_code == 404 and r.json()["code"] == "REFUND_NOT_FOUND"
    wait_until(lambda: False, timeout_s=0.5)
    assert not receiver.events("trade.succeeded") and not receiver.events("refund.succeeded")
    # A duplicated notification changes nothing.
    assert notify_paid(running, pay["payment_no"], 100).status_code == 200
    assert len(stray_refunds(running, pay["payment_no"])) == 1
    assert books_balance(running) == []


def test_a_second_payment_of_a_paid_trade_is_refunded_automatically(make_platform, receiver):
    # No active query here: it could learn attempt 1's success before the test makes attempt 2
    # (seen on a loaded machine); the truth about attempt 1 arrives by the notification below.
    running = make_platform(active_query_after_s=3600)
    p = running.platform
    m = running.merchant()
    trade = create_trade(m, receiver, "A1", 100)
    succeed(start(trade), "never")  # attempt 1: the buyer paid at the channel
    first = payment_of(running, trade)
    # We wrongly hear that attempt 1 failed, so the buyer pays again with attempt 2.
    apply_channel_result(p, first["payment_no"], PaymentResult(Outcome.FAILED, error="lost"), source="test")
    succeed(start(trade))
    assert wait_until(lambda: trade_of(m, trade)["status"] == "succeeded")
    # Then the truth about attempt 1 arrives.
    assert notify_paid(running, first["payment_no"], 100).status_code == 200
    assert alert_count(running, "duplicate_payment") == 1
    assert wait_until(lambda: [r["status"] for r in stray_refunds(running, first["payment_no"])] == ["succeeded"])
    t = trade_of(m, trade)
    assert t["status"] == "succeeded" and t["refunded_amount"] == 0
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 100
    assert suspense_posted(running) == 0
    assert books_balance(running) == []


JITTER_S = 0.03


@pytest.fixture
def rounds(backend) -> int:
    return 100 if backend == "postgresql" else 6


@pytest.mark.timeout(600)  # 100 real races on PostgreSQL: 40 s on an idle machine, over 120 s on a loaded CI one
def test_close_racing_a_success_notification_has_exactly_one_winner(running, receiver, rounds):
    p = running.platform
    p.channels["sandbox"] = CloseLagsBehindPayment(p.channels["sandbox"])
    m = running.merchant()
    outcomes: list[tuple[dict, str, int, int]] = []
    for i in range(rounds):
        trade = create_trade(m, receiver, f"RACE{i}", 100 + i)
        succeed(start(trade), "never")
        pay = payment_of(running, trade)
        barrier = threading.Barrier(2)
        answers: dict[str, int] = {}

        def close(trade=trade, barrier=barrier, answers=answers):
            barrier.wait()
            time.sleep(random.random() * JITTER_S)  # verifying a notification is slower: even it out
            answers["close"] = m.call("POST", f"/v1/trades/{trade['trade_no']}/close").status_code

        def notify(pay=pay, barrier=barrier, answers=answers):
            barrier.wait()
            answers["notify"] = notify_paid(running, pay["payment_no"], pay["amount"]).status_code

        threads = [threading.Thread(target=close), threading.Thread(target=notify)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers["notify"] == 200
        outcomes.append((trade, pay["payment_no"], answers["close"], pay["amount"]))
    # Every stray reaches its end.
    assert wait_until(lambda: not refund_rows(running, refunds.c.status == rs.PROCESSING), timeout_s=60)
    credited = 0
    wins = {"close": 0, "pay": 0}
    with p.db.read() as conn:
        status_of = dict(conn.execute(select(trades.c.trade_no, trades.c.status)).all())
        paid_payments = dict(conn.execute(select(payments.c.payment_no, payments.c.status)).all())
    for trade, payment_no, close_status, amount in outcomes:
        status = status_of[trade["trade_no"]]
        strays = stray_refunds(running, payment_no)
        assert paid_payments[payment_no] == "succeeded"  # the money is real either way
        if status == "succeeded":  # the payment won: credited to the merchant, close refused
            assert close_status == 409 and strays == [], trade["trade_no"]
            credited += amount
            wins["pay"] += 1
        else:  # the close won: the payment is a stray, back to the buyer
            assert status == "closed" and close_status == 200, (trade["trade_no"], status, close_status)
            assert [r["status"] for r in strays] == ["succeeded"], trade["trade_no"]
            wins["close"] += 1
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == credited
    assert suspense_posted(running) == 0
    wait_until(lambda: False, timeout_s=0.5)
    succeeded_events = {e["data"]["trade_no"] for e in receiver.events("trade.succeeded")}
    closed_events = {e["data"]["trade_no"] for e in receiver.events("trade.closed")}
    assert not succeeded_events & closed_events  # never both
    assert books_balance(running) == []
    print("close vs pay:", wins)


def test_a_trade_paid_by_the_channel_alone_is_refundable_while_strays_stay_apart(make_platform, receiver):
    """A stray refund on the same trade never uses up the merchant's refundable amount."""
    # No active query: it could learn of attempt 1 before the second attempt starts (seen in CI).
    running = make_platform(active_query_after_s=3600)
    p = running.platform
    m = running.merchant()
    trade = create_trade(m, receiver, "A1", 100)
    succeed(start(trade), "never")
    first = payment_of(running, trade)
    apply_channel_result(p, first["payment_no"], PaymentResult(Outcome.FAILED, error="lost"), source="test")
    succeed(start(trade))
    assert wait_until(lambda: trade_of(m, trade)["status"] == "succeeded")
    assert notify_paid(running, first["payment_no"], 100).status_code == 200
    full = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 100})
    assert full.status_code == 201, full.text
    assert wait_until(lambda: trade_of(m, trade)["status"] == "refunded")
    assert wait_until(lambda: not refund_rows(running, refunds.c.status == rs.PROCESSING))
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert suspense_posted(running) == 0
    assert books_balance(running) == []

