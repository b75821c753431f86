"""Arrange members, bound cards and quick-pay trades through the merchant API (real HTTP, real sandbox)."""

from __future__ import annotations

import secrets

import httpx

from tests.support import patient
from tests.support.merchant import wait_until

PASSWORD = "246810"
CARD_OK = "6222020200112238888"
CARD_DECLINED = "6222020200112230002"
CARD_SLOW = "6222020200112230003"
ID_NUMBER = "110101199003074518"
PHONE = "13800138000"


def new_member(m) -> str:
    r = m.call("POST", "/v1/members", {"out_member_id": "M" + secrets.token_hex(4), "name": "Li Lei",
                                       "payment_password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()["member_id"]


def bind(m, member_id: str, card_no: str = CARD_OK) -> httpx.Response:
    return m.call("POST", f"/v1/members/{member_id}/cards", {"card_no": card_no, "holder_name": "Li Lei",
                                                             "id_number": ID_NUMBER, "phone": PHONE})


def confirm(m, member_id: str, card_id: str, code: str = "111111") -> httpx.Response:
    return m.call("POST", f"/v1/members/{member_id}/cards/{card_id}/confirm", {"sms_code": code})


def active_card(m, member_id: str, card_no: str = CARD_OK) -> str:
    r = bind(m, member_id, card_no)
    assert r.status_code == 201, r.text
    card_id = r.json()["card_id"]
    r = confirm(m, member_id, card_id)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    return card_id


def member_trade(m, receiver, member_id: str | None, amount: int, out_trade_no: str | None = None) -> dict:
    body = {"out_trade_no": out_trade_no or "T" + secrets.token_hex(5), "amount": amount, "subject": "socks",
            "order_timeout_s": 900}
    if receiver is not None:
        body["notify_url"] = receiver.url
    if member_id:
        body["member_id"] = member_id
    r = m.call("POST", "/v1/trades", body)
    assert r.status_code == 201, r.text
    return r.json()


def pay(trade: dict, payload: dict) -> httpx.Response:
    return patient.post(trade["pay_url"] + "/pay", json=payload, timeout=30)


def trade_of(m, trade) -> dict:
    return m.call("GET", f"/v1/trades/{trade['trade_no']}").json()


def wait_trade(m, trade, status: str) -> bool:
    return bool(wait_until(lambda: trade_of(m, trade)["status"] == status, 20))
