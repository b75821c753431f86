"""Alipay's asynchronous notifications, from the fake's notifier to a receiver standing in for the
platform, verified by AlipayChannel: genuine, duplicate, resent late, stale, forged, tampered."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

import pytest

from piaohao.channels.spi import CreatePayment, NotificationRejected, Outcome, RefundRequest
from simulators.alipay import NOTIFY_RETRY_S, Fault
from simulators.alipay import signing as alipay_signing
from tests.channels.alipay.conftest import make_channel, new_out_trade_no
from tests.support import patient


def _paid(merchant, alipay, notify_url: str, amount: int = 2500) -> str:
    req = CreatePayment(new_out_trade_no(), amount, "CNY", "年卡", alipay.clock() + timedelta(minutes=30), notify_url)
    assert patient.get(merchant.channel.create_payment(req).redirect_url).status_code == 200
    alipay.fake.pay(req.payment_no, merchant.app_id)
    return req.payment_no


def _platform(channel, outcomes: list, refuse_first: int = 0):
    """A receiver handler that does what the platform does: verify, then answer with `ack`."""
    def handle(headers, body):
        try:
            result = channel.verify_notification(headers, body)
        except NotificationRejected as e:
            outcomes.append(e)
            ack = channel.ack(False)
        else:
            outcomes.append(result)
            ack = channel.ack(len(outcomes) > refuse_first)
        return ack.status_code, ack.body
    return handle


def _bodies(alipay, key: str) -> list[bytes]:
    return [d.body for d in alipay.receiver.got(key)]


def test_payment_notification_is_verified_and_acknowledged_once(merchant, alipay):
    outcomes: list = []
    key, url = alipay.receiver.new_path(_platform(merchant.channel, outcomes))
    payment_no = _paid(merchant, alipay, url)
    alipay.drain()
    [note] = outcomes
    assert (note.kind, note.payment_no, note.outcome, note.amount, note.currency) == (
        "payment", payment_no, Outcome.SUCCEEDED, 2500, "CNY")
    assert note.channel_txn_no == alipay.fake.find_trade(payment_no).trade_no
    assert note.finished_at == alipay.clock()
    assert [d.answer for d in alipay.receiver.got(key)] == [b"success"]
    alipay.clock.advance(hours=1)
    alipay.drain()
    assert len(alipay.receiver.got(key)) == 1  # `success` stopped the resends


def test_refused_notification_is_resent_on_alipays_schedule_with_the_same_notify_id(merchant, alipay):
    outcomes: list = []
    refusals = len(NOTIFY_RETRY_S) - 1  # refuse all but the last of Alipay's 8 tries
    key, url = alipay.receiver.new_path(_platform(merchant.channel, outcomes, refuse_first=refusals))
    _paid(merchant, alipay, url)
    alipay.drain()
    for delay_s in NOTIFY_RETRY_S[1:]:
        alipay.clock.advance(seconds=delay_s - 1)
        alipay.drain()
        count = len(outcomes)
        alipay.clock.advance(seconds=1)
        alipay.drain()
        assert len(outcomes) == count + 1  # due exactly then, not before
    assert len(outcomes) == len(NOTIFY_RETRY_S)
    assert all(n.outcome is Outcome.SUCCEEDED for n in outcomes)  # ~24.6 h late and still accepted
    assert len({n.raw["notify_id"] for n in outcomes}) == 1
    assert alipay.receiver.got(key)[-1].answer == b"success"


def test_duplicate_delivery_verifies_twice_with_one_notify_id(merchant, alipay):
    key, url = alipay.receiver.new_path()
    alipay.fake.faults.arm(Fault("notify_duplicate"))
    _paid(merchant, alipay, url)
    alipay.drain()
    first, second = (merchant.channel.verify_notification({}, b) for b in _bodies(alipay, key))
    assert first == second and first.raw["notify_id"] == second.raw["notify_id"]  # the core dedupes on it


def test_replayed_stale_notification_is_rejected(merchant, alipay):
    key, url = alipay.receiver.new_path()
    payment_no = _paid(merchant, alipay, url)
    alipay.drain()
    [body] = _bodies(alipay, key)
    alipay.clock.advance(hours=48)  # the oldest a genuine resend can be: still taken
    assert merchant.channel.verify_notification({}, body).outcome is Outcome.SUCCEEDED
    alipay.clock.advance(seconds=1)
    with pytest.raises(NotificationRejected, match="notify_time is 172801 s old") as info:
        merchant.channel.verify_notification({}, body)
    assert info.value.claimed_payment_no == payment_no


def test_notification_from_the_future_is_rejected(merchant, alipay):
    key, url = alipay.receiver.new_path()
    _paid(merchant, alipay, url)
    alipay.drain()
    [body] = _bodies(alipay, key)
    alipay.clock.advance(minutes=-10)  # our clock 10 min behind Alipay's: tolerated skew
    assert merchant.channel.verify_notification({}, body).outcome is Outcome.SUCCEEDED
    alipay.clock.advance(seconds=-1)
    with pytest.raises(NotificationRejected, match="601 s ahead of our clock"):
        merchant.channel.verify_notification({}, body)


def test_notification_signed_by_someone_else_is_rejected_and_alipay_keeps_trying(merchant, alipay):
    outcomes: list = []
    key, url = alipay.receiver.new_path(_platform(merchant.channel, outcomes))
    alipay.fake.faults.arm(Fault("notify_bad_signature", times=1))
    payment_no = _paid(merchant, alipay, url)
    alipay.drain()
    [rejected] = outcomes
    assert isinstance(rejected, NotificationRejected) and rejected.claimed_payment_no == payment_no
    assert alipay.receiver.got(key)[0].answer == b"fail"
    alipay.clock.advance(seconds=NOTIFY_RETRY_S[1])
    alipay.drain()
    assert outcomes[-1].outcome is Outcome.SUCCEEDED  # the genuine resend gets through


def test_tampered_amount_is_rejected(merchant, alipay):
    key, url = alipay.receiver.new_path()
    alipay.fake.faults.arm(Fault("notify_tamper_amount", delta_fen=-2400))
    _paid(merchant, alipay, url)
    alipay.drain()
    [body] = _bodies(alipay, key)
    assert dict(parse_qsl(body.decode()))["total_amount"] == "1.00"
    with pytest.raises(NotificationRejected, match="signature"):
        merchant.channel.verify_notification({}, body)


def test_forged_by_hand_with_a_stranger_key_or_without_sign_type_is_rejected(merchant, alipay, stranger_keys):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    params = {"notify_time": "2026-11-20 10:00:00", "notify_type": "trade_status_sync", "notify_id": "x",
              "app_id": merchant.app_id, "charset": "utf-8", "version": "1.0", "sign_type": "RSA2",
              "out_trade_no": "pay_forged", "trade_no": "1", "trade_status": "TRADE_SUCCESS", "total_amount": "1.00"}
    stranger = load_pem_private_key(stranger_keys.private_pkcs8_pem.encode(), None)
    params["sign"] = alipay_signing.sign(stranger, alipay_signing.notification_content(params).encode())
    with pytest.raises(NotificationRejected) as info:
        merchant.channel.verify_notification({}, urlencode(params).encode())
    assert info.value.claimed_payment_no == "pay_forged"
    params["sign"] = alipay_signing.sign(alipay.fake.key, alipay_signing.notification_content(params).encode())
    del params["sign_type"]
    with pytest.raises(NotificationRejected, match="sign_type"):
        merchant.channel.verify_notification({}, urlencode(params).encode())
    for junk in (b"", b"%zz=1", b"a=1&a=2", "sign=é".encode()):
        with pytest.raises(NotificationRejected):
            merchant.channel.verify_notification({}, junk)


def test_genuine_notification_for_another_app_is_rejected(merchant, alipay, app_keys):
    other = make_channel(alipay, app_keys)
    key, url = alipay.receiver.new_path()
    _paid(other, alipay, url)
    alipay.drain()
    [body] = _bodies(alipay, key)
    assert other.channel.verify_notification({}, body).outcome is Outcome.SUCCEEDED
    with pytest.raises(NotificationRejected, match="app_id"):
        merchant.channel.verify_notification({}, body)
    other.http.close()


def test_signed_notification_with_another_amount_passes_verification_for_the_core_to_compare(merchant, alipay):
    key, url = alipay.receiver.new_path()
    alipay.fake.faults.arm(Fault("notify_amount_delta", delta_fen=1))
    _paid(merchant, alipay, url, amount=2500)
    alipay.drain()
    [body] = _bodies(alipay, key)
    assert merchant.channel.verify_notification({}, body).amount == 2501  # != the payment's 2500: core refuses


def test_dropped_notification_leaves_the_query_as_the_truth(merchant, alipay):
    key, url = alipay.receiver.new_path()
    alipay.fake.faults.arm(Fault("notify_drop"))
    payment_no = _paid(merchant, alipay, url)
    alipay.drain()
    assert _bodies(alipay, key) == []
    assert merchant.channel.query_payment(payment_no).outcome is Outcome.SUCCEEDED


def test_close_and_refund_notifications(merchant, alipay):
    key, url = alipay.receiver.new_path()
    req = CreatePayment(new_out_trade_no(), 300, "CNY", "x", alipay.clock() + timedelta(minutes=30), url)
    patient.get(merchant.channel.create_payment(req).redirect_url)
    merchant.channel.close_payment(req.payment_no)
    payment_no = _paid(merchant, alipay, url, amount=1000)
    for refund_no, amount in (("rf_a", 400), ("rf_b", 600)):
        assert merchant.channel.refund(RefundRequest(payment_no, refund_no, amount, "CNY")).outcome is Outcome.SUCCEEDED
    alipay.drain()
    notes = [merchant.channel.verify_notification({}, b) for b in _bodies(alipay, key)]
    assert [(n.kind, n.payment_no, n.outcome, n.amount, n.refund_no) for n in notes] == [
        ("payment", req.payment_no, Outcome.CLOSED, 300, None),
        ("payment", payment_no, Outcome.SUCCEEDED, 1000, None),
        # refund_fee is the payment's total refunded so far (400, then 400 + 600): not this refund's amount
        ("refund", payment_no, Outcome.SUCCEEDED, None, "rf_a"),
        ("refund", payment_no, Outcome.SUCCEEDED, None, "rf_b"),
    ]
    assert [n.raw["refund_fee"] for n in notes[2:]] == ["4.00", "10.00"]
    assert notes[3].raw["trade_status"] == "TRADE_CLOSED"  # fully refunded
