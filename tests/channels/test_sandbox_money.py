"""Refunds (capped at the paid amount, idempotent) and payouts (the sandbox bank's accounts)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from piaohao.channels.spi import Outcome, PayoutRequest, RefundRequest

from .helpers import create_payment, key, paid_payment


def _refund(channel, payment_no: str, amount: int, refund_no: str | None = None, notify_url: str | None = None):
    return channel.refund(RefundRequest(payment_no=payment_no, refund_no=refund_no or key("rf"), amount=amount,
                                        currency="CNY", notify_url=notify_url))


def _payout(channel, number: str, amount: int = 5000, payout_no: str | None = None):
    return channel.payout(PayoutRequest(payout_no=payout_no or key("po"), amount=amount, currency="CNY", bank="ICBC",
                                        account_number=number, account_name="Li Lei"))


def test_refunds_add_up_to_at_most_the_paid_amount(channel, sandbox):
    payment_no, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=1000)
    first = _refund(channel, payment_no, 600)
    assert first.outcome is Outcome.SUCCEEDED and first.amount == 600 and first.channel_refund_no
    assert first.finished_at is not None
    too_much = _refund(channel, payment_no, 401)
    assert too_much.outcome is Outcome.FAILED and "REFUND_AMOUNT_EXCEEDED" in too_much.error
    assert _refund(channel, payment_no, 400).outcome is Outcome.SUCCEEDED
    assert _refund(channel, payment_no, 1).outcome is Outcome.FAILED


def test_refund_is_idempotent_on_the_refund_number(channel, sandbox):
    payment_no, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=1000)
    refund_no = key("rf")
    first = _refund(channel, payment_no, 700, refund_no)
    again = _refund(channel, payment_no, 700, refund_no)
    assert again.outcome is Outcome.SUCCEEDED and again.channel_refund_no == first.channel_refund_no
    conflict = _refund(channel, payment_no, 100, refund_no)
    assert conflict.outcome is Outcome.UNKNOWN and "REFUND_CONFLICT" in conflict.error
    queried = channel.query_refund(refund_no)
    assert queried.outcome is Outcome.SUCCEEDED and queried.amount == 700
    assert channel.query_refund(key("rf")).outcome is Outcome.NOT_FOUND
    assert _refund(channel, payment_no, 300).outcome is Outcome.SUCCEEDED  # 700 counted once


def test_concurrent_refunds_never_exceed_the_paid_amount(channel, sandbox):
    payment_no, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=100)
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: _refund(channel, payment_no, 30), range(10)))
    assert sum(r.outcome is Outcome.SUCCEEDED for r in results) == 3
    assert all(r.outcome in (Outcome.SUCCEEDED, Outcome.FAILED) for r in results)


def test_only_a_paid_payment_can_be_refunded(channel, sandbox):
    payment_no, _ = create_payment(channel, sandbox.receiver.url + "/notify/x")
    unpaid = _refund(channel, payment_no, 10)
    assert unpaid.outcome is Outcome.FAILED and "TRADE_NOT_PAID" in unpaid.error
    assert _refund(channel, key(), 10).outcome is Outcome.FAILED


def test_a_refund_is_notified(channel, sandbox):
    key_, url = sandbox.receiver.new_path()
    payment_no, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=1000)
    refund_no = key("rf")
    _refund(channel, payment_no, 250, refund_no, notify_url=url)
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key_)) == 1)
    [d] = sandbox.receiver.got(key_)
    note = channel.verify_notification(d.headers, d.body)
    assert (note.kind, note.refund_no, note.payment_no, note.amount, note.outcome) == (
        "refund", refund_no, payment_no, 250, Outcome.SUCCEEDED)


def test_a_processing_refund_settles_later(channel, sandbox):
    payment_no, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=1000)
    sandbox.service.set_fault("refund", "processing", delay_s=60, count=1)
    refund_no = key("rf")
    assert _refund(channel, payment_no, 100, refund_no).outcome is Outcome.PENDING
    assert channel.query_refund(refund_no).outcome is Outcome.PENDING
    sandbox.clock.advance(61)
    assert channel.query_refund(refund_no).outcome is Outcome.SUCCEEDED


def test_a_refund_the_channel_refuses_is_failed_and_reserves_nothing(channel, sandbox):
    payment_no, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=1000)
    sandbox.service.set_fault("refund", "fail", count=1)
    refund_no = key("rf")
    assert _refund(channel, payment_no, 1000, refund_no).outcome is Outcome.FAILED
    assert channel.query_refund(refund_no).outcome is Outcome.FAILED
    assert _refund(channel, payment_no, 1000).outcome is Outcome.SUCCEEDED


def test_payout_to_an_ordinary_account_succeeds(channel):
    payout_no = key("po")
    paid = _payout(channel, "6222020200112230001", payout_no=payout_no)
    assert paid.outcome is Outcome.SUCCEEDED and paid.channel_payout_no and paid.finished_at
    assert _payout(channel, "6222020200112230001", payout_no=payout_no).channel_payout_no == paid.channel_payout_no
    assert channel.query_payout(payout_no).outcome is Outcome.SUCCEEDED
    assert channel.query_payout(key("po")).outcome is Outcome.NOT_FOUND


def test_payout_to_an_account_ending_0002_fails(channel):
    payout_no = key("po")
    refused = _payout(channel, "6222020200112230002", payout_no=payout_no)
    assert refused.outcome is Outcome.FAILED and refused.error == "ACCOUNT_INVALID"
    assert channel.query_payout(payout_no).outcome is Outcome.FAILED


def test_payout_to_an_account_ending_0003_times_out_but_is_paid(channel):
    payout_no = key("po")
    lost = _payout(channel, "6222020200112230003", payout_no=payout_no)
    assert lost.outcome is Outcome.UNKNOWN and "timeout" in lost.error
    assert channel.query_payout(payout_no).outcome is Outcome.SUCCEEDED
    assert _payout(channel, "6222020200112230003", payout_no=payout_no).outcome is Outcome.SUCCEEDED


def test_payout_key_reused_for_another_payout_is_unknown_not_failed(channel):
    payout_no = key("po")
    _payout(channel, "6222020200112230001", amount=100, payout_no=payout_no)
    assert _payout(channel, "6222020200112230001", amount=200, payout_no=payout_no).outcome is Outcome.UNKNOWN
