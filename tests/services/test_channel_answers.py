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


def _payment(p, payment_no: str) -> dict:
    from piaohao.db.schema import payments as payments_table

    with p.db.read() as conn:
        return dict(conn.execute(select(payments_table).where(payments_table.c.payment_no == payment_no))
                    .mappings().one())


def test_a_success_is_recorded_in_full_and_anything_unusual_changes_nothing_first(service_platform):
    """The usual success is one conditional UPDATE; what it writes is what the read-then-update wrote,
    and an answer it does not fit (another amount, currency or account) falls back to the read."""
    p, channel, clock = service_platform
    creds = create_merchant(p, "Shop", clock.now())
    trade, _ = trades.create_trade(p, creds.merchant_id, creds.app_id, trades.NewTrade(
        "A3", 700, "CNY", "socks", order_timeout_s=3600))
    payment_no = payments.start_payment(p, trade["pay_url"].rsplit("/", 1)[1], "sandbox")["payment_no"]
    before = _payment(p, payment_no)
    assert before["status"] == "processing" and before["channel_txn_no"] == "F" + payment_no

    # Another account, another amount, another currency: nothing is marked succeeded.
    ok = payments.PaymentResult(payments.Outcome.SUCCEEDED, amount=700, currency="CNY")
    assert payments.apply_channel_result(p, payment_no, ok, source="notify", carrier="elsewhere") == "wrong_account"
    wrong = payments.PaymentResult(payments.Outcome.SUCCEEDED, amount=701, currency="CNY")
    assert payments.apply_channel_result(p, payment_no, wrong, source="query") == "mismatch"
    usd = payments.PaymentResult(payments.Outcome.SUCCEEDED, amount=700, currency="USD")
    assert payments.apply_channel_result(p, payment_no, usd, source="query") == "mismatch"
    assert _payment(p, payment_no) == before

    # No channel_txn_no and no currency stated: the record keeps its own, the amount decides.
    clock.advance(5)
    paid_at = clock.now()
    clock.advance(2)
    bare = payments.PaymentResult(payments.Outcome.SUCCEEDED, amount=700, paid_at=paid_at)
    assert payments.apply_channel_result(p, payment_no, bare, source="notify", carrier="sandbox") == "succeeded"
    after = _payment(p, payment_no)
    changed = {k: v for k, v in after.items() if before[k] != v}
    assert changed == {"status": "succeeded", "paid_at": after["paid_at"], "finished_at": after["finished_at"],
                       "updated_at": after["updated_at"], **({"next_query_at": None} if before["next_query_at"]
                                                            else {})}
    assert after["paid_at"].replace(tzinfo=None) == paid_at.replace(tzinfo=None)
    assert after["finished_at"].replace(tzinfo=None) == clock.now().replace(tzinfo=None)
    assert after["channel_txn_no"] == "F" + payment_no
    assert trade_store.get_trade(p, creds.merchant_id, trade_no=trade["trade_no"])["status"] == "succeeded"
    assert payments.apply_channel_result(p, payment_no, bare, source="query") == "duplicate"
    assert _payment(p, payment_no) == after
