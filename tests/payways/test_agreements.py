"""Agreement pay (協議支付 / 代扣): signing on the channel's page, debits with no buyer present, the
per-debit limit, termination from either side (learned by the periodic query), replays, refunds."""

from __future__ import annotations

import threading

from sqlalchemy import select

from tests.e2e.test_payments import assert_books_balance
from tests.payways.helpers import new_member
from tests.support import patient
from tests.support.merchant import wait_until


def create(m, receiver, key="AG1", **extra):
    body = {"out_agreement_no": key, "max_amount_per_debit": 5000, "notify_url": receiver.url, **extra}
    if "member_id" not in body and "buyer_id" not in body:
        body["buyer_id"] = "u-42"
    return m.call("POST", "/v1/agreements", body)


def agreement(m, no) -> dict:
    return m.call("GET", f"/v1/agreements/{no}").json()


def signed(m, receiver, key="AG1", **extra) -> dict:
    r = create(m, receiver, key, **extra)
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["status"] == "pending" and a["sign_url"]
    assert patient.post(a["sign_url"] + "/sign", timeout=30).status_code == 200
    assert wait_until(lambda: agreement(m, a["agreement_no"])["status"] == "active", 20)
    return agreement(m, a["agreement_no"])


def debit(m, a, out_trade_no, amount, receiver=None):
    body = {"out_trade_no": out_trade_no, "amount": amount, "subject": "monthly membership"}
    if receiver is not None:
        body["notify_url"] = receiver.url
    return m.call("POST", f"/v1/agreements/{a['agreement_no']}/debits", body)


def test_sign_then_debit_collects_with_no_buyer_and_refunds(running, receiver):
    m = running.merchant()
    a = signed(m, receiver)
    assert wait_until(lambda: receiver.events("agreement.signed"))
    assert m.call("GET", "/v1/agreements?out_agreement_no=AG1").json()["agreement_no"] == a["agreement_no"]
    r = debit(m, a, "D1", 3000, receiver)
    assert r.status_code == 201, r.text
    trade = r.json()
    assert trade["status"] == "succeeded" and trade["amount"] == 3000
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    r = m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 1000})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: m.call("GET", f"/v1/refunds/{r.json()['refund_no']}").json()["status"] == "succeeded")
    day = trade["paid_at"][:10]
    assert m.call("GET", f"/v1/statements/{day}").text.count(trade["trade_no"]) == 2
    assert_books_balance(running)


def test_a_debit_replayed_answers_the_same_trade(running, receiver):
    m = running.merchant()
    a = signed(m, receiver)
    first = debit(m, a, "D1", 1200)
    again = debit(m, a, "D1", 1200)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["trade_no"] == first.json()["trade_no"]
    conflict = debit(m, a, "D1", 1300)
    assert conflict.status_code == 422 and conflict.json()["code"] == "IDEMPOTENCY_CONFLICT"
    m.call("POST", f"/v1/agreements/{a['agreement_no']}/terminate")
    assert debit(m, a, "D1", 1200).json()["trade_no"] == first.json()["trade_no"]  # even after the end


def test_limit_state_and_idempotency_errors(running, receiver):
    m, other = running.merchant(), running.merchant("Other")
    r = create(m, receiver)
    a = r.json()
    r = debit(m, a, "D0", 100)
    assert r.status_code == 409 and r.json()["code"] == "AGREEMENT_NOT_ACTIVE"
    assert create(m, receiver).status_code == 200
    r = create(m, receiver, max_amount_per_debit=9999)
    assert r.status_code == 422 and r.json()["code"] == "IDEMPOTENCY_CONFLICT"
    r = m.call("POST", "/v1/agreements", {"out_agreement_no": "X", "max_amount_per_debit": 10})
    assert r.status_code == 400
    r = m.call("POST", "/v1/agreements", {"out_agreement_no": "X", "max_amount_per_debit": 10,
                                          "member_id": "mem_nobody"})
    assert r.status_code == 404 and r.json()["code"] == "MEMBER_NOT_FOUND"
    assert other.call("GET", f"/v1/agreements/{a['agreement_no']}").json()["code"] == "AGREEMENT_NOT_FOUND"
    a = signed(m, receiver, "AG2")
    r = debit(m, a, "D1", 5001)
    assert r.status_code == 409 and r.json()["code"] == "AGREEMENT_LIMIT_EXCEEDED"
    assert m.call("GET", "/v1/trades?out_trade_no=D1").status_code == 404  # nothing created


