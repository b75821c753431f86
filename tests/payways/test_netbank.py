"""Online banking (網銀): the sandbox's banks with their own pages; only the bank's notification or a
query settles the payment."""

from __future__ import annotations

import pytest

from tests.e2e.test_payments import assert_books_balance
from tests.payways.helpers import member_trade, pay, trade_of, wait_trade
from tests.support import patient
from tests.support.merchant import wait_until


def test_the_cashier_offers_the_sandbox_banks(running, receiver):
    m = running.merchant()
    trade = member_trade(m, receiver, None, 900)
    view = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    netbank = next(x for x in view["methods"] if x["method"] == "netbank")
    assert netbank["banks"] == ["ICBC", "CCB", "ABC", "BOC", "CMB"]


def test_a_bank_is_required_and_must_be_offered(running, receiver):
    m = running.merchant()
    trade = member_trade(m, receiver, None, 900)
    for body in ({"method": "netbank"}, {"method": "netbank", "bank": "HSBC"}):
        r = pay(trade, body)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", r.text


@pytest.mark.parametrize("mode", ["normal", "never", "bad_signature"])
def test_only_the_banks_notification_or_a_query_settles(running, receiver, mode):
    m = running.merchant()
    trade = member_trade(m, receiver, None, 900)
    r = pay(trade, {"method": "netbank", "bank": "CMB"})
    assert r.status_code == 200, r.text
    page = patient.get(r.json()["redirect_url"])
    assert "CMB online banking" in page.text
    assert trade_of(m, trade)["status"] == "pending"  # being sent to the bank proves nothing
    patient.post(r.json()["redirect_url"] + "/succeed", json={"notify": mode}, timeout=30)
    assert wait_trade(m, trade, "succeeded")
    assert wait_until(lambda: len(receiver.events("trade.succeeded")) == 1)
    assert trade_of(m, trade)["components"][0]["method"] == "netbank"
    assert_books_balance(running)


def test_a_failed_bank_payment_leaves_the_trade_payable_and_refunds_work(running, receiver):
    m = running.merchant()
    trade = member_trade(m, receiver, None, 900)
    r = pay(trade, {"method": "netbank", "bank": "ICBC"})
    patient.post(r.json()["redirect_url"] + "/fail", timeout=30)
    assert trade_of(m, trade)["status"] == "pending"
    r = pay(trade, {"method": "sandbox"})
    patient.post(r.json()["redirect_url"] + "/succeed", timeout=30)
    assert wait_trade(m, trade, "succeeded")
    trade = member_trade(m, receiver, None, 800)
    r = pay(trade, {"method": "netbank", "bank": "BOC"})
    patient.post(r.json()["redirect_url"] + "/succeed", timeout=30)
    assert wait_trade(m, trade, "succeeded")
    r = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 300})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: m.call("GET", f"/v1/refunds/{r.json()['refund_no']}").json()["status"] == "succeeded")
    day = trade_of(m, trade)["paid_at"][:10]
    assert m.call("GET", f"/v1/statements/{day}").text.count(trade["trade_no"]) == 2
    assert_books_balance(running)
