"""Payment records (支付單) and what channels tell us about them.

Every channel answer, whether it came by notification, by active query or in reply to a close,
goes through `apply_channel_result`, which is idempotent: a duplicated or late answer finds the
record already final and changes nothing. Amounts and currencies are checked against our own
record; a disagreement changes nothing and raises an alert.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson
import structlog
from prometheus_client import Counter
from sqlalchemy import Connection, bindparam, select, update

from piaohao import clearing as settlement_clearing
from piaohao.alerts import CRITICAL, raise_alert
from piaohao.books import collect
from piaohao.channels.spi import CreatePayment, NextAction, NextActionType, Outcome, PaymentResult
from piaohao.clearing import orders as clearing_orders
from piaohao.db.schema import payments, trade_components, trades
from piaohao.domain import payments as pay_states
from piaohao.domain import trades as trade_states
from piaohao.domain.payments import PAYMENT_STATES
from piaohao.domain.trades import TRADE_STATES
from piaohao.kernel.errors import (
    ChannelUnavailable,
    InvalidRequest,
    PaymentDeclined,
    TradeNotFound,
    TradeNotPayable,
)
from piaohao.kernel.ids import new_id
from piaohao.kernel.invariants import require
from piaohao.platform import Platform
from piaohao.services import funding, methods, strays, topups
from piaohao.services.channel_accounts import read_active_accounts
from piaohao.services.trade_events import tell_merchant
from piaohao.services.trade_store import lock_trade

log = structlog.get_logger(__name__)
PAYMENT_RESULTS = Counter("piaohao_payment_results_total", "Channel answers applied, by source and effect",
                          ["source", "effect"])



# Statements of the payment path, built once: the row or the changed columns go as parameters
# (an UPDATE without .values() sets the columns named by the parameters; the WHERE clause's own
# parameters are named k_*). Building them per call, with .values(**row) and literal WHERE
# values, cost SQLAlchemy ≈ 25 µs of coercions and cache key per value, ≈ 4 ms per payment
# (docs/speed.md, "Statements built once").
_INSERT_PAYMENT = payments.insert()
_INSERT_COMPONENT = trade_components.insert()
_ACCEPTED = update(payments).where(payments.c.payment_no == bindparam("k_payment_no"),
                                   payments.c.status.in_(PAYMENT_STATES.sources("channel_accepted")))
_TRADE_PAID = update(trades).where(trades.c.trade_no == bindparam("k_trade_no"),
                                   trades.c.status == trade_states.PENDING)
_COMPONENT_PAID = update(trade_components).where(trade_components.c.trade_no == bindparam("k_trade_no"),
                                                 trade_components.c.attempt == bindparam("k_attempt"),
                                                 trade_components.c.method == bindparam("k_method"))


@functools.cache
def _succeed_statement(with_currency: bool, with_carrier: bool):
    """`_succeed_as_stated`'s UPDATE ... RETURNING, one per combination of the optional checks."""
    c = payments.c
    q = update(payments).where(c.payment_no == bindparam("k_payment_no"),
                               c.status.in_(PAYMENT_STATES.sources("succeed")), c.amount == bindparam("k_amount"))
    if with_currency:
        q = q.where(c.currency == bindparam("k_currency"))
    if with_carrier:
        q = q.where(c.channel == bindparam("k_channel"))
    return q.returning(*c)


def find_trade_with_accounts(p: Platform, cashier_token: str) -> tuple:
    """The trade behind a payment page and its merchant's active channel accounts, in one read:
    what a cashier request decides its methods from, read once per request (never per question)."""
    with p.db.read() as conn:
        trade = _trade_by_token(conn, cashier_token)
        return trade, read_active_accounts(conn, trade["merchant_id"])


def _trade_by_token(conn: Connection, cashier_token: str):
    row = conn.execute(select(trades).where(trades.c.cashier_token == cashier_token)).mappings().first()
    if row is None:
        raise TradeNotFound("no such payment page")
    return row


