"""What the operator console reads: searchable, paginated lists and a trade's whole story.

Read-only: nothing here changes a row (the console's actions call the use cases in
`services.operations`, `recon.findings` and `services.notifications`, as the CLI does). Lists are
bounded (`LIMIT_MAX` rows a page, `OFFSET_MAX` deep); bank and identity numbers leave here
masked, and no password hash, app secret or session hash is ever selected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Select, or_, select

from piaohao import ledger
from piaohao.alerts import OPEN
from piaohao.db.schema import outbox_events, payments, trade_components, trades
from piaohao.db.schema_clearing import settlement_batches, sub_merchants
from piaohao.db.schema_members import disbursements, members
from piaohao.db.schema_refunds import refunds
from piaohao.platform import Platform
from piaohao.recon import findings
from piaohao.services import notifications, operations

__all__ = ["LIMIT_DEFAULT", "LIMIT_MAX", "Page", "batches_page", "members_page", "payouts_page", "queue",
           "refunds_page", "sub_merchants_page", "trade_detail", "trades_page"]

LIMIT_DEFAULT, LIMIT_MAX = 50, 200
OFFSET_MAX = 100_000
QUEUE_ROWS_MAX = 200  # per section of the manual-handling queue
SEARCH_CHARS_MAX = 64


@dataclass
class Page:
    rows: list[dict]
    limit: int
    offset: int
    has_more: bool
    filters: dict = field(default_factory=dict)

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.has_more else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None


def clean(value: str | None) -> str:
    """A search box's value: trimmed and bounded (an over-long one matches nothing anyway)."""
    return (value or "").strip()[:SEARCH_CHARS_MAX]


def bounds(limit: int | None, offset: int | None) -> tuple[int, int]:
    return max(1, min(int(limit or LIMIT_DEFAULT), LIMIT_MAX)), max(0, min(int(offset or 0), OFFSET_MAX))


def _page(p: Platform, q: Select, limit: int | None, offset: int | None, filters: dict, shape=dict) -> Page:
    limit, offset = bounds(limit, offset)
    with p.db.read() as conn:
        rows = conn.execute(q.limit(limit + 1).offset(offset)).mappings().all()
    return Page([shape(r) for r in rows[:limit]], limit, offset, len(rows) > limit, filters)


_TRADE_LIST = (trades.c.trade_no, trades.c.merchant_id, trades.c.out_trade_no, trades.c.amount, trades.c.currency,
               trades.c.subject, trades.c.status, trades.c.purpose, trades.c.refunded_amount, trades.c.created_at,
               trades.c.paid_at)


def trades_page(p: Platform, *, q: str = "", merchant_id: str = "", status: str = "", limit: int | None = None,
                offset: int | None = None) -> Page:
    """Newest first; `q` is a trade_no or a merchant's out_trade_no (exact)."""
    q, merchant_id, status = clean(q), clean(merchant_id), clean(status)
    t = trades.c
    stmt = select(*_TRADE_LIST).order_by(t.created_at.desc(), t.trade_no.desc())
    if q:
        stmt = stmt.where(or_(t.trade_no == q, t.out_trade_no == q))
    if merchant_id:
        stmt = stmt.where(t.merchant_id == merchant_id)
    if status:
        stmt = stmt.where(t.status == status)
    return _page(p, stmt, limit, offset, {"q": q, "merchant_id": merchant_id, "status": status})


_TRADE_DETAIL = [c for c in trades.c if c.name not in ("request_hash", "cashier_token")]
_PAYMENT_COLUMNS = [c for c in payments.c if c.name not in ("next_action", "redirect_url")]
_EVENT_COLUMNS = [c for c in outbox_events.c if c.name != "payload"]


def trade_detail(p: Platform, trade_no: str) -> dict | None:
    """The trade with its funding components, payments, refunds, notifications and journal entries."""
    trade_no = clean(trade_no)
    with p.db.read() as conn:
        trade = conn.execute(select(*_TRADE_DETAIL).where(trades.c.trade_no == trade_no)).mappings().first()
        if trade is None:
            return None
        components = _all(conn, select(trade_components).where(trade_components.c.trade_no == trade_no)
                          .order_by(trade_components.c.created_at))
        pays = _all(conn, select(*_PAYMENT_COLUMNS).where(payments.c.trade_no == trade_no)
                    .order_by(payments.c.created_at))
        refs = _all(conn, select(refunds).where(refunds.c.trade_no == trade_no).order_by(refunds.c.created_at))
        subjects = [trade_no, *(r["refund_no"] for r in refs)]
        events = _all(conn, select(*_EVENT_COLUMNS).where(outbox_events.c.subject_id.in_(subjects))
                      .order_by(outbox_events.c.created_at))
        entries = ledger.entries_by_sources(conn, [*subjects, *(x["payment_no"] for x in pays)])
    return {"trade": dict(trade), "components": components, "payments": pays, "refunds": refs,
            "events": events, "entries": entries}


def _all(conn: Connection, stmt: Select) -> list[dict]:
    return [dict(r) for r in conn.execute(stmt.limit(LIMIT_MAX)).mappings()]


