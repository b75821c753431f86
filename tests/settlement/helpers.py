"""Shared steps for the settlement tests: sellers, receivers, trades with orders, paying them."""

from __future__ import annotations

import secrets

import httpx

from piaohao import ledger
from piaohao.books import chart
from piaohao.services.sub_merchants import change_status
from tests.api.test_gateway import trade_body
from tests.e2e.test_payments import start, succeed, wait_status

BANK = {"bank": "ICBC", "number": "6222020200112230001", "name": "Li Lei"}


def key(prefix: str) -> str:
    return prefix + secrets.token_hex(5)


def seller(running, m, *, days: int = 7, approve: bool = True) -> str:
    r = m.call("POST", "/v1/sub-merchants", {
        "out_sub_merchant_id": key("SUB"), "name": "Seller", "settle_after_days": days, "bank_account": BANK,
        "kyc": {"type": "individual", "legal_name": "Li Lei", "id_number": "11010519491231002X"}})
    assert r.status_code == 201, r.text
    sid = r.json()["sub_merchant_id"]
    if approve:
        change_status(running.platform, sid, "approve")
    return sid


def receiver_id(m) -> str:
    r = m.call("POST", "/v1/split-receivers", {"out_receiver_id": key("RCV"), "name": "Ref", "bank_account": BANK})
    assert r.status_code == 201, r.text
    return r.json()["receiver_id"]


def create_trade(m, amount: int, orders: list, **extra) -> httpx.Response:
    return m.call("POST", "/v1/trades", trade_body(key("T"), amount, orders=orders, **extra))


def pay(m, trade: dict) -> dict:
    succeed(start(trade))
    assert wait_status(m, trade, "succeeded")
    return m.call("GET", f"/v1/trades/{trade['trade_no']}").json()


def balances(m, kind: str, ident: str) -> dict:
    r = m.call("GET", f"/v1/{kind}/{ident}")
    assert r.status_code == 200, r.text
    return r.json()["balances"]


def posted(running, name: str, owner: str, currency: str = "CNY") -> int:
    with running.platform.db.read() as conn:
        account = chart.lookup(conn, name, owner, currency)
        return ledger.balance(conn, account.account_id).available if account else 0


def books_balance(running) -> None:
    assert ledger.check(running.platform.db) == []
