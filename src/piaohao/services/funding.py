"""Paying a trade with the member's own methods (balance, coins, credit), alone or combined.

Internal parts without a channel part are spent at once, in the transaction that marks the
trade paid. With a channel part they are *held* (ledger holds: the money stays the member's but
cannot be spent twice) and spent in the transaction that records the channel's success, or
released when the channel part fails or the trade closes. The combination succeeds or fails as
a whole: a channel success that no longer covers the rest of the trade is never taken as payment.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from piaohao import clearing as settlement_clearing
from piaohao.books import own_methods
from piaohao.channels.registry import kind_of_product
from piaohao.db.schema import merchants, trade_components, trades
from piaohao.domain import trades as trade_states
from piaohao.domain.composition import Part, check_coins_cap, compose
from piaohao.domain.trades import TRADE_STATES
from piaohao.kernel.errors import (
    InsufficientBalance,
    InsufficientFunds,
    InvalidPaymentPassword,
    InvalidRequest,
    MethodNotAvailable,
    PaymentPasswordLocked,
    TradeNotPayable,
)
from piaohao.platform import Platform
from piaohao.services import methods
from piaohao.services.passwords import verify_payment_password
from piaohao.services.trade_events import tell_merchant
from piaohao.services.trade_store import lock_trade

HELD, PAID, RELEASED, PENDING = "held", "paid", "released", "pending"


def parse_parts(p: Platform, trade, method: str | None, components: list[tuple[str, int | None]] | None, *,
                offered: list[methods.ChannelMethod] | None = None) -> list[Part]:
    """The exact parts of a pay request, checked against the trade and the merchant's coins cap.
    `offered`: the trade's channel methods when the caller has them already."""
    requested = components if components is not None else [(method, None)]
    if offered is None:
        offered = methods.channel_methods(p, trade["merchant_id"], trade["currency"], trade["amount"])
    offered_names = {m.method for m in offered}
    for name, _ in requested:
        if name not in offered_names and kind_of_product(name) is not None:
            # A method the platform speaks, but not for this trade (no active account, off, above its cap).
            raise MethodNotAvailable(f"payment method {name!r} is not available for this trade")
    parts = compose(trade["amount"], requested, offered_names)
    if any(x.internal for x in parts):
        if not trade["member_id"] or trade["purpose"] != "sale":
            raise MethodNotAvailable("this trade names no member: only channel methods can pay it")
        with p.db.read() as conn:
            cap_pct = conn.execute(select(merchants.c.coins_cap_pct).where(
                merchants.c.merchant_id == trade["merchant_id"])).scalar_one()
        check_coins_cap(parts, trade["amount"], cap_pct)
    return parts


TRADE_PASSWORD_TRIES_MAX = 3  # fewer than lock the member's password (passwords.WRONG_TRIES_MAX)


def check_password(p: Platform, trade, password: str | None) -> None:
    """The member's payment password, given on this trade's cashier. Whoever holds the pay_url may
    give a wrong one at most `TRADE_PASSWORD_TRIES_MAX` times for this trade; past that the trade
    takes no more tries (423) and the member's own count is left alone, so a link cannot lock the
    member's password."""
    if not isinstance(password, str) or not password:
        raise InvalidRequest("payment_password is required to spend the member's money")
    t = trades.c
    # Take one of the trade's tries first (a conditional UPDATE: concurrent guesses cannot exceed
    # the limit), and give it back when the password was right.
    taken = p.db.write(lambda conn: conn.execute(update(trades).where(
        t.trade_no == trade["trade_no"], t.password_failures < TRADE_PASSWORD_TRIES_MAX).values(
        password_failures=t.password_failures + 1)).rowcount)
    if taken != 1:
        raise PaymentPasswordLocked("too many wrong payment passwords on this payment page")
    try:
        verify_payment_password(p, trade["member_id"], password, p.clock.now())
    except InvalidPaymentPassword:
        raise
    except Exception:
        _give_back_try(p, trade["trade_no"])
        raise
    _give_back_try(p, trade["trade_no"])


def _give_back_try(p: Platform, trade_no: str) -> None:
    p.db.write(lambda conn: conn.execute(update(trades).where(
        trades.c.trade_no == trade_no, trades.c.password_failures > 0).values(
        password_failures=trades.c.password_failures - 1)))


def pay_internal_only(p: Platform, trade_no: str, parts: list[Part]) -> dict:
    """Spend every part at once and mark the trade paid, in one transaction."""
    now = p.clock.now()

    def tx(conn: Connection) -> dict:
        t = lock_trade(conn, trade_no)
        _payable(t, now)
        try:
            for part in parts:
                own_methods.pay_directly(conn, trade_no=trade_no, method=part.method, member_id=t["member_id"],
                                         merchant_id=t["merchant_id"], currency=t["currency"], amount=part.amount,
                                         at=now)
        except InsufficientFunds:
            raise InsufficientBalance("not enough available balance, coins or credit") from None
        # orders -> their sellers' pending settlement; what the event shows of them, when known without a read
        cleared = settlement_clearing.on_trade_paid(conn, p, t, now)
        for part in parts:
            conn.execute(insert(trade_components).values(
                trade_no=trade_no, method=part.method, kind="internal", amount=part.amount, refunded_amount=0,
                status=PAID, payment_no=None, hold_id=None, member_id=t["member_id"], created_at=now,
                updated_at=now, attempt="direct"))
        new_status = TRADE_STATES.next(t["status"], "pay")
        conn.execute(update(trades).where(trades.c.trade_no == trade_no, trades.c.status == t["status"]).values(
            status=new_status, paid_at=now, updated_at=now))
        paid = dict(t, status=new_status, paid_at=now, updated_at=now)
        tell_merchant(conn, p, paid, "trade.succeeded", now, orders=cleared)
        return {"status": "succeeded", "trade_no": trade_no}

    return p.db.write(tx)


