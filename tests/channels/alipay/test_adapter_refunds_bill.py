"""Refunds, refund queries and the daily bill through AlipayChannel against the fake Alipay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from piaohao.channels.alipay import BillUnavailable
from piaohao.channels.spi import BillRow, CreatePayment, Outcome, RefundRequest
from simulators.alipay import Fault
from tests.channels.alipay.conftest import new_out_trade_no
from tests.support import patient

FEE_RATE_PPM = 6000  # the fake's default: 0.6 %


def _paid(merchant, alipay, amount: int) -> str:
    req = CreatePayment(new_out_trade_no(), amount, "CNY", "票", alipay.clock() + timedelta(minutes=30), "")
    assert patient.get(merchant.channel.create_payment(req).redirect_url).status_code == 200
    alipay.fake.pay(req.payment_no, merchant.app_id)
    return req.payment_no


def _refund(merchant, payment_no: str, refund_no: str, amount: int):
    return merchant.channel.refund(RefundRequest(payment_no, refund_no, amount, "CNY", reason="退票"))


def test_partial_then_full_refund_with_queries(merchant, alipay):
    payment_no = _paid(merchant, alipay, 10_000)
    first = _refund(merchant, payment_no, "rf_1", 2_501)
    assert (first.outcome, first.amount, first.finished_at) == (Outcome.SUCCEEDED, 2_501, alipay.clock())
    assert merchant.channel.query_payment(payment_no).outcome is Outcome.SUCCEEDED  # still paid
    rest = _refund(merchant, payment_no, "rf_2", 7_499)
    assert (rest.outcome, rest.amount) == (Outcome.SUCCEEDED, 7_499)
    for refund_no, amount in (("rf_1", 2_501), ("rf_2", 7_499)):
        found = merchant.channel.query_refund(refund_no, payment_no)
        assert (found.outcome, found.amount) == (Outcome.SUCCEEDED, amount)
    # Fully refunded: Alipay says TRADE_CLOSED, but the payment did succeed.
    assert merchant.channel.query_payment(payment_no).outcome is Outcome.SUCCEEDED


def test_refund_is_idempotent_on_refund_no(merchant, alipay):
    payment_no = _paid(merchant, alipay, 1_000)
    assert _refund(merchant, payment_no, "rf_x", 300).outcome is Outcome.SUCCEEDED
    replay = _refund(merchant, payment_no, "rf_x", 300)  # fund_change=N: confirmed by the refund query
    assert (replay.outcome, replay.amount) == (Outcome.SUCCEEDED, 300)
    assert alipay.fake.find_trade(payment_no).refunded_fen == 300
    assert _refund(merchant, payment_no, "rf_x", 301).outcome is Outcome.UNKNOWN  # same number, other amount


def test_refund_over_what_is_left_or_of_an_unpaid_trade_fails(merchant, alipay):
    payment_no = _paid(merchant, alipay, 1_000)
    assert _refund(merchant, payment_no, "rf_1", 900).outcome is Outcome.SUCCEEDED
    over = _refund(merchant, payment_no, "rf_2", 101)
    assert over.outcome is Outcome.FAILED and "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" in over.error
    assert _refund(merchant, new_out_trade_no(), "rf_3", 1).outcome is Outcome.FAILED  # no such trade


def test_refund_query_of_an_unknown_refund_is_not_found(merchant, alipay):
    payment_no = _paid(merchant, alipay, 1_000)
    assert merchant.channel.query_refund("rf_none", payment_no).outcome is Outcome.NOT_FOUND
    assert merchant.channel.query_refund("rf_none", new_out_trade_no()).outcome is Outcome.NOT_FOUND


def test_refund_with_a_system_error_after_applying_is_unknown_then_settled_by_query(merchant, alipay):
    payment_no = _paid(merchant, alipay, 1_000)
    alipay.fake.faults.arm(Fault("system_error", method="alipay.trade.refund", apply=True, times=1))
    assert _refund(merchant, payment_no, "rf_1", 500).outcome is Outcome.UNKNOWN
    assert merchant.channel.query_refund("rf_1", payment_no).outcome is Outcome.SUCCEEDED


def _fee(amount: int) -> int:
    return (amount * FEE_RATE_PPM + 500_000) // 1_000_000


def test_bill_lists_the_days_payments_and_refunds_with_fees(merchant, alipay):
    bill_date = (alipay.clock() + timedelta(hours=8)).date()  # Beijing business day
    paid = {_paid(merchant, alipay, amount): amount for amount in (1, 1999, 10_000)}
    big = max(paid, key=paid.get)
    assert _refund(merchant, big, "rf_half", 5_000).outcome is Outcome.SUCCEEDED
    with pytest.raises(BillUnavailable):  # today's bill is not out yet
        list(merchant.channel.download_bill(bill_date))
    alipay.clock.advance(days=1)
    rows = list(merchant.channel.download_bill(bill_date))
    assert all(isinstance(r, BillRow) and r.currency == "CNY" for r in rows)
    payments = {r.payment_no: r for r in rows if r.record_type == "payment"}
    assert {no: r.amount for no, r in payments.items()} == paid
    assert {no: r.fee for no, r in payments.items()} == {no: _fee(a) for no, a in paid.items()}
    assert payments[big].channel_txn_no == alipay.fake.find_trade(big).trade_no
    [refund] = [r for r in rows if r.record_type == "refund"]
    assert (refund.payment_no, refund.refund_no, refund.amount, refund.fee) == (big, "rf_half", 5_000, -_fee(5_000))
    assert refund.finished_at.date() == alipay.clock().date() - timedelta(days=1)


def test_bill_faults_show_up_as_differences(merchant, alipay):
    bill_date = (alipay.clock() + timedelta(hours=8)).date()
    missing, changed = _paid(merchant, alipay, 100), _paid(merchant, alipay, 200)
    faults = alipay.fake.faults
    faults.arm(Fault("bill_missing_row", out_trade_no=missing))
    faults.arm(Fault("bill_changed_amount", out_trade_no=changed, delta_fen=-1))
    faults.arm(Fault("bill_extra_row"))
    alipay.clock.advance(days=1)
    rows = {r.payment_no: r for r in merchant.channel.download_bill(bill_date)}
    assert missing not in rows
    assert rows[changed].amount == 199
    assert "ghost_0" in rows


def test_bill_download_trouble_raises_bill_unavailable(merchant, alipay):
    alipay.fake.faults.arm(Fault("http_502", method="alipay.data.dataservice.bill.downloadurl.query"))
    with pytest.raises(BillUnavailable, match="502"):
        list(merchant.channel.download_bill((alipay.clock() - timedelta(days=2)).date()))


def test_bill_rows_are_streamed(merchant, alipay):
    """A generator: the network call happens on first iteration, rows come one by one."""
    bill_date = (alipay.clock() + timedelta(hours=8)).date()
    _paid(merchant, alipay, 700)
    rows = merchant.channel.download_bill(bill_date)
    alipay.clock.advance(days=1)  # not asked yet: the call happens below, when the day is over
    first = next(iter(rows))
    assert first.amount == 700
