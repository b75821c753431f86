"""Refunds (partial, full, idempotent, over the cap, their query and notifications) and the daily
trade bill (hash-checked, exact fen, fees, each bill fault) through the adapter and the fake."""

from __future__ import annotations

from datetime import timedelta

import pytest

from piaohao.channels.spi import NotificationRejected, Outcome, RefundRequest
from piaohao.channels.wechatpay import BillUnavailable
from simulators.wechatpay.state import BEIJING

from .conftest import Account, Served
from .support import Receiver, out_no, poll
from .test_adapter_payments import AMOUNTS_FEN, pay


def refund_request(account: Account, payment_no: str, amount: int, paid: int, refund_no: str | None = None):
    return RefundRequest(payment_no=payment_no, refund_no=refund_no or out_no("R"), amount=amount, currency="CNY",
                         reason="不想要了", notify_url=account.notify_url, payment_amount=paid)


def notifications(served: Served, receiver: Receiver, account: Account, count: int) -> list:
    assert poll(lambda: len(receiver.got(account.notify_key)) >= count, served.fake.notifier.run_once)
    got = receiver.got(account.notify_key)
    return [account.channel.verify_notification(d.headers, d.body) for d in got]


def test_partial_then_full_refund_with_queries_and_notifications(served, account, receiver):
    no = pay(served, account, 1000)
    first = refund_request(account, no, 300, 1000)
    answer = account.channel.refund(first)
    assert answer.outcome is Outcome.PENDING and answer.amount == 300 and answer.channel_refund_no
    assert account.channel.refund(first).channel_refund_no == answer.channel_refund_no  # idempotent
    assert account.channel.query_refund(first.refund_no, no).outcome is Outcome.PENDING
    kinds = notifications(served, receiver, account, 2)  # the payment, then REFUND.SUCCESS
    refund_note = kinds[1]
    assert (refund_note.kind, refund_note.payment_no, refund_note.refund_no, refund_note.amount,
            refund_note.outcome) == ("refund", no, first.refund_no, 300, Outcome.SUCCEEDED)
    done = account.channel.query_refund(first.refund_no, no)
    assert done.outcome is Outcome.SUCCEEDED and done.amount == 300 and done.finished_at is not None
    rest = account.channel.refund(refund_request(account, no, 700, 1000))
    assert rest.outcome is Outcome.PENDING
    over = account.channel.refund(refund_request(account, no, 1, 1000))
    assert over.outcome is Outcome.FAILED and "INVALID_REQUEST" in over.error
    assert account.channel.query_payment(no).outcome is Outcome.SUCCEEDED  # REFUND still means it was paid


def test_a_refund_number_reused_with_another_amount_is_not_a_failure(served, account):
    no = pay(served, account, 1000)
    first = refund_request(account, no, 300, 1000)
    account.channel.refund(first)
    reused = account.channel.refund(refund_request(account, no, 400, 1000, refund_no=first.refund_no))
    assert reused.outcome is Outcome.UNKNOWN and "300" in reused.error


def test_a_refund_needs_the_payment_amount(served, account):
    no = pay(served, account, 1000)
    request = RefundRequest(payment_no=no, refund_no=out_no("R"), amount=1, currency="CNY")
    assert account.channel.refund(request).outcome is Outcome.FAILED
    wrong_total = account.channel.refund(refund_request(account, no, 1, 999))
    assert wrong_total.outcome is Outcome.FAILED


def test_refunding_an_unpaid_or_unknown_payment_fails(served, account):
    assert account.channel.refund(refund_request(account, "NOSUCHPAYMENT9", 1, 1)).outcome is Outcome.FAILED


def test_refund_query_not_found_and_wrong_payment(served, account):
    assert account.channel.query_refund("NOSUCHREFUND", "x").outcome is Outcome.NOT_FOUND
    no = pay(served, account, 100)
    request = refund_request(account, no, 100, 100)
    account.channel.refund(request)
    assert account.channel.query_refund(request.refund_no, "ANOTHERPAYMENT").outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(("status", "outcome"), [("CLOSED", Outcome.FAILED), ("ABNORMAL", Outcome.PENDING)])
def test_closed_and_abnormal_refunds(served, account, receiver, status, outcome):
    no = pay(served, account, 100)
    request = refund_request(account, no, 100, 100)
    account.channel.refund(request)
    served.fake.finish_refund(request.refund_no, status, mchid=account.merchant.mchid)
    note = notifications(served, receiver, account, 2)[1]
    assert note.kind == "refund" and note.outcome is outcome
    result = account.channel.query_refund(request.refund_no, no)
    assert result.outcome is outcome and result.error == status


