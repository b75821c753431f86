"""A merchant close while the buyer's payment is still being created at the channel: the channel's
"no such payment" is not "closed" (409 TRADE_NOT_CLOSABLE); after the trade's expiry plus the
channel's grace, the expiry worker closes it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from piaohao.db.schema import payments
from piaohao.kernel.clock import FakeClock
from piaohao.services.closing import channel_expiry_grace_s, close_pending_trade
from piaohao.workers.expiry import ExpiryWorker
from tests.api.test_gateway import trade_body
from tests.support import patient


def test_close_while_the_payment_has_not_reached_the_channel_is_refused(make_platform, receiver):
    clock = FakeClock(datetime.now(UTC))
    running = make_platform(workers=False, clock=clock)
    m = running.merchant()
    r = m.call("POST", "/v1/trades", trade_body("A1", 1999, notify_url=receiver.url, order_timeout_s=600))
    trade = r.json()
    # The buyer's create call has not reached the channel (here: the channel errs and records nothing);
    # for all we know it is still on its way, and the buyer may be charged.
    running.assembly.sandbox_service.set_fault("pay", "error", count=1)
    assert patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30).status_code == 503
    with running.platform.db.read() as conn:
        assert conn.execute(select(payments.c.status).where(
            payments.c.trade_no == trade["trade_no"])).scalar_one() == "created"
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/close")
    assert r.status_code == 409 and r.json()["code"] == "TRADE_NOT_CLOSABLE", r.text
    assert m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"] == "pending"
    assert not receiver.events("trade.closed")

    # Expired, but within the channel's grace: still not closed.
    clock.advance(600 + 1)
    assert close_pending_trade(running.platform, trade["trade_no"], reason="expired") == "in_progress"
    # Past the grace the channel can no longer take that payment: the expiry worker closes the trade.
    clock.advance(channel_expiry_grace_s(running.platform) + 1)
    assert ExpiryWorker(running.platform).run_once() == 1
    with running.platform.db.read() as conn:
        assert conn.execute(select(payments.c.status).where(
            payments.c.trade_no == trade["trade_no"])).scalar_one() == "closed"
