"""Refunds of trades the cashier really paid with the member's own methods (no rows inserted by hand)."""

from __future__ import annotations

from tests.e2e.test_member_payments import (
    PASSWORD,
    accounts,
    fund_balance,
    grant_coins,
    member_trade,
    new_member,
    pay,
)
from tests.e2e.test_payments import succeed
from tests.refunds.helpers import books_balance, posted, refund, trade_of, wait_refund
from tests.support.merchant import wait_until


def test_coins_and_sandbox_trade_refunded_in_parts_gives_each_back_in_order(running, receiver):
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    trade = member_trade(m, receiver, member, 2000)
    r = pay(trade, {"components": [{"method": "coins", "amount": 500}, {"method": "sandbox"}],
                    "payment_password": PASSWORD})
    assert r.status_code == 200, r.text
    succeed(r.json()["redirect_url"])
    assert wait_until(lambda: trade_of(m, trade)["status"] == "succeeded")
    assert accounts(m, member)["coins"]["available"] == 300
    first = refund(m, trade, "R1", 1600).json()
    assert first["components"] == [{"method": "sandbox", "amount": 1500}, {"method": "coins", "amount": 100}]
    assert wait_refund(m, first["refund_no"], "succeeded")
    assert accounts(m, member)["coins"]["available"] == 400
    second = refund(m, trade, "R2", 400).json()
    assert second["status"] == "succeeded" and second["components"] == [{"method": "coins", "amount": 400}]
    assert accounts(m, member)["coins"]["available"] == 800
    t = trade_of(m, trade)
    assert t["status"] == "refunded" and t["refunded_amount"] == 2000
    assert {c["method"]: c["refunded_amount"] for c in t["components"]} == {"coins": 500, "sandbox": 1500}
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []


def test_balance_paid_trade_refunds_at_once_to_the_member(running, receiver):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 3000)
    trade = member_trade(m, receiver, member, 2500)
    assert pay(trade, {"method": "balance", "payment_password": PASSWORD}).json()["status"] == "succeeded"
    assert accounts(m, member)["balance"]["available"] == 500
    r = refund(m, trade, "R1", 1000)
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    assert accounts(m, member)["balance"]["available"] == 1500
    assert wait_until(lambda: receiver.events("refund.succeeded"))
    r = refund(m, trade, "R2", 1501)
    assert r.status_code == 409 and r.json()["code"] == "REFUND_AMOUNT_EXCEEDED"
    assert books_balance(running) == []


def test_credit_paid_trade_refund_reduces_what_is_used(running, receiver):
    m = running.merchant()
    member = new_member(m)
    assert m.call("POST", f"/v1/members/{member}/credit", {"limit": 5000}).status_code == 200
    trade = member_trade(m, receiver, member, 300)
    assert pay(trade, {"method": "credit", "payment_password": PASSWORD}).json()["status"] == "succeeded"
    assert accounts(m, member)["credit"]["used"] == 300
    assert refund(m, trade, "R1", 300).json()["status"] == "succeeded"
    assert accounts(m, member)["credit"]["used"] == 0
    assert trade_of(m, trade)["status"] == "refunded"
    assert books_balance(running) == []
