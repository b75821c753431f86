"""Closing a trade: by its merchant (`close_trade`) or on expiry (`close_pending_trade`).

A trade is closed at its channels first, then here: a channel that says the buyer already paid
wins (the payment is recorded, the close refused). What a closed trade of each purpose does is
the explicit table `CLOSED_HANDLERS`; a purpose missing from it is an error, never a sale.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog
from sqlalchemy import Connection, select, update

from piaohao import clearing
from piaohao.channels.spi import Outcome
from piaohao.db.schema import payments, trades
from piaohao.domain import payments as pay_states
from piaohao.domain import trades as trade_states
from piaohao.domain.trades import TRADE_STATES
from piaohao.kernel.errors import TradeNotClosable, TradeNotFound
from piaohao.kernel.invariants import require
from piaohao.platform import Platform
from piaohao.services import funding, topups
from piaohao.services.payments import apply_channel_result
from piaohao.services.trade_events import tell_merchant
from piaohao.services.trade_store import get_trade, lock_trade

log = structlog.get_logger(__name__)


def _sale_closed(conn: Connection, p: Platform, closed, now) -> None:
    tell_merchant(conn, p, closed, "trade.closed", now)


# purpose -> handler(conn, platform, closed_trade, now), in the closing transaction.
CLOSED_HANDLERS: dict[str, Callable] = {
    "sale": _sale_closed,
    topups.PURPOSE: topups.on_closed,
}


def close_trade(p: Platform, merchant_id: str, trade_no: str) -> dict:
    """Merchant close: only an unpaid trade. Any payment started at a channel is closed there
    first; if the channel says it was paid, the payment is recorded and the close refused."""
    with p.db.read() as conn:
        trade = conn.execute(select(trades).where(trades.c.trade_no == trade_no,
                                                  trades.c.merchant_id == merchant_id)).mappings().first()
    if trade is None:
        raise TradeNotFound("no such trade")
    outcome = close_pending_trade(p, trade_no, reason=trade_states.CLOSE_REASON_MERCHANT)
    if outcome == "closed":
        return get_trade(p, merchant_id, trade_no=trade_no)
    raise TradeNotClosable(_NOT_CLOSABLE_WHY.get(outcome, "the trade cannot be closed"))


_NOT_CLOSABLE_WHY = {
    "paid": "the trade is paid; use a refund",
    "in_progress": "a payment is in progress at the channel; try again shortly",
}


def channel_expiry_grace_s(p: Platform) -> float:
    """How long after a trade's expiry a channel's "no such payment" is final: a create call sent
    before the expiry has reached the channel or given up by then (twice the channel timeout), and
    the channel refuses to create a payment past its expiry (we pass it the trade's)."""
    return 2 * p.settings.channel_timeout_s + CLOCK_SKEW_S


CLOCK_SKEW_S = 5.0


def _past_channel_expiry(p: Platform, expires_at) -> bool:
    return p.clock.now() >= expires_at + timedelta(seconds=channel_expiry_grace_s(p))


def close_pending_trade(p: Platform, trade_no: str, *, reason: str) -> str:
    """Close a trade at its channels, then here. Returns "closed" (now or already), "paid"
    (the trade is or just became paid) or "in_progress" (a channel could not confirm; retry).

    A channel's "no such payment" is not a confirmation while the buyer's payment may still be on
    its way to the channel (the create call in flight): it is one only once the trade's expiry
    plus `channel_expiry_grace_s` has passed, so the expiry worker still closes a trade whose
    payment never reached the channel, and a merchant close meanwhile is `TRADE_NOT_CLOSABLE`."""
    with p.db.read() as conn:
        trade = conn.execute(select(trades.c.status, trades.c.expires_at).where(trades.c.trade_no == trade_no)).first()
        open_payments = conn.execute(select(payments.c.payment_no, payments.c.channel).where(
            payments.c.trade_no == trade_no, payments.c.status.in_(pay_states.OPEN_STATES))).all()
    if trade is None:
        raise TradeNotFound("no such trade")
    if trade.status == trade_states.CLOSED:
        return "closed"
    if trade.status != trade_states.PENDING:
        return "paid"
    confirmed: set[str] = set()
    for payment_no, channel_name in open_payments:
        result = p.channel(channel_name).close_payment(payment_no)
        if result.outcome == Outcome.SUCCEEDED:
            apply_channel_result(p, payment_no, result, source="close")
            return "paid"
        if result.outcome in (Outcome.CLOSED, Outcome.FAILED) or (
                result.outcome == Outcome.NOT_FOUND and _past_channel_expiry(p, trade.expires_at)):
            confirmed.add(payment_no)
        else:
            log.info("trade.close_deferred", trade_no=trade_no, payment_no=payment_no, outcome=result.outcome,
                     error=result.error)
            return "in_progress"

    def tx(conn: Connection) -> str:
        row = lock_trade(conn, trade_no)
        if row["status"] == trade_states.CLOSED:
            return "closed"
        if row["status"] != trade_states.PENDING:
            return "paid"
        still_open = {r.payment_no for r in conn.execute(select(payments.c.payment_no).where(
            payments.c.trade_no == trade_no, payments.c.status.in_(pay_states.OPEN_STATES)))}
        if still_open - confirmed:
            return "in_progress"  # a payment started after we asked the channel: ask again
        now = p.clock.now()
        event = "expire" if reason == trade_states.CLOSE_REASON_EXPIRED else "close"
        new_status = TRADE_STATES.next(row["status"], event)
        done = conn.execute(update(trades).where(
            trades.c.trade_no == trade_no, trades.c.status == row["status"]).values(
            status=new_status, closed_at=now, close_reason=reason, updated_at=now)).rowcount
        require(done == 1, "trade row is locked; the conditional update cannot miss")
        funding.release_held(conn, trade_no, now)  # a combination's held parts go back to the member
        clearing.on_trade_closed(conn, p, row, now)  # its orders close; their subsidies go back to the cap
        if still_open:
            conn.execute(update(payments).where(payments.c.payment_no.in_(still_open),
                                                payments.c.status.in_(pay_states.PAYMENT_STATES.sources("close")))
                         .values(status=pay_states.CLOSED, finished_at=now, updated_at=now))
        closed = dict(row, status=new_status, closed_at=now, close_reason=reason, updated_at=now)
        handler = CLOSED_HANDLERS.get(row["purpose"])
        require(handler is not None, f"trade {trade_no} has purpose {row['purpose']!r}, which nothing closes")
        handler(conn, p, closed, now)
        log.info("trade.closed", trade_no=trade_no, reason=reason, purpose=row["purpose"])
        return "closed"

    return p.db.write(tx)


