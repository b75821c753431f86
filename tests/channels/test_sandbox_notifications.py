"""The sandbox's notifications: signed, retried until acknowledged, and the per-payment faults
of API.md ("Sandbox faults"): normal, duplicate, never, bad_signature, amount_mismatch."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from piaohao.channels.spi import NotificationRejected, Outcome

from .helpers import buyer, create_payment, paid_payment


def _rows(sandbox, out_trade_no: str):
    t = sandbox.store.t.notifications
    with sandbox.store.read() as conn:
        return conn.execute(select(t).where(t.c.out_trade_no == out_trade_no)).all()


def test_a_paid_payment_is_notified_once_and_verifies(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    payment_no, created = paid_payment(channel, url, amount=2500)
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 1)
    sandbox.drain()
    [delivery] = sandbox.receiver.got(key)
    note = channel.verify_notification(delivery.headers, delivery.body)
    assert (note.kind, note.payment_no, note.outcome) == ("payment", payment_no, Outcome.SUCCEEDED)
    assert (note.amount, note.currency, note.channel_txn_no) == (2500, "CNY", created.channel_txn_no)
    assert note.finished_at is not None
    ack = channel.ack(True)
    assert ack.status_code == 200 and orjson.loads(ack.body) == {"code": "SUCCESS"}
    assert channel.ack(False).status_code >= 400


def test_a_failing_receiver_gets_retries_until_it_acknowledges_then_nothing_more(channel, sandbox):
    key, url = sandbox.receiver.new_path(fail_first=2)
    payment_no, _ = paid_payment(channel, url)
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 3)
    sandbox.drain()
    deliveries = sandbox.receiver.got(key)
    assert len(deliveries) == 3 and len({d.body for d in deliveries}) == 1
    [row] = _rows(sandbox, payment_no)
    assert (row.status, row.attempts) == ("acked", 3)


def test_a_receiver_that_never_acknowledges_is_given_up_after_the_last_try(channel, sandbox):
    key, url = sandbox.receiver.new_path(fail_first=1000)
    payment_no, _ = paid_payment(channel, url)
    tries = sandbox.notifier.tries_max
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == tries)
    sandbox.drain()
    assert len(sandbox.receiver.got(key)) == tries
    [row] = _rows(sandbox, payment_no)
    assert row.status == "given_up" and "500" in row.last_error


def test_duplicate_sends_five_identical_notifications(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    payment_no, _ = paid_payment(channel, url, body={"notify": "duplicate"})
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 5)
    sandbox.drain()
    deliveries = sandbox.receiver.got(key)
    assert len(deliveries) == 5 and len({d.body for d in deliveries}) == 1
    for d in deliveries:
        assert channel.verify_notification(d.headers, d.body).payment_no == payment_no
    assert {r.status for r in _rows(sandbox, payment_no)} == {"acked"}


def test_never_sends_nothing_and_the_query_tells_the_truth(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    payment_no, _ = paid_payment(channel, url, amount=800, body={"notify": "never"})
    sandbox.drain()
    assert sandbox.receiver.got(key) == []
    paid = channel.query_payment(payment_no)
    assert paid.outcome is Outcome.SUCCEEDED and paid.amount == 800


def test_bad_signature_notifications_are_rejected(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    payment_no, _ = paid_payment(channel, url, body={"notify": "bad_signature"})
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) >= 1)
    delivery = sandbox.receiver.got(key)[0]
    with pytest.raises(NotificationRejected) as rejected:
        channel.verify_notification(delivery.headers, delivery.body)
    assert rejected.value.claimed_payment_no == payment_no
    assert channel.query_payment(payment_no).outcome is Outcome.SUCCEEDED


def test_a_tampered_or_unsigned_notification_is_rejected(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    paid_payment(channel, url, amount=100)
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 1)
    [d] = sandbox.receiver.got(key)
    with pytest.raises(NotificationRejected):
        channel.verify_notification(d.headers, d.body.replace(b'"amount":100', b'"amount":101'))
    with pytest.raises(NotificationRejected):
        channel.verify_notification({}, d.body)
    with pytest.raises(NotificationRejected):
        channel.verify_notification(d.headers, b"not json at all")


def test_amount_mismatch_notifies_one_unit_less_while_the_record_holds_the_truth(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    payment_no, _ = paid_payment(channel, url, amount=1000, body={"notify": "amount_mismatch"})
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 1)
    [d] = sandbox.receiver.got(key)
    assert channel.verify_notification(d.headers, d.body).amount == 999
    assert channel.query_payment(payment_no).amount == 1000


def test_notify_delay_holds_back_the_first_send(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    paid_payment(channel, url, body={"notify": "normal", "notify_delay_s": 60})
    sandbox.drain()
    assert sandbox.receiver.got(key) == []
    sandbox.clock.advance(61)
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 1)


def test_a_failed_payment_is_notified_as_failed(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    payment_no, created = create_payment(channel, url)
    assert buyer(created.redirect_url, "fail").status_code == 200
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 1)
    [d] = sandbox.receiver.got(key)
    note = channel.verify_notification(d.headers, d.body)
    assert (note.payment_no, note.outcome) == (payment_no, Outcome.FAILED)


def test_an_unknown_notify_mode_is_refused(channel, sandbox):
    _, created = create_payment(channel, sandbox.receiver.url + "/notify/x")
    assert buyer(created.redirect_url, "succeed", {"notify": "sometimes"}).status_code == 400
    assert buyer(created.redirect_url, "succeed", {"notify_delay_s": -1}).status_code == 400


def test_a_notify_fault_skips_a_try_which_is_then_retried(channel, sandbox):
    key, url = sandbox.receiver.new_path()
    payment_no, _ = create_payment(channel, url)
    sandbox.service.set_fault("notify", "error", count=1, out_trade_no=payment_no)
    buyer(channel.query_payment(payment_no).redirect_url or "", "succeed")
    assert sandbox.pump(lambda: len(sandbox.receiver.got(key)) == 1)
    [row] = _rows(sandbox, payment_no)
    assert (row.status, row.attempts) == ("acked", 2)
