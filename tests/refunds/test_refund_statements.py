"""Refunds in the merchant's daily statement (API.md "Statements")."""

from __future__ import annotations

import csv
import datetime as dt
import io

from tests.refunds.helpers import create_trade, paid_trade, payment_of, refund, start, succeed, wait_refund
from tests.refunds.test_strays_and_races import CloseLagsBehindPayment, notify_paid, stray_refunds
from tests.support.merchant import wait_until


def statement(m) -> list[dict]:
    day = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    r = m.call("GET", f"/v1/statements/{day}")
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.text)))


def test_statement_lists_final_refunds_with_positive_amounts_and_not_strays(running, receiver):
    p = running.platform
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    ok = refund(m, trade, "R1", 30).json()
    assert wait_refund(m, ok["refund_no"], "succeeded")
    running.assembly.sandbox_service.set_fault("refund", "fail", count=1)
    failed = refund(m, trade, "R2", 20).json()
    assert failed["status"] == "failed"
    running.assembly.sandbox_service.clear_faults()
    stray_trade = create_trade(m, receiver, "A2", 50)  # a stray on another trade: the platform's
    p.channels["sandbox"] = CloseLagsBehindPayment(p.channels["sandbox"])
    succeed(start(stray_trade), "never")
    assert m.call("POST", f"/v1/trades/{stray_trade['trade_no']}/close").status_code == 200
    pay = payment_of(running, stray_trade)
    notify_paid(running, pay["payment_no"], 50)
    assert wait_until(lambda: [r["status"] for r in stray_refunds(running, pay["payment_no"])] == ["succeeded"])

    rows = statement(m)
    refunds_listed = [r for r in rows if r["record_type"] == "refund"]
    assert {(r["refund_no"], r["status"], r["amount"]) for r in refunds_listed} == {
        (ok["refund_no"], "succeeded", "30"), (failed["refund_no"], "failed", "20")}
    row = next(r for r in refunds_listed if r["refund_no"] == ok["refund_no"])
    assert row["trade_no"] == trade["trade_no"] and row["out_trade_no"] == trade["out_trade_no"]
    assert row["out_request_no"] == "R1" and row["currency"] == "CNY" and row["fee"] == "0"
    assert row["channel"] == "sandbox" and row["channel_txn_no"]
    assert row["finished_at"].endswith("+08:00")
    # The stray's payment is in the statement (the channel did collect it), its refund is not.
    assert all(r["out_request_no"] in ("R1", "R2") for r in refunds_listed)
    other = running.merchant("Other")
    assert statement(other) == []
