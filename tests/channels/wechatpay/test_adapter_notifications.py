"""Notifications from the fake, received on a real port and verified by the adapter: the good
ones verify and decrypt; forged, tampered, late, wrongly keyed or probing ones are refused
before anything is believed; duplicates and changed amounts verify (they are the channel's own
words) and the core settles them by idempotency and by querying."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from piaohao.channels.spi import NotificationRejected, Outcome

from .conftest import Account, Served
from .support import Receiver, payment_request, poll
from .test_adapter_payments import pay


def delivered(served: Served, receiver: Receiver, account: Account, count: int = 1) -> list:
    assert poll(lambda: len(receiver.got(account.notify_key)) >= count, served.fake.notifier.run_once)
    return receiver.got(account.notify_key)


def test_a_payment_notification_verifies_and_decrypts(served, account, receiver):
    no = pay(served, account, 1999)
    d = delivered(served, receiver, account)[0]
    n = account.channel.verify_notification(d.headers, d.body)
    assert (n.kind, n.payment_no, n.outcome, n.amount, n.currency) == ("payment", no, Outcome.SUCCEEDED, 1999, "CNY")
    assert n.channel_txn_no.startswith("4200") and n.finished_at is not None
    assert n.raw["out_trade_no"] == no


def test_headers_are_matched_whatever_their_case(served, account, receiver):
    pay(served, account, 5)
    d = delivered(served, receiver, account)[0]
    upper = {k.title(): v for k, v in d.headers.items()}
    assert account.channel.verify_notification(upper, d.body).amount == 5


def test_ack_accepted_is_an_empty_204_and_stops_the_retries(served, account, receiver):
    ack = account.channel.ack(True)
    assert (ack.status_code, ack.body) == (204, b"")
    refused = account.channel.ack(False)
    assert refused.status_code == 400 and json.loads(refused.body)["code"] == "FAIL"
    pay(served, account, 5)
    delivered(served, receiver, account)
    served.clock.advance(86400)
    served.fake.notifier.run_once()
    assert len(receiver.got(account.notify_key)) == 1


def test_a_duplicate_notification_verifies_to_the_same_payment(served, account, receiver):
    req = payment_request(account.notify_url, 700, served.clock())
    account.channel.create_payment(req)
    served.fake.faults.set("duplicate_notification", out_trade_no=req.payment_no)
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    first, second = delivered(served, receiver, account, 2)[:2]
    a = account.channel.verify_notification(first.headers, first.body)
    b = account.channel.verify_notification(second.headers, second.body)
    assert (a.payment_no, a.amount, a.channel_txn_no) == (b.payment_no, b.amount, b.channel_txn_no)
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"]


@pytest.mark.parametrize(("late_s", "accepted"), [(299, True), (301, False), (-301, False)])
def test_a_notification_older_than_300_seconds_is_refused(served, account, receiver, mkeys, http, late_s, accepted):
    from .conftest import make_channel

    pay(served, account, 5)
    d = delivered(served, receiver, account)[0]
    later = served.clock() + timedelta(seconds=late_s)
    channel, _ = make_channel(served, mkeys, account.merchant, account.config.platform_serial, http,
                              now=lambda: later)
    if accepted:
        assert channel.verify_notification(d.headers, d.body).amount == 5
    else:
        with pytest.raises(NotificationRejected, match="300"):
            channel.verify_notification(d.headers, d.body)


def test_a_forged_notification_is_refused(served, account, receiver, other_keys):
    """Signed by someone without the platform key (but naming its serial): refused, though the
    (authentic, encrypted) body still yields the claimed payment as a hint to query early."""
    no = pay(served, account, 5)
    d = delivered(served, receiver, account)[0]
    key = serialization.load_pem_private_key(other_keys.private_pem.encode(), password=None)
    ts, nonce = str(int(served.clock().timestamp())), "forgedforgedforgedforgedforged12"
    signature = base64.b64encode(key.sign(f"{ts}\n{nonce}\n".encode() + d.body + b"\n", padding.PKCS1v15(),
                                          hashes.SHA256())).decode()
    headers = dict(d.headers, **{"wechatpay-timestamp": ts, "wechatpay-nonce": nonce,
                                 "wechatpay-signature": signature})
    with pytest.raises(NotificationRejected) as refused:
        account.channel.verify_notification(headers, d.body)
    assert refused.value.reason == "signature does not verify" and refused.value.claimed_payment_no == no


def test_a_tampered_notification_is_refused(served, account, receiver):
    req = payment_request(account.notify_url, 40, served.clock())
    account.channel.create_payment(req)
    served.fake.faults.set("tampered_notification", out_trade_no=req.payment_no)
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    d = delivered(served, receiver, account)[0]
    with pytest.raises(NotificationRejected, match="signature"):
        account.channel.verify_notification(d.headers, d.body)


def test_a_notification_encrypted_under_another_key_is_refused(served, account, receiver):
    req = payment_request(account.notify_url, 40, served.clock())
    account.channel.create_payment(req)
    served.fake.faults.set("wrong_key_notification", out_trade_no=req.payment_no)
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    d = delivered(served, receiver, account)[0]
    with pytest.raises(NotificationRejected, match="decrypt"):
        account.channel.verify_notification(d.headers, d.body)


def test_an_amount_changed_notification_verifies_but_the_query_holds_the_truth(served, account, receiver):
    req = payment_request(account.notify_url, 1000, served.clock())
    account.channel.create_payment(req)
    served.fake.faults.set("amount_changed_notification", out_trade_no=req.payment_no)
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    d = delivered(served, receiver, account)[0]
    n = account.channel.verify_notification(d.headers, d.body)
    assert n.amount == 999
    assert account.channel.query_payment(req.payment_no).amount == 1000


def test_no_notification_means_the_query_finds_the_payment(served, account, receiver):
    req = payment_request(account.notify_url, 40, served.clock())
    account.channel.create_payment(req)
    served.fake.faults.set("no_notification", out_trade_no=req.payment_no)
    served.fake.pay(req.payment_no, mchid=account.merchant.mchid)
    for _ in range(3):
        served.fake.notifier.run_once()
    assert receiver.got(account.notify_key) == []
    assert account.channel.query_payment(req.payment_no).outcome is Outcome.SUCCEEDED


@pytest.mark.parametrize(("header", "value", "reason"), [
    ("wechatpay-serial", "PUB_KEY_ID_0000000000", "unknown platform serial"),
    ("wechatpay-signature", "WECHATPAY/SIGNTEST/abc", "signature probe"),
    ("wechatpay-signature-type", "WECHATPAY2-SM2-WITH-SM3", "unsupported signature type"),
])
def test_notifications_with_bad_headers_are_refused(served, account, receiver, header, value, reason):
    pay(served, account, 5)
    d = delivered(served, receiver, account)[0]
    with pytest.raises(NotificationRejected, match=reason):
        account.channel.verify_notification(dict(d.headers, **{header: value}), d.body)


def test_garbage_is_refused_without_a_claim(account):
    with pytest.raises(NotificationRejected) as refused:
        account.channel.verify_notification({}, b"not json")
    assert refused.value.claimed_payment_no is None
    with pytest.raises(NotificationRejected, match="too large"):
        account.channel.verify_notification({}, b"x" * (65 * 1024))


def test_retries_follow_the_schedule_until_acknowledged(served, account, receiver):
    def count() -> int:
        served.fake.notifier.run_once()
        return len(receiver.got(account.notify_key))

    receiver.status = 500
    pay(served, account, 5)
    delivered(served, receiver, account)
    for tries, wait_s in enumerate((15, 15, 30, 180), start=1):
        served.clock.advance(wait_s - 1)
        assert count() == tries  # not due yet
        served.clock.advance(1)
        assert count() == tries + 1
    receiver.status = 200
    served.clock.advance(600)
    assert count() == 6  # acknowledged
    served.clock.advance(86400)
    assert count() == 6
    bodies = {json.loads(d.body)["id"] for d in receiver.got(account.notify_key)}
    assert len(bodies) == 1  # every try is the same notification