def _payable(t, now: datetime) -> None:
    if t["status"] != trade_states.PENDING:
        raise TradeNotPayable(f"the trade is {t['status']}")
    if t["expires_at"] <= now:
        raise TradeNotPayable("the trade has expired")


def hold_for_channel(conn: Connection, t, parts: list[Part], attempt: str, now: datetime) -> int:
    """Inside the transaction that opens the channel attempt: hold the internal parts, record the
    components, and return what the channel must collect."""
    held = conn.execute(select(trade_components).where(
        trade_components.c.trade_no == t["trade_no"], trade_components.c.status.in_((HELD, PENDING)))).mappings().all()
    wanted = {(x.method, x.amount) for x in parts}
    if held:
        if {(c["method"], c["amount"]) for c in held} != wanted:
            raise TradeNotPayable("another payment of this trade is in progress")
        return sum(x.amount for x in parts if not x.internal)
    for part in parts:
        hold_id = None
        if part.internal:
            try:
                hold_id = own_methods.hold(conn, trade_no=t["trade_no"], method=part.method, attempt=attempt,
                                           member_id=t["member_id"], merchant_id=t["merchant_id"],
                                           currency=t["currency"], amount=part.amount, at=now)
            except InsufficientFunds:
                raise InsufficientBalance("not enough available balance, coins or credit") from None
        conn.execute(insert(trade_components).values(
            trade_no=t["trade_no"], attempt=attempt, method=part.method,
            kind="internal" if part.internal else "channel",
            amount=part.amount, refunded_amount=0, status=HELD if part.internal else PENDING, payment_no=None,
            hold_id=hold_id, member_id=t["member_id"], created_at=now, updated_at=now))
    return sum(x.amount for x in parts if not x.internal)


def check_same_composition(conn: Connection, t, attempt: str, parts: list[Part] | None) -> None:
    """A repeated pay request may reuse the open attempt only if it asks for the same split."""
    rows = conn.execute(select(trade_components.c.method, trade_components.c.amount).where(
        trade_components.c.trade_no == t["trade_no"], trade_components.c.attempt == attempt,
        trade_components.c.status.in_((HELD, PENDING)))).all()
    internal_held = {(m, a) for m, a in rows if m in own_methods.MEMBER_ACCOUNT}
    internal_wanted = {(x.method, x.amount) for x in parts or () if x.internal}
    if internal_held != internal_wanted:
        raise TradeNotPayable("another payment of this trade is in progress")


def trade_components_of(conn: Connection, trade_no: str) -> list:
    """Every funding part of the trade, whatever its state: read once, with the trade locked, by
    the transaction that records a channel's success (`held_of`, `spend_held` work from it)."""
    return conn.execute(select(trade_components).where(trade_components.c.trade_no == trade_no)).mappings().all()


def held_of(components: list, attempt: str) -> list:
    """The internal parts held for this channel attempt (what they add to it: their amounts' sum)."""
    return [c for c in components if c["attempt"] == attempt and c["status"] == HELD]


def spend_held(conn: Connection, trade_no: str, held: list, now: datetime) -> None:
    """The channel part succeeded: post every internal part held for this attempt (`held_of`)."""
    for c in held:
        own_methods.spend(conn, c["hold_id"], trade_no=trade_no, at=now)
        conn.execute(update(trade_components).where(
            trade_components.c.trade_no == trade_no, trade_components.c.attempt == c["attempt"],
            trade_components.c.method == c["method"], trade_components.c.status == HELD).values(
            status=PAID, updated_at=now))


def release_attempt(conn: Connection, trade_no: str, attempt: str, now: datetime) -> int:
    """One channel attempt failed or closed: its held parts go back. Returns how many rows."""
    return release_held(conn, trade_no, now, attempt=attempt)


def release_held(conn: Connection, trade_no: str, now: datetime, *, attempt: str | None = None) -> int:
    """The channel part failed or the trade closed: give the held parts back. Returns how many."""
    q = select(trade_components).where(trade_components.c.trade_no == trade_no,
                                       trade_components.c.status.in_((HELD, PENDING)))
    if attempt is not None:
        q = q.where(trade_components.c.attempt == attempt)
    rows = conn.execute(q).mappings().all()
    for c in rows:
        if c["hold_id"]:
            own_methods.release(conn, c["hold_id"], at=now)
        conn.execute(update(trade_components).where(
            trade_components.c.trade_no == trade_no, trade_components.c.attempt == c["attempt"],
            trade_components.c.method == c["method"], trade_components.c.status == c["status"]).values(
            status=RELEASED, updated_at=now))
    return len(rows)
