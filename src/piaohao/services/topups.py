"""Top-ups (充): a member pays money in through a channel; it lands on the member's balance.

A top-up owns an internal trade (purpose "topup", out_trade_no "topup:<topup_no>"), created in
the same transaction, so the member pays on the ordinary cashier (`pay_url`) and the payment
pipeline (notifications, active query, expiry) works unchanged. What happens when that trade is
paid or closes is decided here, through the handlers registered below, inside the very
transaction that records the channel's answer:
- paid:   debit channel clearing, credit the member's balance; top-up `succeeded`; `topup.succeeded`.
- closed: (expired or closed unpaid) top-up `failed`; `topup.failed`. Money paid after that is a
          stray payment (platform suspense, alert), as for any trade.

The internal trade carries no `member_id`: the cashier offers a member's own methods (balance,
coins, credit) for trades that name one, and a top-up must be paid with a channel method only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, select, update

from piaohao.alerts import raise_alert
from piaohao.books import collect, topup
from piaohao.db.inserts import Raced, insert_once
from piaohao.db.schema import trades
from piaohao.db.schema_members import topups
from piaohao.domain.business import PENDING, TOPUP_STATES
from piaohao.kernel.clock import rfc3339, to_utc
from piaohao.kernel.errors import IdempotencyConflict, InvalidRequest, TopupNotFound
from piaohao.kernel.ids import new_id
from piaohao.kernel.outbound import check_urls
from piaohao.platform import Platform
from piaohao.services import notifications, trade_store
from piaohao.services.members import check_amount, fingerprint, load_member

log = structlog.get_logger(__name__)
PURPOSE = "topup"


@dataclass(frozen=True)
class NewTopup:
    out_request_no: str
    member_id: str
    amount: int
    currency: str = "CNY"
    notify_url: str | None = None
    return_url: str | None = None
    expires_at: datetime | None = None  # when the member can no longer pay (default: trades' default)

    def fingerprint(self) -> str:
        return fingerprint(member_id=self.member_id, amount=self.amount, currency=self.currency,
                           notify_url=self.notify_url, return_url=self.return_url,
                           expires_at=to_utc(self.expires_at).isoformat() if self.expires_at else None)


def topup_view(p: Platform, t, trade) -> dict:
    """The top-up object; `trade` is its internal trade (for `pay_url` and `expires_at`)."""
    tz = p.settings.tz
    return {
        "topup_no": t["topup_no"], "out_request_no": t["out_request_no"], "member_id": t["member_id"],
        "amount": t["amount"], "currency": t["currency"], "status": t["status"],
        "pay_url": p.pay_url(trade["cashier_token"]), "notify_url": t["notify_url"],
        "expires_at": rfc3339(trade["expires_at"], tz), "created_at": rfc3339(t["created_at"], tz),
        "finished_at": rfc3339(t["finished_at"], tz),
    }


def _select():
    return select(topups, trades.c.cashier_token, trades.c.expires_at).join(
        trades, trades.c.trade_no == topups.c.trade_no)


def create_topup(p: Platform, merchant_id: str, app_id: str, req: NewTopup) -> tuple[dict, bool]:
    """Returns (top-up view, created). Idempotent on (merchant, out_request_no) like refunds."""
    check_urls(allow_private=p.settings.outbound_private_allowed, notify_url=req.notify_url, return_url=req.return_url)
    check_amount(req.amount)
    digest = req.fingerprint()

    def find(conn: Connection):
        return conn.execute(_select().where(topups.c.merchant_id == merchant_id,
                                            topups.c.out_request_no == req.out_request_no)).mappings().first()

    def replay(existing) -> dict:
        if existing["request_hash"] != digest:
            raise IdempotencyConflict(f"out_request_no {req.out_request_no} was already used for another top-up")
        return topup_view(p, existing, existing)

    with p.db.read() as conn:
        existing = find(conn)
    if existing is not None:
        return replay(existing), False
    now = p.clock.now()
    longest = now + timedelta(seconds=p.settings.trade_timeout_max_s)
    expires_at = min(req.expires_at, longest) if req.expires_at is not None else None
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("expires_at is in the past")

    def tx(conn: Connection) -> dict:
        member = load_member(conn, merchant_id, req.member_id)
        if req.currency != member["currency"]:
            raise InvalidRequest(f"the member's currency is {member['currency']}")
        topup_no = new_id("tu")
        trade = trade_store.create_internal_trade(
            conn, p, merchant_id=merchant_id, app_id=app_id, purpose=PURPOSE, out_trade_no=f"topup:{topup_no}",
            amount=req.amount, currency=req.currency, subject=f"Top-up of member {member['out_member_id']}",
            expires_at=expires_at, return_url=req.return_url)
        row = {"topup_no": topup_no, "merchant_id": merchant_id, "app_id": app_id, "member_id": req.member_id,
               "out_request_no": req.out_request_no, "amount": req.amount, "currency": req.currency,
               "status": PENDING, "trade_no": trade["trade_no"], "notify_url": req.notify_url,
               "request_hash": digest, "created_at": now, "finished_at": None, "updated_at": now}
        insert_once(conn, topups, row, ["merchant_id", "out_request_no"])
        return topup_view(p, row, trade)

    try:
        view = p.db.write(tx)
    except Raced:
        with p.db.read() as conn:
            return replay(find(conn)), False
    log.info("topup.created", topup_no=view["topup_no"], member_id=req.member_id, amount=req.amount)
    return view, True


def get_topup(p: Platform, merchant_id: str, *, topup_no: str | None = None,
              out_request_no: str | None = None) -> dict:
    q = _select().where(topups.c.merchant_id == merchant_id)
    if topup_no is not None:
        q = q.where(topups.c.topup_no == topup_no)
    elif out_request_no is not None:
        q = q.where(topups.c.out_request_no == out_request_no)
    else:
        raise InvalidRequest("give topup_no or out_request_no")
    with p.db.read() as conn:
        row = conn.execute(q).mappings().first()
    if row is None:
        raise TopupNotFound("no such top-up")
    return topup_view(p, row, row)


# --- what the payment pipeline calls (inside its transaction) -------------------------------------

def _locked_topup(conn: Connection, trade_no: str):
    return conn.execute(select(topups).where(topups.c.trade_no == trade_no).with_for_update()).mappings().first()


def on_paid(conn: Connection, p: Platform, trade, pay, now: datetime, *, components: list | None = None,
            facts=None) -> None:
    """The top-up's trade was paid (PAID_HANDLERS["topup"]): credit the member's balance. (Its
    event shows the top-up, not the trade's `components`; no clearing, so no use for `facts`.)"""
    t = _locked_topup(conn, trade["trade_no"])
    if t is None or t["status"] != PENDING or pay["amount"] != t["amount"] or pay["currency"] != t["currency"]:
        # Cannot happen by construction; never lose the channel's money if it does: suspense + alert.
        collect.to_suspense(conn, payment_no=pay["payment_no"], channel=pay["channel"], currency=pay["currency"],
                            amount=pay["amount"], at=now, why="top-up payment without a payable top-up")
        raise_alert(conn, now=now, kind="topup_inconsistent", subject_type="payment", subject_id=pay["payment_no"],
                    message=f"payment {pay['payment_no']} paid trade {trade['trade_no']} but its top-up is "
                            f"{t['status'] if t else 'missing'}: the money is in suspense",
                    details={"trade_no": trade["trade_no"], "amount": pay["amount"]})
        return
    new_status = TOPUP_STATES.next(t["status"], "pay")
    conn.execute(update(topups).where(topups.c.topup_no == t["topup_no"],
                                      topups.c.status.in_(TOPUP_STATES.sources("pay")))
                 .values(status=new_status, finished_at=now, updated_at=now))
    topup.credit_member(conn, topup_no=t["topup_no"], payment_no=pay["payment_no"], channel=pay["channel"],
                        member_id=t["member_id"], currency=t["currency"], amount=t["amount"], at=now)
    done = dict(t, status=new_status, finished_at=now, updated_at=now)
    notifications.enqueue(conn, now=now, merchant_id=t["merchant_id"], app_id=t["app_id"], type="topup.succeeded",
                          subject_id=t["topup_no"], data=topup_view(p, done, trade),
                          notify_url=t["notify_url"], tz=p.settings.tz)
    log.info("topup.succeeded", topup_no=t["topup_no"], member_id=t["member_id"], amount=t["amount"])


def on_closed(conn: Connection, p: Platform, trade, now: datetime) -> None:
    """The top-up's trade closed unpaid (CLOSED_HANDLERS["topup"]): the top-up failed."""
    t = _locked_topup(conn, trade["trade_no"])
    if t is None or not TOPUP_STATES.allows(t["status"], "fail"):
        return
    new_status = TOPUP_STATES.next(t["status"], "fail")
    conn.execute(update(topups).where(topups.c.topup_no == t["topup_no"],
                                      topups.c.status.in_(TOPUP_STATES.sources("fail")))
                 .values(status=new_status, finished_at=now, updated_at=now))
    done = dict(t, status=new_status, finished_at=now, updated_at=now)
    notifications.enqueue(conn, now=now, merchant_id=t["merchant_id"], app_id=t["app_id"], type="topup.failed",
                          subject_id=t["topup_no"], data=topup_view(p, done, trade),
                          notify_url=t["notify_url"], tz=p.settings.tz)
    log.info("topup.failed", topup_no=t["topup_no"], reason=trade.get("close_reason"))


