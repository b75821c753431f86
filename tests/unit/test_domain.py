from datetime import UTC, datetime, timedelta

import pytest

from piaohao.domain.payments import PAYMENT_STATES
from piaohao.domain.states import IllegalTransition
from piaohao.domain.trades import TRADE_STATES, payment_expiry

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def expiry(**kw):
    base = dict(expires_at=None, order_created_at=None, order_timeout_s=None, default_timeout_s=7200,
                max_timeout_s=30 * 86400)
    base.update(kw)
    return payment_expiry(NOW, **base)


def test_expiry_from_order_creation_and_timeout():
    created = NOW - timedelta(minutes=5)
    assert expiry(order_created_at=created, order_timeout_s=900) == created + timedelta(seconds=900)


def test_expiry_never_later_than_the_orders_own():
    assert expiry(expires_at=NOW + timedelta(hours=1), order_created_at=NOW, order_timeout_s=60) == \
        NOW + timedelta(seconds=60)
    assert expiry(expires_at=NOW + timedelta(seconds=30), order_created_at=NOW, order_timeout_s=600) == \
        NOW + timedelta(seconds=30)


def test_expiry_defaults_and_cap():
    assert expiry() == NOW + timedelta(seconds=7200)
    assert expiry(expires_at=NOW + timedelta(days=400)) == NOW + timedelta(days=30)


def test_trade_states_refuse_what_is_not_in_the_table():
    assert TRADE_STATES.next("pending", "pay") == "succeeded"
    for state, event in (("closed", "pay"), ("succeeded", "close"), ("refunded", "pay"), ("closed", "close")):
        with pytest.raises(IllegalTransition):
            TRADE_STATES.next(state, event)


def test_payment_success_is_final_but_can_follow_close():
    assert PAYMENT_STATES.next("closed", "succeed") == "succeeded"
    with pytest.raises(IllegalTransition):
        PAYMENT_STATES.next("succeeded", "fail")
    assert PAYMENT_STATES.sources("close") == ["created", "processing"]
