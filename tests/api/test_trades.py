"""Trades through the HTTP API: create, idempotency, validation, expiry, query, close."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from piaohao.db.schema import trades
from tests.api.test_gateway import trade_body


def count_trades(running) -> int:
    with running.platform.db.read() as conn:
        return conn.execute(select(func.count()).select_from(trades)).scalar_one()


def test_create_returns_a_pending_trade_with_a_pay_url(running):
    m = running.merchant()
    r = m.call("POST", "/v1/trades", trade_body(buyer_id="u-42"))
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["status"] == "pending" and t["amount"] == 1999 and t["currency"] == "CNY"
    assert t["refunded_amount"] == 0 and t["paid_at"] is None
    assert t["pay_url"].startswith(running.url + "/cashier/")
    assert t["expires_at"].endswith("+08:00")  # business time zone in responses
    assert m.call("GET", f"/v1/trades/{t['trade_no']}").json() == t
    assert m.call("GET", "/v1/trades?out_trade_no=A1").json() == t


def test_same_body_again_is_200_with_the_same_trade(running):
    m = running.merchant()
    first = m.call("POST", "/v1/trades", trade_body())
    again = m.call("POST", "/v1/trades", trade_body())
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["trade_no"] == first.json()["trade_no"]


def test_different_body_same_key_is_idempotency_conflict(running):
    m = running.merchant()
    m.call("POST", "/v1/trades", trade_body())
    r = m.call("POST", "/v1/trades", trade_body(amount=2000))
    assert r.status_code == 422 and r.json()["code"] == "IDEMPOTENCY_CONFLICT"
    assert count_trades(running) == 1


def test_twenty_identical_creates_at_once_make_one_trade(running):
    m = running.merchant()
    body = trade_body("RACE")
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: m.call("POST", "/v1/trades", body), range(20)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 19 + [201], [r.text for r in answers if r.status_code not in (200, 201)]
    assert len({r.json()["trade_no"] for r in answers}) == 1
    assert count_trades(running) == 1


def test_zero_amount_is_refused_with_zero_amount(running):
    r = running.merchant().call("POST", "/v1/trades", trade_body(amount=0))
    assert r.status_code == 400 and r.json()["code"] == "ZERO_AMOUNT"
    assert count_trades(running) == 0


@pytest.mark.parametrize("amount", [-1, 1.5, "100", True, 10**20, 10**15 + 1, None])
def test_bad_amounts_are_invalid_request_and_write_nothing(running, amount):
    r = running.merchant().call("POST", "/v1/trades", trade_body(amount=amount))
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", r.text
    assert count_trades(running) == 0


@pytest.mark.parametrize("field,value", [
    ("out_trade_no", ""), ("out_trade_no", "has space"), ("out_trade_no", "x" * 65), ("currency", "XXX"),
    ("subject", ""), ("notify_url", 7), ("unknown_field", 1), ("expires_at", "2026-11-23T10:00:00"),
])
def test_malformed_fields_are_invalid_request(running, field, value):
    r = running.merchant().call("POST", "/v1/trades", trade_body(**{field: value}))
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", r.text


def test_a_notify_url_of_another_scheme_is_invalid_url(running):
    r = running.merchant().call("POST", "/v1/trades", trade_body(notify_url="ftp://x"))
    assert r.status_code == 400 and r.json()["code"] == "INVALID_URL", r.text  # API.md "Security settings"


def test_malformed_json_is_invalid_request(running):
    m = running.merchant()
    body = b"{not json"
    r = m.raw("POST", "/v1/trades", body, m.headers("POST", "/v1/trades", body))
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST"


def test_expiry_in_the_past_is_trade_expired(running):
    m = running.merchant()
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    r = m.call("POST", "/v1/trades", trade_body(expires_at=past))
    assert r.status_code == 400 and r.json()["code"] == "TRADE_EXPIRED"
    old_order = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    r = m.call("POST", "/v1/trades", trade_body("B", order_created_at=old_order, order_timeout_s=60))
    assert r.status_code == 400 and r.json()["code"] == "TRADE_EXPIRED"


def test_expiry_is_never_later_than_the_orders_own(running):
    m = running.merchant()
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    order_expiry = created + dt.timedelta(seconds=600)
    r = m.call("POST", "/v1/trades", trade_body(order_created_at=created.isoformat(), order_timeout_s=600,
                                                expires_at=(created + dt.timedelta(hours=2)).isoformat()))
    assert dt.datetime.fromisoformat(r.json()["expires_at"]) == order_expiry
    # Any offset is accepted on the way in.
    in_tokyo = (created + dt.timedelta(seconds=300)).astimezone(dt.timezone(dt.timedelta(hours=9)))
    r = m.call("POST", "/v1/trades", trade_body("B", expires_at=in_tokyo.isoformat()))
    assert dt.datetime.fromisoformat(r.json()["expires_at"]) == in_tokyo


def test_unknown_trade_is_404(running):
    r = running.merchant().call("GET", "/v1/trades/tr_nope")
    assert r.status_code == 404 and r.json()["code"] == "TRADE_NOT_FOUND"


def test_close_an_unpaid_trade_then_close_again(running, receiver):
    m = running.merchant()
    t = m.call("POST", "/v1/trades", trade_body(notify_url=receiver.url)).json()
    first = m.call("POST", f"/v1/trades/{t['trade_no']}/close")
    again = m.call("POST", f"/v1/trades/{t['trade_no']}/close")
    assert first.status_code == 200 and first.json()["status"] == "closed"
    assert again.status_code == 200 and again.json()["status"] == "closed"
    from tests.support.merchant import wait_until

    assert wait_until(lambda: receiver.events("trade.closed"))
    assert len(receiver.events("trade.closed")) == 1


def test_replaying_the_create_of_a_paid_trade_answers_its_real_components(running):
    from piaohao.channels.spi import Outcome, PaymentResult
    from piaohao.services import payments

    m = running.merchant()
    created = m.call("POST", "/v1/trades", trade_body()).json()
    token = created["pay_url"].rsplit("/", 1)[1]
    payment_no = payments.start_payment(running.platform, token, "sandbox")["payment_no"]
    assert payments.apply_channel_result(running.platform, payment_no, PaymentResult(
        Outcome.SUCCEEDED, channel_txn_no="T1", amount=1999, currency="CNY"), source="notify") == "succeeded"
    shown = m.call("GET", f"/v1/trades/{created['trade_no']}").json()
    assert shown["components"] == [{"method": "sandbox", "amount": 1999, "refunded_amount": 0}]
    again = m.call("POST", "/v1/trades", trade_body())
    assert again.status_code == 200 and again.json() == shown