def _answer(action: NextAction, payment_no: str) -> dict:
    out = {"next_action": action.as_dict(), "payment_no": payment_no}
    if action.type == NextActionType.REDIRECT:
        out["redirect_url"] = action.url  # the first part's field, kept for redirects
    return out


def _stored_action(payment) -> NextAction | None:
    if payment["next_action"]:
        data = orjson.loads(payment["next_action"])
        return NextAction(NextActionType(data["type"]), url=data.get("url"), code_url=data.get("code_url"),
                          params=data.get("params"))
    if payment["redirect_url"]:
        return NextAction(NextActionType.REDIRECT, url=payment["redirect_url"])
    return None


def start_payment(p: Platform, cashier_token: str, method: str, parts: list | None = None, *,
                  openid: str | None = None, client_ip: str | None = None, bank: str | None = None,
                  card_token: str | None = None, mandate_no: str | None = None,
                  read: tuple | None = None) -> dict:
    """The buyer chose a channel method (with `parts`: alongside held internal parts): open (or
    reuse) a payment record and start it at the channel account that carries the method.
    `read`: the caller's `find_trade_with_accounts(p, cashier_token)`, not read again.

    Answers {"next_action": ..., "payment_no": ...} (a redirect also as "redirect_url"), or
    {"status": "succeeded"} when the channel reports it already paid. A bound-card product (quick
    pay, `card_token`) has no next action: {"status": "succeeded" | "processing"}, and a refusal is
    PAYMENT_DECLINED. An online-banking product needs one of its `banks`.
    """
    trade, accounts = read or find_trade_with_accounts(p, cashier_token)
    internal = [x for x in parts or () if x.internal]
    channel_amount = trade["amount"] - sum(x.amount for x in internal)
    chosen = methods.resolve(p, trade["merchant_id"], trade["currency"], method, channel_amount, accounts=accounts)
    if chosen.product.needs_openid and not openid:
        raise InvalidRequest(f"{method} needs the payer's openid")
    if chosen.product.banks and bank not in chosen.product.banks:
        raise InvalidRequest(f"{method} needs a bank: one of {', '.join(chosen.product.banks)}")
    if chosen.product.card and not card_token:
        raise InvalidRequest(f"{method} needs a bound card (card_id)")
    if chosen.product.mandate and not mandate_no:
        raise InvalidRequest(f"{method} is a debit under an agreement, not a buyer's choice")
    no_buyer = chosen.product.card or chosen.product.mandate  # no page: the channel answers at once
    channel = p.channel(chosen.channel_key)
    now = p.clock.now()

    def open_attempt(conn: Connection):
        t = lock_trade(conn, trade["trade_no"])
        if t["status"] != trade_states.PENDING:
            raise TradeNotPayable(f"the trade is {t['status']}")
        if t["expires_at"] <= now:
            raise TradeNotPayable("the trade has expired")
        # The trade's attempts, read once (the trade is locked): an open one with this method is
        # reused, else the next attempt is numbered after all of them.
        tried = conn.execute(select(payments).where(payments.c.trade_no == t["trade_no"])).mappings().all()
        existing = next((x for x in tried if x["method"] == method and x["status"] in pay_states.OPEN_STATES), None)
        if existing is not None:
            funding.check_same_composition(conn, t, existing["operation"], parts)
            return dict(existing)
        operation = f"{method}#{len(tried) + 1}"
        amount = t["amount"]
        if internal:
            amount = funding.hold_for_channel(conn, t, parts, operation, now)
        row = {
            "payment_no": new_id("pay"), "trade_no": t["trade_no"], "merchant_id": t["merchant_id"],
            "operation": operation, "method": method, "channel": chosen.channel_key, "amount": amount,
            "currency": t["currency"], "status": pay_states.CREATED, "channel_txn_no": None, "redirect_url": None,
            "next_action": None,
            "query_attempts": 0, "last_error": None,
            # Even if the create call below is lost, the active query will find out what happened.
            "next_query_at": now + timedelta(seconds=p.settings.active_query_after_s),
            "paid_at": None, "finished_at": None, "created_at": now, "updated_at": now,
        }
        conn.execute(_INSERT_PAYMENT, row)
        return row

    payment = p.db.write(open_attempt)
    stored = _stored_action(payment)
    if payment["status"] == pay_states.PROCESSING and stored is not None:
        return _answer(stored, payment["payment_no"])
    if payment["status"] == pay_states.PROCESSING and no_buyer:
        return {"status": "processing", "payment_no": payment["payment_no"]}
    result = channel.create_payment(CreatePayment(
        payment_no=payment["payment_no"], amount=payment["amount"], currency=payment["currency"],
        subject=trade["subject"], expires_at=trade["expires_at"],
        notify_url=p.channel_notify_url(chosen.channel_key),
        # The buyer comes back to our result page, which waits for the channel's notification or
        # query (a return proves nothing) and only then sends the buyer on to the merchant's return_url.
        return_url=p.pay_url(cashier_token) + "/result", product=method,
        openid=openid, client_ip=client_ip, bank=bank, card_token=card_token, mandate_no=mandate_no))
    action = result.next_action or (NextAction(NextActionType.REDIRECT, url=result.redirect_url)
                                    if result.redirect_url else None)
    if result.outcome == Outcome.PENDING and action is not None:
        def accepted(conn: Connection):
            conn.execute(_ACCEPTED, {
                "k_payment_no": payment["payment_no"], "status": pay_states.PROCESSING,
                "redirect_url": action.url if action.type == NextActionType.REDIRECT else None,
                "next_action": orjson.dumps(action.as_dict()).decode(),
                "channel_txn_no": result.channel_txn_no, "updated_at": p.clock.now()})
        p.db.write(accepted)
        return _answer(action, payment["payment_no"])
    if result.outcome == Outcome.PENDING and no_buyer:
        # The bank took the card payment and will settle it later: notification or active query.
        p.db.write(lambda conn: conn.execute(update(payments).where(
            payments.c.payment_no == payment["payment_no"],
            payments.c.status.in_(PAYMENT_STATES.sources("channel_accepted"))).values(
            status=pay_states.PROCESSING, channel_txn_no=result.channel_txn_no, updated_at=p.clock.now())))
        return {"status": "processing", "payment_no": payment["payment_no"]}
    if result.outcome == Outcome.SUCCEEDED:
        apply_channel_result(p, payment["payment_no"], result, source="create")
        return {"status": "succeeded", "payment_no": payment["payment_no"]}
    if result.outcome in (Outcome.FAILED, Outcome.CLOSED):
        apply_channel_result(p, payment["payment_no"], result, source="create")
        if no_buyer:  # the bank refused the card or the debit; any held parts went back with the attempt
            raise PaymentDeclined(f"the channel declined the payment: {result.error or result.outcome}")
        raise TradeNotPayable(f"the channel refused the payment: {result.error or result.outcome}")
    log.warning("payment.create_unknown", payment_no=payment["payment_no"], error=result.error)
    raise ChannelUnavailable("the payment channel did not answer; try again")


