"""A create request's fingerprint decides replay (200) or conflict (422) for trades already in the
database: it must not change from one release to the next. The hashes below were computed by the
release before this test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from piaohao.services.trades import NewTrade


def test_the_fingerprint_of_a_request_with_orders_is_what_it_always_was():
    t = NewTrade(out_trade_no="A1", amount=1999, currency="CNY", subject="socks", notify_url="https://m.example/n",
                 expires_at=datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))),
                 orders=[{"out_order_no": "o1", "sub_merchant_id": "s1", "amount": 1999, "subsidy_amount": 0,
                          "splits": [{"receiver_id": "r1", "amount": 5}]}])
    assert t.fingerprint() == "7a4f45082616fba53d5c00dff15f771f0f5e5fa079557b7f7c2dbe6ed42ac6e8"


def test_the_fingerprint_of_a_plain_request_is_what_it_always_was():
    t = NewTrade(out_trade_no="A1", amount=1999, currency="CNY", subject="socks")
    assert t.fingerprint() == "ff31da51f69c73509e8c2873071cd9eb9c134241c0031f66a12d80812fb6f5ec"


def test_the_same_instant_in_another_zone_is_the_same_request():
    at = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    a = NewTrade(out_trade_no="A1", amount=1, currency="CNY", subject="s", expires_at=at)
    b = NewTrade(out_trade_no="A1", amount=1, currency="CNY", subject="s",
                 expires_at=at.astimezone(timezone(timedelta(hours=8))))
    assert a.fingerprint() == b.fingerprint()
