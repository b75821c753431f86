"""Faults on demand: slow, timeout (the effect happens, the answer is lost), error (nothing
happens), bad_signature; by count, per payment, and through the operator endpoints."""

from __future__ import annotations

import time

from piaohao.channels.spi import Outcome
from tests.support import patient

from .helpers import create_payment, key

DELAY_S = 8.0  # well past the client timeout (CLIENT_TIMEOUT_S)


def test_slow_within_the_timeout_is_fine(channel, sandbox):
    sandbox.service.set_fault("pay", "slow", delay_s=0.2, count=1)
    started = time.monotonic()
    _, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert created.outcome is Outcome.PENDING and time.monotonic() - started >= 0.2


def test_slow_past_the_timeout_is_unknown_but_does_act(channel, sandbox):
    sandbox.service.set_fault("pay", "slow", delay_s=DELAY_S, count=1)
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert created.outcome is Outcome.UNKNOWN
    deadline = time.monotonic() + 60  # a bound, not a timing: the sandbox acts once its delay is over
    while channel.query_payment(payment_no).outcome is Outcome.NOT_FOUND and time.monotonic() < deadline:
        time.sleep(0.05)
    assert channel.query_payment(payment_no).outcome is Outcome.PENDING


def test_timeout_loses_the_answer_but_the_effect_happened(channel, sandbox):
    sandbox.service.set_fault("pay", "timeout", delay_s=DELAY_S, count=1)
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert created.outcome is Outcome.UNKNOWN and "timeout" in created.error
    assert channel.query_payment(payment_no).outcome is Outcome.PENDING


def test_timeout_on_close_closes(channel, sandbox):
    payment_no, _ = create_payment(channel, sandbox.receiver.url + "/notify/x")
    sandbox.service.set_fault("close", "timeout", delay_s=DELAY_S, out_trade_no=payment_no)
    assert channel.close_payment(payment_no).outcome is Outcome.UNKNOWN
    assert channel.query_payment(payment_no).outcome is Outcome.CLOSED


def test_error_answers_500_and_does_nothing(channel, sandbox):
    sandbox.service.set_fault("pay", "error", count=1)
    payment_no, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert created.outcome is Outcome.UNKNOWN and "500" in created.error
    assert channel.query_payment(payment_no).outcome is Outcome.NOT_FOUND
    _, again = create_payment(channel, sandbox.receiver.url + "/notify/x", payment_no=payment_no)
    assert again.outcome is Outcome.PENDING  # the count was 1: the fault is gone


def test_a_bad_signature_on_an_answer_is_unknown(channel, sandbox):
    payment_no, _ = create_payment(channel, sandbox.receiver.url + "/notify/x")
    sandbox.service.set_fault("query", "bad_signature", count=1)
    assert channel.query_payment(payment_no).outcome is Outcome.UNKNOWN
    assert channel.query_payment(payment_no).outcome is Outcome.PENDING


def test_a_per_payment_fault_leaves_other_payments_alone(channel, sandbox):
    target, _ = create_payment(channel, sandbox.receiver.url + "/notify/x")
    other, _ = create_payment(channel, sandbox.receiver.url + "/notify/x")
    sandbox.service.set_fault("query", "error", out_trade_no=target)
    assert channel.query_payment(target).outcome is Outcome.UNKNOWN
    assert channel.query_payment(target).outcome is Outcome.UNKNOWN  # no count: until cleared
    assert channel.query_payment(other).outcome is Outcome.PENDING
    sandbox.service.clear_faults()
    assert channel.query_payment(target).outcome is Outcome.PENDING


def test_refund_query_faults_match_the_refunds_payment(channel, sandbox):
    from piaohao.channels.spi import RefundRequest

    from .helpers import paid_payment

    payment_no, _ = paid_payment(channel, sandbox.receiver.url + "/notify/x", amount=100)
    refund_no = key("rf")
    channel.refund(RefundRequest(payment_no, refund_no, 50, "CNY"))
    sandbox.service.set_fault("refund_query", "error", out_trade_no=payment_no)
    assert channel.query_refund(refund_no).outcome is Outcome.UNKNOWN


def test_faults_over_http(sandbox):
    faults_url = f"{sandbox.base_url}/faults"
    created = patient.post(faults_url, json={"op": "payout", "kind": "slow", "delay_s": 0.5, "count": 2})
    assert created.status_code == 201 and created.json()["count"] == 2
    assert patient.post(faults_url, json={"op": "pay", "kind": "explode"}).status_code == 400
    assert patient.post(faults_url, json={"op": "nope", "kind": "slow"}).status_code == 400
    assert patient.post(faults_url, json={"op": "pay", "kind": "slow", "count": 0}).status_code == 400
    listed = patient.get(faults_url).json()["faults"]
    assert [(f["op"], f["kind"], f["delay_s"]) for f in listed] == [("payout", "slow", 0.5)]
    assert patient.delete(faults_url).json() == {"cleared": 1}
    assert patient.get(faults_url).json() == {"faults": []}