WRONG_ACCOUNT = "wrong_account"


def apply_channel_result(p: Platform, payment_no: str, result: PaymentResult, *, source: str,
                         carrier: str | None = None, also: Callable[[Connection, str], None] | None = None) -> str:
    """Apply one channel answer about a payment. Returns what it did (for logs, tests and metrics).

    `carrier`: the channel account the answer came through; an answer about a payment another
    account carried changes nothing and raises an alert (WRONG_ACCOUNT). `also(conn, effect)`:
    the caller's own record of the answer, written in the same transaction (one commit, not two).
    """
    def tx(conn: Connection) -> str:
        effect = _apply(conn, p, payment_no, result, source, carrier)
        if also is not None:
            also(conn, effect)
        return effect

    effect = p.db.write(tx)
    if effect == WRONG_ACCOUNT:
        return effect
    PAYMENT_RESULTS.labels(source, effect).inc()
    log.info("payment.channel_result", payment_no=payment_no, source=source, outcome=str(result.outcome),
             effect=effect)
    return effect


def _apply(conn: Connection, p: Platform, payment_no: str, result: PaymentResult, source: str,
           carrier: str | None = None) -> str:
    now = p.clock.now()
    if result.outcome == Outcome.SUCCEEDED:
        succeeded = _succeed_as_stated(conn, payment_no, result, carrier, now)
        if succeeded is not None:
            return _paid(conn, p, succeeded, source, now, result.paid_at or now)
    pay = conn.execute(select(payments).where(payments.c.payment_no == payment_no).with_for_update()
                       ).mappings().first()
    if pay is None:
        raise_alert(conn, now=now, kind="unknown_payment", subject_type="payment", subject_id=payment_no,
                    message=f"channel reported {result.outcome} for a payment we do not know",
                    details={"source": source})
        return "unknown_payment"
    if carrier is not None and pay["channel"] != carrier:
        # Signed by one account's channel but about a record another account carried: never apply it.
        raise_alert(conn, now=now, kind="notification_wrong_account", subject_type="payment", subject_id=payment_no,
                    message=f"a verified notification at {carrier} names a record carried by {pay['channel']}: "
                            "ignored")
        return WRONG_ACCOUNT
    if result.outcome == Outcome.SUCCEEDED:
        return _apply_success(conn, p, pay, result, source, now)
    if result.outcome in (Outcome.FAILED, Outcome.CLOSED):
        event = "fail" if result.outcome == Outcome.FAILED else "close"
        if not PAYMENT_STATES.allows(pay["status"], event):
            return "ignored"  # late news about a record that is already final
        conn.execute(select(trades.c.trade_no).where(trades.c.trade_no == pay["trade_no"]).with_for_update())
        conn.execute(update(payments).where(payments.c.payment_no == payment_no,
                                            payments.c.status == pay["status"]).values(
            status=PAYMENT_STATES.next(pay["status"], event), finished_at=now, updated_at=now,
            last_error=(result.error or "")[:500] or None))
        # The combination fails as a whole: the parts held for this attempt go back to the member.
        funding.release_attempt(conn, pay["trade_no"], pay["operation"], now)
        return str(result.outcome)
    return "ignored"


