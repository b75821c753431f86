"""Statements (對賬單): every payment and refund that reached a final state on one business day."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select

from piaohao.db.schema import payments, trades
from piaohao.domain import payments as pay_states
from piaohao.kernel.clock import rfc3339
from piaohao.platform import Platform
from piaohao.services.refunds import statement_refunds

HEADER = ["record_type", "trade_no", "out_trade_no", "refund_no", "out_request_no", "amount", "fee", "currency",
          "status", "channel", "channel_txn_no", "finished_at"]
# Payments the channel decided (succeeded or failed). Closed attempts are abandoned, not outcomes.
PAYMENT_FINAL_STATES = (pay_states.SUCCEEDED, pay_states.FAILED)


def business_day_bounds(p: Platform, day: date) -> tuple[datetime, datetime]:
    """[start, end) of a business day in the business time zone, as UTC instants (DST-safe)."""
    tz = p.settings.tz
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def statement_rows(p: Platform, merchant_id: str, day: date) -> list[dict]:
    start, end = business_day_bounds(p, day)
    q = (select(payments, trades.c.out_trade_no)
         .join(trades, trades.c.trade_no == payments.c.trade_no)
         .where(payments.c.merchant_id == merchant_id, payments.c.status.in_(PAYMENT_FINAL_STATES),
                payments.c.finished_at >= start, payments.c.finished_at < end)
         .order_by(payments.c.finished_at, payments.c.payment_no))
    tz = p.settings.tz
    with p.db.read() as conn:
        rows = [{
            "record_type": "payment", "trade_no": r["trade_no"], "out_trade_no": r["out_trade_no"],
            "refund_no": "", "out_request_no": "", "amount": r["amount"], "fee": 0, "currency": r["currency"],
            "status": r["status"], "channel": r["channel"], "channel_txn_no": r["channel_txn_no"] or "",
            "finished_at": rfc3339(r["finished_at"], tz), "_at": r["finished_at"],
        } for r in conn.execute(q).mappings()]
    # Refund rows join here when refunds exist (see services/refunds.py).
    for extra in _refund_rows(p, merchant_id, start, end):
        rows.append(extra)
    rows.sort(key=lambda r: (r["_at"], r["record_type"]))
    return rows


def _refund_rows(p: Platform, merchant_id: str, start: datetime, end: datetime) -> list[dict]:
    """The merchant's refunds that became final in [start, end); amounts positive. Refunds of stray
    payments are the platform's own and never appear here."""
    tz = p.settings.tz
    with p.db.read() as conn:
        return [{
            "record_type": "refund", "trade_no": r["trade_no"], "out_trade_no": r["out_trade_no"],
            "refund_no": r["refund_no"], "out_request_no": r["out_request_no"], "amount": r["amount"], "fee": 0,
            "currency": r["currency"], "status": r["status"], "channel": r["channel"] or "",
            "channel_txn_no": r["channel_refund_no"] or "", "finished_at": rfc3339(r["finished_at"], tz),
            "_at": r["finished_at"],
        } for r in statement_refunds(conn, merchant_id, start, end)]


def statement_csv(p: Platform, merchant_id: str, day: date) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(statement_rows(p, merchant_id, day))
    return out.getvalue()