def refunds_page(p: Platform, *, q: str = "", merchant_id: str = "", status: str = "", parked: bool = False,
                 limit: int | None = None, offset: int | None = None) -> Page:
    """`q` is a refund_no, a trade_no or a merchant's out_request_no."""
    q, merchant_id, status = clean(q), clean(merchant_id), clean(status)
    r = refunds.c
    stmt = select(r.refund_no, r.trade_no, r.merchant_id, r.out_request_no, r.kind, r.amount, r.currency, r.status,
                  r.channel, r.attempts, r.channel_calls, r.last_error, r.parked_at, r.created_at
                  ).order_by(r.created_at.desc(), r.refund_no.desc())
    if q:
        stmt = stmt.where(or_(r.refund_no == q, r.trade_no == q, r.out_request_no == q))
    if merchant_id:
        stmt = stmt.where(r.merchant_id == merchant_id)
    if status:
        stmt = stmt.where(r.status == status)
    if parked:
        stmt = stmt.where(r.parked_at.is_not(None), r.status == "processing")
    return _page(p, stmt, limit, offset, {"q": q, "merchant_id": merchant_id, "status": status, "parked": parked})


def payouts_page(p: Platform, *, q: str = "", merchant_id: str = "", status: str = "", parked: bool = False,
                 limit: int | None = None, offset: int | None = None) -> Page:
    """Payouts and withdrawals (one table); `q` is the payout/withdrawal number or out_request_no."""
    q, merchant_id, status = clean(q), clean(merchant_id), clean(status)
    d = disbursements.c
    stmt = select(d.disbursement_no, d.kind, d.merchant_id, d.out_request_no, d.member_id, d.sub_merchant_id,
                  d.amount, d.currency, d.bank, d.account_number_masked.label("account_number"), d.account_name,
                  d.status, d.attempts,
                  d.last_error, d.parked_at, d.created_at).order_by(d.created_at.desc(), d.disbursement_no.desc())
    if q:
        stmt = stmt.where(or_(d.disbursement_no == q, d.out_request_no == q))
    if merchant_id:
        stmt = stmt.where(d.merchant_id == merchant_id)
    if status:
        stmt = stmt.where(d.status == status)
    if parked:
        stmt = stmt.where(d.parked_at.is_not(None), d.status == "processing")
    return _page(p, stmt, limit, offset, {"q": q, "merchant_id": merchant_id, "status": status, "parked": parked})


def members_page(p: Platform, *, q: str = "", merchant_id: str = "", limit: int | None = None,
                 offset: int | None = None) -> Page:
    """`q` is a member_id, a merchant's out_member_id or a name (exact)."""
    q, merchant_id = clean(q), clean(merchant_id)
    m = members.c
    stmt = select(m.member_id, m.merchant_id, m.out_member_id, m.name, m.currency, m.password_failures,
                  m.password_locked_until, m.created_at).order_by(m.created_at.desc(), m.member_id.desc())
    if q:
        stmt = stmt.where(or_(m.member_id == q, m.out_member_id == q, m.name == q))
    if merchant_id:
        stmt = stmt.where(m.merchant_id == merchant_id)
    return _page(p, stmt, limit, offset, {"q": q, "merchant_id": merchant_id})


def sub_merchants_page(p: Platform, *, q: str = "", merchant_id: str = "", status: str = "",
                       limit: int | None = None, offset: int | None = None) -> Page:
    q, merchant_id, status = clean(q), clean(merchant_id), clean(status)
    s = sub_merchants.c
    stmt = select(s.sub_merchant_id, s.merchant_id, s.out_sub_merchant_id, s.name, s.kyc_type, s.legal_name,
                  s.id_number_masked.label("id_number"), s.bank, s.account_number_masked.label("account_number"),
                  s.account_name, s.settle_after_days, s.payout_every_days,
                  s.status, s.created_at).order_by(s.created_at.desc(), s.sub_merchant_id.desc())
    if q:
        stmt = stmt.where(or_(s.sub_merchant_id == q, s.out_sub_merchant_id == q, s.name == q))
    if merchant_id:
        stmt = stmt.where(s.merchant_id == merchant_id)
    if status:
        stmt = stmt.where(s.status == status)
    return _page(p, stmt, limit, offset, {"q": q, "merchant_id": merchant_id, "status": status})


def batches_page(p: Platform, *, q: str = "", merchant_id: str = "", limit: int | None = None,
                 offset: int | None = None) -> Page:
    """Settlement batches, newest first; `q` is a batch_no, a seller id or a business date."""
    q, merchant_id = clean(q), clean(merchant_id)
    b = settlement_batches.c
    stmt = select(settlement_batches).order_by(b.created_at.desc(), b.batch_no.desc())
    if q:
        stmt = stmt.where(or_(b.batch_no == q, b.seller_id == q, b.business_date == q))
    if merchant_id:
        stmt = stmt.where(b.merchant_id == merchant_id)
    return _page(p, stmt, limit, offset, {"q": q, "merchant_id": merchant_id})


def queue(p: Platform) -> dict:
    """The manual-handling queue: open alerts, open findings, parked notifications, parked refunds
    and payouts (each section at most QUEUE_ROWS_MAX, oldest problems not hidden by newer ones)."""
    return {
        "alerts": operations.list_alerts(p, limit=QUEUE_ROWS_MAX),
        "findings": findings.list_findings(p, open_only=True, limit=QUEUE_ROWS_MAX),
        "parked_events": notifications.list_parked(p.db, limit=QUEUE_ROWS_MAX),
        "parked_refunds": refunds_page(p, parked=True, limit=QUEUE_ROWS_MAX).rows,
        "parked_payouts": payouts_page(p, parked=True, limit=QUEUE_ROWS_MAX).rows,
        "open_alert_status": OPEN,
    }