def _succeed_as_stated(conn: Connection, payment_no: str, result: PaymentResult, carrier: str | None,
                       now: datetime):
    """The usual success in one statement: the record, if it can succeed (not yet succeeded), is for
    the stated amount and currency and was carried by `carrier`, is marked succeeded (locked, as the
    read in `_apply` would lock it) and returned, changed. None: nothing was changed, and `_apply`
    decides as it always did (unknown, wrong account, mismatch, duplicate), from the record as read."""
    params = {"k_payment_no": payment_no, "k_amount": result.amount, "status": pay_states.SUCCEEDED,
              "paid_at": result.paid_at or now, "finished_at": now, "next_query_at": None, "updated_at": now}
    if result.currency:
        params["k_currency"] = result.currency
    if carrier is not None:
        params["k_channel"] = carrier
    if result.channel_txn_no:  # else the record keeps the one it has
        params["channel_txn_no"] = result.channel_txn_no
    stmt = _succeed_statement(bool(result.currency), carrier is not None)
    return conn.execute(stmt, params).mappings().first()


def _apply_success(conn: Connection, p: Platform, pay, result: PaymentResult, source: str, now: datetime) -> str:
    # The amount and currency are compared on every answer, whatever the record's state: a duplicate
    # that states another amount is no duplicate, and a human must look at it.
    if result.amount != pay["amount"] or (result.currency or pay["currency"]) != pay["currency"]:
        final = pay["status"] not in pay_states.OPEN_STATES
        raise_alert(conn, now=now, kind="amount_mismatch", severity=CRITICAL, subject_type="payment",
                    subject_id=pay["payment_no"],
                    message=(f"channel says {result.amount} {result.currency} was paid, our record says "
                             f"{pay['amount']} {pay['currency']} (payment {pay['status']}); nothing changed"
                             + ("" if final else ", querying the channel")),
                    details={"source": source, "channel_txn_no": result.channel_txn_no, "status": pay["status"]})
        if source != "query" and not final:  # the channel's own record is the truth: go and ask it
            conn.execute(update(payments).where(payments.c.payment_no == pay["payment_no"]).values(
                next_query_at=now, updated_at=now))
        return "mismatch"
    if pay["status"] == pay_states.SUCCEEDED:
        return "duplicate"
    paid_at = result.paid_at or now
    conn.execute(update(payments).where(payments.c.payment_no == pay["payment_no"],
                                        payments.c.status == pay["status"]).values(
        status=PAYMENT_STATES.next(pay["status"], "succeed"), channel_txn_no=result.channel_txn_no or
        pay["channel_txn_no"], paid_at=paid_at, finished_at=now, next_query_at=None, updated_at=now))
    return _paid(conn, p, pay, source, now, paid_at)


