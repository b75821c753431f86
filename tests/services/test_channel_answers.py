"""Channel answers at the service layer, in the exact orders that matter: a FakeChannel in place of
the sandbox, a FakeClock, no HTTP and no workers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from piaohao.alerts import CRITICAL
from piaohao.channels.spi import Product
from piaohao.channels.spi.fake import FakeChannel
from piaohao.db.schema import alerts
from piaohao.kernel.clock import FakeClock
from piaohao.services import payments, trade_store, trades
from piaohao.services.inbound import handle_channel_notification
from piaohao.services.merchants import create_merchant
from tests.conftest import fast_settings


@pytest.fixture
def service_platform(database_url, tmp_path):
    from piaohao.bootstrap import assemble

    clock = FakeClock()
    assembly = assemble(fast_settings(database_url, 9, tmp_path, active_query_after_s=30),
                        clock=clock, migrate_now=True, with_api=False)
    channel = FakeChannel(name="sandbox", products=(Product("sandbox"),))
    assembly.platform.channels["sandbox"] = channel
    yield assembly.platform, channel, clock
    assembly.close()


def alerts_of(p, payment_no: str) -> list[dict]:
    with p.db.read() as conn:
        return [dict(r) for r in conn.execute(select(alerts).where(alerts.c.subject_id == payment_no)).mappings()]


def test_a_notification_with_another_amount_after_the_query_recorded_success_raises_a_critical_alert(
        service_platform):
    p, channel, clock = service_platform
    creds = create_merchant(p, "Shop", clock.now())
    trade, _ = trades.create_trade(p, creds.merchant_id, creds.app_id, trades.NewTrade(
        "A1", 1999, "CNY", "socks", order_timeout_s=3600))
    answer = payments.start_payment(p, trade["pay_url"].rsplit("/", 1)[1], "sandbox")
    payment_no = answer["payment_no"]
    channel.pay(payment_no, at=clock.now())

    # 1. The active query learns of the success first.
    clock.advance(31)
    assert payments.query_due_payments(p) == 1
    paid = trade_store.get_trade(p, creds.merchant_id, trade_no=trade["trade_no"])
    assert paid["status"] == "succeeded" and alerts_of(p, payment_no) == []

    # 2. Then a genuinely signed notification states another amount: no duplicate, a critical alert.
    headers, body = channel.notification(payment_no, amount=1998)
    ack = handle_channel_notification(p, "sandbox", headers, body)
    assert ack.status_code == 200  # acknowledged (the channel must stop retrying), but not ignored
    [alert] = alerts_of(p, payment_no)
    assert (alert["kind"], alert["severity"]) == ("amount_mismatch", CRITICAL)
    assert "1998" in alert["message"]
    after = trade_store.get_trade(p, creds.merchant_id, trade_no=trade["trade_no"])
    assert after == paid  # nothing changed

    # 3. The same notification with the right amount is a plain duplicate.
    headers, body = channel.notification(payment_no)
    assert handle_channel_notification(p, "sandbox", headers, body).status_code == 200
    assert len(alerts_of(p, payment_no)) == 1


def test_a_currency_that_disagrees_on_a_paid_record_is_a_mismatch_not_a_duplicate(service_platform):
    p, channel, clock = service_platform
    creds = create_merchant(p, "Shop", clock.now())
    trade, _ = trades.create_trade(p, creds.merchant_id, creds.app_id, trades.NewTrade(
        "A2", 500, "CNY", "socks", order_timeout_s=3600))
    payment_no = payments.start_payment(p, trade["pay_url"].rsplit("/", 1)[1], "sandbox")["payment_no"]
    ok = payments.PaymentResult(payments.Outcome.SUCCEEDED, channel_txn_no="T1", amount=500, currency="CNY")
    assert payments.apply_channel_result(p, payment_no, ok, source="notify") == "succeeded"
    assert payments.apply_channel_result(p, payment_no, ok, source="query") == "duplicate"
    usd = payments.PaymentResult(payments.Outcome.SUCCEEDED, channel_txn_no="T1", amount=500, currency="USD")
    assert payments.apply_channel_result(p, payment_no, usd, source="query") == "mismatch"
    assert [a["severity"] for a in alerts_of(p, payment_no)] == [CRITICAL]