def test_a_refund_timeout_is_unknown(served, account, mkeys, http):
    from .conftest import make_channel

    no = pay(served, account, 100)
    fast, _ = make_channel(served, mkeys, account.merchant, account.config.platform_serial, http, timeout_s=0.3)
    served.fake.faults.set("slow", out_trade_no=no, delay_s=1.5)
    assert fast.refund(refund_request(account, no, 100, 100)).outcome is Outcome.UNKNOWN


def test_an_amount_changed_refund_notification_verifies_with_the_wrong_amount(served, account, receiver):
    no = pay(served, account, 500)
    served.fake.faults.set("amount_changed_notification", out_trade_no=no)
    request = refund_request(account, no, 200, 500)
    account.channel.refund(request)
    note = notifications(served, receiver, account, 2)[1]
    assert note.amount == 199 and account.channel.query_refund(request.refund_no, no).amount == 200


def test_a_tampered_refund_notification_is_refused(served, account, receiver):
    no = pay(served, account, 500)
    notifications(served, receiver, account, 1)
    served.fake.faults.set("tampered_notification", out_trade_no=no)
    account.channel.refund(refund_request(account, no, 200, 500))
    assert poll(lambda: len(receiver.got(account.notify_key)) >= 2, served.fake.notifier.run_once)
    d = receiver.got(account.notify_key)[1]
    with pytest.raises(NotificationRejected):
        account.channel.verify_notification(d.headers, d.body)


# --- the bill ---------------------------------------------------------------------------------


def a_day_of_business(served: Served, account: Account, amounts: list[int], refund_fen: int = 0):
    """Pay each amount, refund part of the first, then move the clock to the next Beijing day."""
    nos = [pay(served, account, amount) for amount in amounts]
    refund = None
    if refund_fen:
        refund = refund_request(account, nos[0], refund_fen, amounts[0])
        account.channel.refund(refund)
    day = served.clock().astimezone(BEIJING).date()
    served.clock.advance(86400)
    return day, nos, refund


def test_the_bill_checks_its_hash_and_reads_exact_fen_and_fees(served, account):
    day, nos, refund = a_day_of_business(served, account, [1999, 1], refund_fen=500)
    rows = list(account.channel.download_bill(day))
    payments = {r.payment_no: r for r in rows if r.record_type == "payment"}
    refunds = [r for r in rows if r.record_type == "refund"]
    assert payments[nos[0]].amount == 1999 and payments[nos[0]].fee == 12  # 0.6 % of 19.99, rounded half up
    assert payments[nos[1]].amount == 1 and payments[nos[1]].fee == 0
    assert payments[nos[0]].channel_txn_no.startswith("4200")
    assert payments[nos[0]].finished_at.utcoffset() == timedelta(hours=8)
    assert len(refunds) == 1
    r = refunds[0]
    assert (r.payment_no, r.refund_no, r.amount, r.fee) == (nos[0], refund.refund_no, 500, -3)
    assert r.channel_refund_no and r.currency == "CNY"


@pytest.mark.parametrize("amount", AMOUNTS_FEN)
def test_bill_amounts_are_exact(served, account, amount):
    day, nos, _ = a_day_of_business(served, account, [amount])
    (row,) = list(account.channel.download_bill(day))
    assert row.amount == amount and type(row.amount) is int


def test_a_bill_whose_hash_does_not_match_is_refused(served, account):
    day, _, _ = a_day_of_business(served, account, [100])
    served.fake.faults.set("bill_wrong_hash")
    with pytest.raises(BillUnavailable, match="SHA1"):
        account.channel.download_bill(day)


def test_a_day_without_trades_is_an_empty_bill(served, account):
    assert list(account.channel.download_bill(served.clock().date() - timedelta(days=30))) == []


@pytest.mark.parametrize(("fault", "expect"), [
    ("bill_missing_row", lambda rows, nos: {r.payment_no for r in rows} == {nos[1]}),
    ("bill_extra_row", lambda rows, nos: len(rows) == 3 and any(r.payment_no.startswith("GHOST") for r in rows)),
    ("bill_changed_amount", lambda rows, nos: sorted(r.amount for r in rows) == [101, 200]),
])
def test_bill_faults_reach_reconciliation_as_differences(served, account, fault, expect):
    """These bills are the channel's own (hash and summary agree): the adapter hands them over and
    reconciliation finds the difference."""
    day, nos, _ = a_day_of_business(served, account, [100, 200])
    served.fake.faults.set(fault)
    assert expect(list(account.channel.download_bill(day)), nos)


def test_a_bill_timeout_is_unavailable(served, account, mkeys, http):
    from .conftest import make_channel

    day, _, _ = a_day_of_business(served, account, [100])
    fast, _ = make_channel(served, mkeys, account.merchant, account.config.platform_serial, http, timeout_s=0.3)
    served.fake.faults.set("slow", delay_s=1.5)
    with pytest.raises(BillUnavailable, match="timeout"):
        fast.download_bill(day)