# Trades with another purpose than "sale" (top-ups, ...) post their own entries and events when
# paid: purpose -> handler(conn, platform, paid_trade, payment, channel_clearing_account, now).


def _paid(conn: Connection, p: Platform, pay, source: str, now: datetime, paid_at: datetime) -> str:
    """The payment `pay` was just marked succeeded (its columns other than its state's as they were):
    the trade is paid by it, or, if the trade cannot take it, the money goes to suspense."""
    # The trade, locked, with what clearing would read next (see `clearing.orders.paid_facts_columns`).
    trade, facts = clearing_orders.paid_facts(conn.execute(
        select(trades, *clearing_orders.paid_facts_columns(trades.c.trade_no, trades.c.merchant_id))
        .where(trades.c.trade_no == pay["trade_no"]).with_for_update()).mappings().one())
    components = funding.trade_components_of(conn, trade["trade_no"])  # read once, the trade locked
    held = funding.held_of(components, pay["operation"])
    covers = pay["amount"] + sum(c["amount"] for c in held) == trade["amount"]
    if trade["status"] != trade_states.PENDING or not covers:
        # The channel holds the buyer's money; it belongs to nobody's sale: park it in suspense.
        collect.to_suspense(conn, payment_no=pay["payment_no"], channel=pay["channel"], currency=pay["currency"],
                            amount=pay["amount"], at=now)
        strays.on_stray_payment(conn, p, trade, pay, now)
        # Paid after close/expiry, or a second payment for a paid trade: the buyer's money is real and
        # must go back to them. Never counted as the merchant's sale.
        kind = ("paid_after_close" if trade["status"] == trade_states.CLOSED else
                "duplicate_payment" if trade["status"] != trade_states.PENDING else "partial_payment")
        raise_alert(conn, now=now, kind=kind, subject_type="payment", subject_id=pay["payment_no"],
                    message=f"payment {pay['payment_no']} succeeded but trade {trade['trade_no']} is "
                            f"{trade['status']}: the buyer must be refunded",
                    details={"trade_no": trade["trade_no"], "amount": pay["amount"], "source": source})
        return kind
    funding.spend_held(conn, trade["trade_no"], held, now)
    record_channel_component(conn, trade, pay, now, has_row=any(
        c["attempt"] == pay["operation"] and c["method"] == pay["method"] for c in components))
    new_status = TRADE_STATES.next(trade["status"], "pay")
    conn.execute(_TRADE_PAID, {"k_trade_no": trade["trade_no"], "status": new_status, "paid_at": paid_at,
                               "paid_payment_no": pay["payment_no"], "updated_at": now})
    paid = dict(trade, status=new_status, paid_at=paid_at, paid_payment_no=pay["payment_no"], updated_at=now)
    handler = PAID_HANDLERS.get(trade["purpose"])
    require(handler is not None, f"trade {trade['trade_no']} has purpose {trade['purpose']!r}, which nothing pays")
    # Paid by the channel alone (the trade had no parts before): its one part is the row just
    # written, so the merchant's event need not read the parts back.
    now_components = None if components else [{"method": pay["method"], "amount": pay["amount"],
                                                "refunded_amount": 0}]
    handler(conn, p, paid, pay, now, components=now_components, facts=facts)
    return "succeeded"


