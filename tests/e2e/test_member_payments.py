"""Paying with the member's own methods through the cashier: balance, coins, credit, and combinations."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.e2e.test_payments import assert_books_balance, merchant_pending, succeed, wait_status
from tests.support import patient
from tests.support.merchant import wait_until

PASSWORD = "246810"


def new_member(m) -> str:
    r = m.call("POST", "/v1/members", {"out_member_id": "M" + secrets.token_hex(4), "name": "Li Lei",
                                       "payment_password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()["member_id"]


def accounts(m, member_id) -> dict:
    return m.call("GET", f"/v1/members/{member_id}").json()["accounts"]


def fund_balance(running, member_id: str, amount: int) -> None:
    """Credit the member's balance from the platform's suspense account (as a top-up would, minus the channel)."""
    from piaohao.books import chart
    from piaohao.ledger import write as ledger

    def tx(conn):
        source = chart.platform_suspense(conn, "CNY")
        target = chart.member_balance(conn, member_id, "CNY")
        ledger.transfer(conn, ("test", secrets.token_hex(6), "fund"), source.account_id, target.account_id, amount)

    running.platform.db.write(tx)


def grant_coins(m, member_id: str, amount: int) -> None:
    r = m.call("POST", f"/v1/members/{member_id}/coins", {"out_request_no": "C" + secrets.token_hex(4),
                                                           "amount": amount, "reason": "test"})
    assert r.status_code == 201, r.text


def member_trade(m, receiver, member_id: str, amount: int) -> dict:
    r = m.call("POST", "/v1/trades", {"out_trade_no": "T" + secrets.token_hex(5), "amount": amount,
                                      "subject": "socks", "notify_url": receiver.url, "order_timeout_s": 900,
                                      "member_id": member_id})
    assert r.status_code == 201, r.text
    return r.json()


def pay(trade: dict, payload: dict) -> httpx.Response:
    return patient.post(trade["pay_url"] + "/pay", json=payload, timeout=30)


def paid_with(m, trade) -> dict:
    t = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()
    return {c["method"]: c["amount"] for c in t["components"]}


def test_cashier_lists_the_members_methods(running, receiver):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 3000)
    trade = member_trade(m, receiver, member, 2500)
    view = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    methods = {x["method"]: x for x in view["methods"]}
    assert set(methods) == {"sandbox", "netbank", "balance", "coins", "credit"}  # quick: no card bound
    assert all("available" not in x for x in methods.values())  # no balance shown to whoever holds the link


def test_balance_pays_at_once(running, receiver):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 3000)
    trade = member_trade(m, receiver, member, 2500)
    r = pay(trade, {"method": "balance", "payment_password": PASSWORD})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    t = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()
    assert t["status"] == "succeeded" and t["member_id"] == member
    assert t["components"] == [{"method": "balance", "amount": 2500, "refunded_amount": 0}]
    assert accounts(m, member)["balance"] == {"available": 500, "frozen": 0}
    assert merchant_pending(running, m) == 2500
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    assert_books_balance(running)


def test_coins_and_sandbox_hold_the_coins_until_the_channel_pays(running, receiver):
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    trade = member_trade(m, receiver, member, 2000)
    r = pay(trade, {"components": [{"method": "coins", "amount": 500}, {"method": "sandbox"}],
                    "payment_password": PASSWORD})
    assert r.status_code == 200 and r.json()["redirect_url"], r.text
    assert accounts(m, member)["coins"] == {"available": 300, "held": 500}
    # Asking again with the same split reuses the attempt and holds nothing more.
    again = pay(trade, {"components": [{"method": "coins", "amount": 500}, {"method": "sandbox"}],
                        "payment_password": PASSWORD})
    assert again.json()["redirect_url"] == r.json()["redirect_url"]
    assert accounts(m, member)["coins"] == {"available": 300, "held": 500}
    succeed(r.json()["redirect_url"])
    assert wait_status(m, trade, "succeeded")
    assert paid_with(m, trade) == {"coins": 500, "sandbox": 1500}
    assert accounts(m, member)["coins"] == {"available": 300, "held": 0}
    assert merchant_pending(running, m) == 2000
    assert_books_balance(running)


def test_channel_failure_releases_the_held_coins(running, receiver):
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    trade = member_trade(m, receiver, member, 2000)
    r = pay(trade, {"components": [{"method": "coins", "amount": 500}, {"method": "sandbox"}],
                    "payment_password": PASSWORD})
    assert patient.post(r.json()["redirect_url"] + "/fail").status_code < 300
    assert wait_until(lambda: accounts(m, member)["coins"] == {"available": 800, "held": 0})
    assert m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"] == "pending"
    # The buyer can pay another way now.
    fund_balance(running, member, 2000)
    assert pay(trade, {"method": "balance", "payment_password": PASSWORD}).json()["status"] == "succeeded"
    assert paid_with(m, trade) == {"balance": 2000}
    assert_books_balance(running)


def test_closing_the_trade_releases_the_held_coins(running, receiver):
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    trade = member_trade(m, receiver, member, 2000)
    redirect = pay(trade, {"components": [{"method": "coins", "amount": 500}, {"method": "sandbox"}],
                           "payment_password": PASSWORD}).json()["redirect_url"]
    assert m.call("POST", f"/v1/trades/{trade['trade_no']}/close").json()["status"] == "closed"
    assert accounts(m, member)["coins"] == {"available": 800, "held": 0}
    assert patient.post(redirect + "/succeed").status_code == 409
    assert_books_balance(running)


def test_credit_pays_at_once(running, receiver):
    m = running.merchant()
    member = new_member(m)
    assert m.call("POST", f"/v1/members/{member}/credit", {"limit": 50000}).status_code == 200
    trade = member_trade(m, receiver, member, 300)
    assert pay(trade, {"method": "credit", "payment_password": PASSWORD}).json()["status"] == "succeeded"
    assert accounts(m, member)["credit"] == {"limit": 50000, "used": 300, "available": 49700}
    assert_books_balance(running)


def test_coins_balance_combination_without_a_channel(running, receiver):
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    fund_balance(running, member, 1500)
    trade = member_trade(m, receiver, member, 2000)
    r = pay(trade, {"components": [{"method": "coins", "amount": 800}, {"method": "balance"}],
                    "payment_password": PASSWORD})
    assert r.json()["status"] == "succeeded", r.text
    assert paid_with(m, trade) == {"coins": 800, "balance": 1200}
    assert_books_balance(running)


@pytest.mark.parametrize("payload,status,code", [
    ({"components": [{"method": "coins", "amount": 1001}, {"method": "sandbox"}]}, 409, "COINS_CAP_EXCEEDED"),
    ({"components": [{"method": "coins", "amount": 500}, {"method": "coins"}]}, 400, "INVALID_COMPONENTS"),
    ({"components": [{"method": "coins"}, {"method": "sandbox"}]}, 400, "INVALID_COMPONENTS"),
    ({"components": [{"method": "coins", "amount": 2000}, {"method": "sandbox"}]}, 400, "INVALID_COMPONENTS"),
    ({"components": [{"method": "coins", "amount": 1.5}, {"method": "sandbox"}]}, 400, "INVALID_COMPONENTS"),
    ({"method": "balance"}, 409, "INSUFFICIENT_BALANCE"),
    ({"components": [{"method": "coins", "amount": 900}, {"method": "balance"}]}, 409, "INSUFFICIENT_BALANCE"),
])
def test_refused_payments_move_and_hold_nothing(running, receiver, payload, status, code):
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    trade = member_trade(m, receiver, member, 2000)
    r = pay(trade, dict(payload, payment_password=PASSWORD))
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert accounts(m, member)["coins"] == {"available": 800, "held": 0}
    assert accounts(m, member)["balance"] == {"available": 0, "frozen": 0}
    assert m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"] == "pending"
    assert_books_balance(running)


def test_wrong_password_is_refused_and_holds_nothing(running, receiver):
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    trade = member_trade(m, receiver, member, 2000)
    r = pay(trade, {"components": [{"method": "coins", "amount": 500}, {"method": "sandbox"}],
                    "payment_password": "wrong-one"})
    assert r.status_code == 403 and r.json()["code"] == "INVALID_PAYMENT_PASSWORD"
    assert accounts(m, member)["coins"] == {"available": 800, "held": 0}


def test_trade_without_member_cannot_use_member_methods(running, receiver):
    m = running.merchant()
    r = m.call("POST", "/v1/trades", {"out_trade_no": "NOM", "amount": 100, "subject": "x", "order_timeout_s": 60})
    r = pay(r.json(), {"method": "balance", "payment_password": PASSWORD})
    assert r.status_code == 400 and r.json()["code"] == "METHOD_NOT_AVAILABLE"


def test_another_merchants_member_cannot_be_named_on_a_trade(running, receiver):
    a, b = running.merchant("A"), running.merchant("B")
    member = new_member(a)
    r = b.call("POST", "/v1/trades", {"out_trade_no": "X1", "amount": 100, "subject": "x", "order_timeout_s": 60,
                                      "member_id": member})
    assert r.status_code == 404 and r.json()["code"] == "MEMBER_NOT_FOUND"
