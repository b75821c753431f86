"""The daily bill: SUCCESS payments and refunds of one business day, and its faults."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from piaohao.channels.sandbox import ChannelUnavailable
from piaohao.channels.spi import Outcome, RefundRequest

from .helpers import create_payment, key, paid_payment


def _today():
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def test_the_bill_lists_the_days_payments_and_refunds(channel, sandbox):
    paid_no, created = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=1500)
    create_payment(channel, sandbox.receiver.url + "/notify/x", amount=99)  # unpaid: not on the bill
    refund_no = key("rf")
    assert channel.refund(RefundRequest(paid_no, refund_no, 500, "CNY")).outcome is Outcome.SUCCEEDED
    bill_date = channel.query_payment(paid_no).paid_at.astimezone(ZoneInfo("Asia/Shanghai")).date()
    rows = channel.download_bill(bill_date)
    assert [(r.record_type, r.payment_no, r.refund_no, r.amount, r.channel_txn_no) for r in rows] == [
        ("payment", paid_no, None, 1500, created.channel_txn_no),
        ("refund", paid_no, refund_no, 500, created.channel_txn_no),
    ]
    assert all(r.currency == "CNY" and r.finished_at.utcoffset().total_seconds() == 8 * 3600 for r in rows)
    assert channel.download_bill(bill_date.replace(year=2001)) == []


def test_the_bill_with_missing_rows(channel, sandbox):
    kept, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x")
    dropped, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x")
    sandbox.service.set_fault("bill", "missing_rows", out_trade_nos=[dropped])
    assert [r.payment_no for r in channel.download_bill(_today())] == [kept]


def test_the_bill_with_extra_rows(channel, sandbox):
    real, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x")
    sandbox.service.set_fault("bill", "extra_rows", count=2)
    rows = channel.download_bill(_today())
    assert len(rows) == 3 and real in {r.payment_no for r in rows}
    fabricated = [r for r in rows if r.payment_no != real]
    assert all(r.record_type == "payment" and r.amount > 0 for r in fabricated)


def test_a_bill_that_cannot_be_fetched_raises(channel, sandbox):
    sandbox.service.set_fault("bill", "error", count=1)
    with pytest.raises(ChannelUnavailable):
        channel.download_bill(_today())
    sandbox.service.set_fault("bill", "bad_signature", count=1)
    with pytest.raises(ChannelUnavailable):
        channel.download_bill(_today())
    assert channel.download_bill(_today()) == []