def _sale_paid(conn: Connection, p: Platform, paid, pay, now: datetime, *, components: list | None = None,
               facts: clearing_orders.PaidFacts | None = None) -> None:
    """A sale was paid: the money is the merchant's (its orders' sellers' after clearing); tell it."""
    collect.to_merchant(conn, payment_no=pay["payment_no"], channel=pay["channel"], merchant_id=paid["merchant_id"],
                        currency=pay["currency"], amount=pay["amount"], trade_no=paid["trade_no"], at=now)
    # orders -> their sellers' pending settlement; what the event shows of them, when known without a read
    cleared = settlement_clearing.on_trade_paid(conn, p, paid, now, facts=facts)
    tell_merchant(conn, p, paid, "trade.succeeded", now, components=components, orders=cleared)


# purpose -> handler(conn, platform, paid_trade, payment, now, components=..., facts=...), in the
# transaction that records the channel's success (`components`: the trade's parts when known
# without a read, else None; `facts`: what clearing needs, read with the trade's lock). A purpose
# missing here is refused (the transaction rolls back), never a sale.
PAID_HANDLERS: dict[str, Callable] = {
    "sale": _sale_paid,
    topups.PURPOSE: topups.on_paid,
}


def record_channel_component(conn: Connection, trade, pay, now: datetime, *, has_row: bool) -> None:
    """The channel part of a paid trade. A trade paid by the channel alone gets its one row here;
    a combination wrote its row when the buyer chose it (`has_row`) and it becomes paid now."""
    if has_row:
        conn.execute(_COMPONENT_PAID, {"k_trade_no": trade["trade_no"], "k_attempt": pay["operation"],
                                       "k_method": pay["method"], "status": "paid", "payment_no": pay["payment_no"],
                                       "updated_at": now})
    else:
        conn.execute(_INSERT_COMPONENT, dict(
            trade_no=trade["trade_no"], attempt=pay["operation"], method=pay["method"], kind="channel",
            amount=pay["amount"],
            refunded_amount=0, status="paid", payment_no=pay["payment_no"], hold_id=None,
            member_id=trade["member_id"], created_at=now, updated_at=now))


def schedule_query_now(p: Platform, payment_no: str) -> None:
    """A hint (e.g. an unverifiable notification) that a payment may have changed: ask the channel soon."""
    now = p.clock.now()
    p.db.write(lambda conn: conn.execute(update(payments).where(
        payments.c.payment_no == payment_no, payments.c.status.in_(pay_states.OPEN_STATES)).values(
        next_query_at=now)))


def next_query_delay_s(p: Platform, query_attempts: int) -> float:
    """Growing intervals: after_s, 2x, 4x, ... capped at active_query_interval_max_s."""
    base = max(p.settings.active_query_after_s, 0.05)
    return min(base * 2 ** min(query_attempts, 20), max(base, p.settings.active_query_interval_max_s))


def query_due_payments(p: Platform, limit: int = 50) -> int:
    """Active query: ask the channel about payments it has not told us about in time."""
    now = p.clock.now()
    with p.db.read() as conn:
        due = conn.execute(select(payments.c.payment_no, payments.c.channel, payments.c.query_attempts).where(
            payments.c.status.in_(pay_states.OPEN_STATES), payments.c.next_query_at.is_not(None),
            payments.c.next_query_at <= now).order_by(payments.c.next_query_at).limit(limit)).all()
    for payment_no, channel_name, attempts in due:
        # Claim: push next_query_at forward first so a second worker does not ask the same question.
        delay = next_query_delay_s(p, attempts)
        claimed = p.db.write(lambda conn, pn=payment_no, a=attempts, d=delay: conn.execute(update(payments).where(
            payments.c.payment_no == pn, payments.c.query_attempts == a,
            payments.c.status.in_(pay_states.OPEN_STATES)).values(
            query_attempts=a + 1, next_query_at=now + timedelta(seconds=d))).rowcount)
        if not claimed:
            continue
        result = p.channel(channel_name).query_payment(payment_no)
        if result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CLOSED):
            apply_channel_result(p, payment_no, result, source="query")
        else:
            log.info("payment.query_inconclusive", payment_no=payment_no, outcome=str(result.outcome),
                     error=result.error, next_in_s=delay)
    return len(due)