def test_a_member_agreement_and_a_rejected_one(running, receiver):
    m = running.merchant()
    member = new_member(m)
    a = signed(m, receiver, "AGM", member_id=member)
    assert a["member_id"] == member
    trade = debit(m, a, "DM", 500).json()
    assert trade["status"] == "succeeded"
    r = create(m, receiver, "AGR").json()
    patient.post(r["sign_url"] + "/reject", timeout=30)
    assert wait_until(lambda: agreement(m, r["agreement_no"])["status"] == "rejected", 20)
    assert wait_until(lambda: receiver.events("agreement.rejected"))


def test_termination_by_the_merchant_and_by_the_buyer_at_the_channel(running, receiver):
    m = running.merchant()
    a = signed(m, receiver)
    r = m.call("POST", f"/v1/agreements/{a['agreement_no']}/terminate")
    assert r.status_code == 200 and r.json()["status"] == "terminated"
    assert m.call("POST", f"/v1/agreements/{a['agreement_no']}/terminate").status_code == 200
    assert debit(m, a, "D1", 100).json()["code"] == "AGREEMENT_NOT_ACTIVE"
    page = patient.get(a["sign_url"], headers={"Accept": "application/json"}).json()
    assert page["status"] == "TERMINATED"  # the channel was told
    b = signed(m, receiver, "AG2")
    patient.post(b["sign_url"] + "/terminate", timeout=30)  # the buyer ends it at the channel: no notice
    assert wait_until(lambda: agreement(m, b["agreement_no"])["status"] == "terminated", 20)
    assert wait_until(lambda: len(receiver.events("agreement.terminated")) == 2)


def test_a_mandate_terminated_while_a_debit_is_in_flight(running, receiver):
    from piaohao.db.schema import payments

    m = running.merchant()
    a = signed(m, receiver)
    sandbox = running.assembly.sandbox_service
    gate = threading.Event()
    original = sandbox.pay

    def pay_after_the_buyer_ended_it(mch_id, data):
        sandbox.terminate_mandate(mch_id, {"out_mandate_no": a["agreement_no"]})  # the buyer, meanwhile
        gate.set()
        return original(mch_id, data)

    sandbox.pay = pay_after_the_buyer_ended_it
    try:
        r = debit(m, a, "D1", 1000, receiver)
    finally:
        sandbox.pay = original
    assert gate.is_set()
    assert r.status_code == 201 and r.json()["status"] == "closed", r.text
    assert wait_until(lambda: receiver.events("trade.closed"))
    with running.platform.db.read() as conn:
        statuses = conn.execute(select(payments.c.status).where(payments.c.trade_no == r.json()["trade_no"])).all()
    assert [s for (s,) in statuses] == ["failed"]
    assert wait_until(lambda: agreement(m, a["agreement_no"])["status"] == "terminated", 20)
    assert_books_balance(running)


def test_the_cashier_never_offers_agreement_debits(running, receiver):
    m = running.merchant()
    r = m.call("POST", "/v1/trades", {"out_trade_no": "T1", "amount": 100, "subject": "x", "order_timeout_s": 900})
    trade = r.json()
    view = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    assert "agreement" not in {x["method"] for x in view["methods"]}
    r = patient.post(trade["pay_url"] + "/pay", json={"method": "agreement"}, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "METHOD_NOT_AVAILABLE"
