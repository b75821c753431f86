"""Signed channel notifications: one about a payout we never made raises an alert; one about a
payment another channel account carried changes nothing; an old timestamp (a replay) is refused
where the protocol carries one."""

from __future__ import annotations

import time

import orjson
from sqlalchemy import func, select, update

from piaohao.channels.sandbox import rsa
from piaohao.channels.sandbox.wire import HEADER_SIGNATURE, HEADER_TIMESTAMP, response_canonical
from piaohao.db.schema import alerts, channel_notifications, payments
from tests.e2e.test_payments import _payment_no, create, signed_sandbox_notification, start, status_of
from tests.support import patient


def _signed(running, payload: dict, ts: int | None = None) -> tuple[dict, bytes]:
    body = orjson.dumps({"mch_id": running.platform.channels["sandbox"].mch_id, **payload})
    stamp = str(int(time.time()) if ts is None else ts)
    keys = running.assembly.sandbox_store.channel_keys()
    return {HEADER_TIMESTAMP: stamp, HEADER_SIGNATURE: rsa.sign(keys.private_pem, response_canonical(stamp, body)),
            "Content-Type": "application/json"}, body


def _alerts(running, kind: str) -> int:
    with running.platform.db.read() as conn:
        return conn.execute(select(func.count()).select_from(alerts).where(alerts.c.kind == kind)).scalar_one()


def test_a_signed_notification_for_an_unknown_payout_raises_an_alert(make_platform):
    running = make_platform(workers=False)
    headers, body = _signed(running, {"kind": "payout", "out_payout_no": "po_never_made", "txn_no": "P1",
                                      "amount": 100000, "currency": "CNY", "status": "SUCCESS"})
    r = patient.post(running.platform.channel_notify_url("sandbox"), content=body, headers=headers)
    assert r.status_code == 200
    assert _alerts(running, "unknown_payout") == 1
    with running.platform.db.read() as conn:
        severity = conn.execute(select(alerts.c.severity).where(alerts.c.kind == "unknown_payout")).scalar_one()
    assert severity == "critical"


def test_an_old_sandbox_notification_is_refused(make_platform):
    running = make_platform(workers=False)
    payload = {"kind": "payout", "out_payout_no": "po_x", "txn_no": "P1", "amount": 1, "currency": "CNY",
               "status": "SUCCESS"}
    headers, body = _signed(running, payload, ts=int(time.time()) - 3600)  # captured an hour ago, replayed
    r = patient.post(running.platform.channel_notify_url("sandbox"), content=body, headers=headers)
    assert r.status_code == 400
    assert _alerts(running, "notification_rejected") == 1 and _alerts(running, "unknown_payout") == 0
    with running.platform.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(channel_notifications)).scalar_one() == 1


def test_a_signed_notification_about_another_accounts_payment_changes_nothing(make_platform, receiver):
    running = make_platform(workers=False)  # no active query: only the notification could pay it
    m = running.merchant()
    trade = create(m, receiver)
    start(trade)
    payment_no = _payment_no(running, trade)
    with running.platform.db.engine.begin() as conn:  # as if another channel account had carried it
        conn.execute(update(payments).where(payments.c.payment_no == payment_no).values(channel="ca_other"))
    headers, body = signed_sandbox_notification(running, payment_no, 1999)
    r = patient.post(running.platform.channel_notify_url("sandbox"), content=body, headers=headers)
    assert r.status_code == 400  # not acknowledged
    assert status_of(m, trade) == "pending"
    assert _alerts(running, "notification_wrong_account") == 1
    with running.platform.db.read() as conn:
        assert conn.execute(select(payments.c.status).where(payments.c.payment_no == payment_no)).scalar_one() \
            in ("created", "processing")
        assert conn.execute(select(func.count()).select_from(channel_notifications)).scalar_one() == 0
