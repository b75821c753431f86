"""Trades (the merchant's request to collect money): states and expiry rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from piaohao.domain.states import StateMachine

PENDING, SUCCEEDED, CLOSED, REFUNDED = "pending", "succeeded", "closed", "refunded"

TRADE_STATES = StateMachine(
    "trade",
    {
        (PENDING, "pay"): SUCCEEDED,
        (PENDING, "close"): CLOSED,
        (PENDING, "expire"): CLOSED,
        (SUCCEEDED, "refund_full"): REFUNDED,
    },
    final={CLOSED, REFUNDED},
)

CLOSE_REASON_MERCHANT = "merchant"
CLOSE_REASON_EXPIRED = "expired"


class ExpiryError(ValueError):
    pass


def payment_expiry(
    now: datetime,
    *,
    expires_at: datetime | None,
    order_created_at: datetime | None,
    order_timeout_s: int | None,
    default_timeout_s: int,
    max_timeout_s: int,
) -> datetime:
    """When the trade stops accepting payment.

    Never later than the order's own expiry (`expires_at`, or `order_created_at + order_timeout_s`,
    the earlier of the two when both are given); without either, `default_timeout_s` from now;
    never more than `max_timeout_s` from now. The caller refuses a result that is not in the future.
    """
    candidates: list[datetime] = []
    if expires_at is not None:
        candidates.append(expires_at)
    if order_timeout_s is not None:
        base = order_created_at if order_created_at is not None else now
        candidates.append(base + timedelta(seconds=order_timeout_s))
    elif order_created_at is not None:
        candidates.append(order_created_at + timedelta(seconds=default_timeout_s))
    if not candidates:
        candidates.append(now + timedelta(seconds=default_timeout_s))
    candidates.append(now + timedelta(seconds=max_timeout_s))
    return min(candidates)
