"""Refunds through real HTTP: the contract in API.md "Refunds", idempotency and amount checks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from piaohao.db.schema_refunds import refund_components, refunds
from tests.refunds.helpers import (
    books_balance,
    count,
    create_trade,
    event_count,
    paid_trade,
    posted,
    refund,
    trade_of,
    wait_refund,
)
from tests.support.merchant import wait_until


def test_full_refund_succeeds_and_the_trade_becomes_refunded(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    r = refund(m, trade, "R1", 100, reason="size too small")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) >= {"refund_no", "trade_no", "out_request_no", "amount", "currency", "status", "reason",
                         "created_at", "finished_at", "components"}
    assert body["amount"] == 100 and body["currency"] == "CNY" and body["reason"] == "size too small"
    assert body["components"] == [{"method": "sandbox", "amount": 100}]
    assert wait_refund(m, body["refund_no"], "succeeded")
    done = m.call("GET", f"/v1/refunds/{body['refund_no']}").json()
    assert done["finished_at"] is not None
    assert wait_until(lambda: trade_of(m, trade)["status"] == "refunded")
    t = trade_of(m, trade)
    assert t["refunded_amount"] == 100
    assert t["components"] == [{"method": "sandbox", "amount": 100, "refunded_amount": 100}]
    assert wait_until(lambda: receiver.events("refund.succeeded"))
    event = receiver.events("refund.succeeded")[0]
    assert event["data"]["refund_no"] == body["refund_no"] and event["data"]["status"] == "succeeded"
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []


def test_many_partial_refunds_add_up_and_the_last_one_completes_the_trade(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    nos = []
    for i, amount in enumerate((10, 25, 30, 35)):
        r = refund(m, trade, f"P{i}", amount)
        assert r.status_code == 201, r.text
        nos.append(r.json()["refund_no"])
        if i < 3:
            assert trade_of(m, trade)["status"] == "succeeded"
    for no in nos:
        assert wait_refund(m, no, "succeeded")
    assert wait_until(lambda: trade_of(m, trade)["status"] == "refunded")
    over = refund(m, trade, "P9", 1)
    assert over.status_code == 409 and over.json()["code"] == "REFUND_AMOUNT_EXCEEDED"
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []


def test_replay_after_the_trade_is_fully_refunded_answers_the_same_refund(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    first = refund(m, trade, "R1", 100)
    assert first.status_code == 201
    assert wait_refund(m, first.json()["refund_no"], "succeeded")
    assert wait_until(lambda: trade_of(m, trade)["status"] == "refunded")
    again = refund(m, trade, "R1", 100)
    assert again.status_code == 200, again.text
    assert again.json()["refund_no"] == first.json()["refund_no"] and again.json()["status"] == "succeeded"
    by_out_trade_no = m.call("POST", "/v1/refunds", {"out_trade_no": trade["out_trade_no"], "out_request_no": "R1",
                                                     "amount": 100})
    assert by_out_trade_no.status_code == 200 and by_out_trade_no.json()["refund_no"] == first.json()["refund_no"]
    conflict = refund(m, trade, "R1", 99)
    assert conflict.status_code == 422 and conflict.json()["code"] == "IDEMPOTENCY_CONFLICT"
    assert count(running, refunds) == 1


def test_lookup_by_number_and_by_key_and_not_found(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    made = refund(m, trade, "R1", 40).json()
    by_no = m.call("GET", f"/v1/refunds/{made['refund_no']}")
    by_key = m.call("GET", f"/v1/refunds?trade_no={trade['trade_no']}&out_request_no=R1")
    by_out = m.call("GET", f"/v1/refunds?out_trade_no={trade['out_trade_no']}&out_request_no=R1")
    assert by_no.status_code == by_key.status_code == by_out.status_code == 200
    assert by_no.json()["refund_no"] == by_key.json()["refund_no"] == by_out.json()["refund_no"] == made["refund_no"]
    for path in ("/v1/refunds/rf_nope", f"/v1/refunds?trade_no={trade['trade_no']}&out_request_no=R2",
                 "/v1/refunds?trade_no=tr_nope&out_request_no=R1"):
        r = m.call("GET", path)
        assert r.status_code == 404 and r.json()["code"] == "REFUND_NOT_FOUND", path


def test_another_merchants_refund_and_trade_are_not_found(running, receiver):
    m, other = running.merchant("A"), running.merchant("B")
    trade = paid_trade(m, receiver, amount=100)
    made = refund(m, trade, "R1", 40).json()
    r = other.call("GET", f"/v1/refunds/{made['refund_no']}")
    assert r.status_code == 404 and r.json()["code"] == "REFUND_NOT_FOUND"
    r = other.call("GET", f"/v1/refunds?trade_no={trade['trade_no']}&out_request_no=R1")
    assert r.status_code == 404 and r.json()["code"] == "REFUND_NOT_FOUND"
    r = refund(other, trade, "R1", 40)
    assert r.status_code == 404 and r.json()["code"] == "TRADE_NOT_FOUND"
    r = refund(other, trade, "X1", 10)
    assert r.status_code == 404 and r.json()["code"] == "TRADE_NOT_FOUND"
    assert count(running, refunds) == 1


def test_unpaid_and_closed_trades_are_not_refundable(running, receiver):
    m = running.merchant()
    pending = create_trade(m, receiver, "U1", 100)
    r = refund(m, pending, "R1", 10)
    assert r.status_code == 409 and r.json()["code"] == "TRADE_NOT_REFUNDABLE"
    assert m.call("POST", f"/v1/trades/{pending['trade_no']}/close").status_code == 200
    r = refund(m, pending, "R1", 10)
    assert r.status_code == 409 and r.json()["code"] == "TRADE_NOT_REFUNDABLE"
    assert count(running, refunds) == 0


INVALID_AMOUNTS = [-1, 0, 1.5, "100", True, 10**20, None, [100], {"v": 1}]


def test_invalid_amounts_are_refused_and_write_nothing(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    for amount in INVALID_AMOUNTS:
        r = refund(m, trade, "R1", amount)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", (amount, r.text)
    assert count(running, refunds) == 0 and count(running, refund_components) == 0
    assert trade_of(m, trade)["refunded_amount"] == 0
    assert refund(m, trade, "R1", 100).status_code == 201  # the key was never used up


@pytest.mark.parametrize("body", [
    {"out_request_no": "R1", "amount": 10},  # no trade
    {"trade_no": "x", "out_request_no": "bad key!", "amount": 10},
    {"trade_no": "x", "out_request_no": "R1", "amount": 10, "extra": 1},
    {"trade_no": "x", "out_request_no": "R1", "amount": 10, "reason": "r" * 257},
])
def test_malformed_bodies_are_refused(running, body):
    m = running.merchant()
    r = m.call("POST", "/v1/refunds", body)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", r.text
    assert count(running, refunds) == 0


def test_fifty_concurrent_refunds_never_exceed_the_paid_amount(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda i: refund(m, trade, f"C{i}", 60), range(50)))
    created = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(created) == 1, [a.text for a in answers[:3]]
    assert all(a.status_code == 409 and a.json()["code"] == "REFUND_AMOUNT_EXCEEDED" for a in refused)
    assert wait_refund(m, created[0].json()["refund_no"], "succeeded")
    t = trade_of(m, trade)
    assert t["refunded_amount"] == 60 and t["status"] == "succeeded"
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 40
    assert books_balance(running) == []


def test_many_small_concurrent_refunds_fill_the_trade_exactly(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda i: refund(m, trade, f"S{i}", 7), range(30)))
    created = [a.json() for a in answers if a.status_code == 201]
    assert len(created) == 14  # 14 * 7 = 98 <= 100 < 105
    assert all(a.json()["code"] == "REFUND_AMOUNT_EXCEEDED" for a in answers if a.status_code != 201)
    for c in created:
        assert wait_refund(m, c["refund_no"], "succeeded")
    assert trade_of(m, trade)["refunded_amount"] == 98
    assert books_balance(running) == []


def test_twenty_concurrent_identical_requests_make_one_refund(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: refund(m, trade, "SAME", 30), range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201], [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert len({b["refund_no"] for b in bodies}) == 1
    stable = [{k: v for k, v in b.items() if k not in ("status", "finished_at")} for b in bodies]
    assert all(s == stable[0] for s in stable)
    assert count(running, refunds) == 1
    no = bodies[0]["refund_no"]
    assert wait_refund(m, no, "succeeded")
    assert trade_of(m, trade)["refunded_amount"] == 30
    # Once final, every replay is byte-for-byte the same answer.
    replays = [refund(m, trade, "SAME", 30) for _ in range(3)]
    assert len({json.dumps(r.json(), sort_keys=True) for r in replays}) == 1
    wait_until(lambda: False, timeout_s=0.5)
    assert event_count(running, "refund.succeeded", no) == 1


def test_a_nonce_reused_on_another_refund_refunds_nothing(running, receiver):
    # The refund's nonce commits inside the transaction that creates the refund: a reused one
    # refuses the request before any refund exists, and so before any call to the channel.
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    nonce = "f" * 24
    first = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 40},
                   nonce=nonce)
    assert first.status_code == 201, first.text
    again = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R2", "amount": 60},
                   nonce=nonce)
    assert again.status_code == 401 and again.json()["code"] == "NONCE_REUSED"
    assert count(running, refunds, refunds.c.trade_no == trade["trade_no"]) == 1
    assert wait_refund(m, first.json()["refund_no"], "succeeded")
    assert trade_of(m, trade)["refunded_amount"] == 40
