"""The sandbox's daily bill: one CSV per merchant and business day, of the money that moved.

Per-payment bill faults (the buyer's `"bill"` option when paying) and extra payments added to a
day (`POST /bill/extra`) are rows of `bill_marks` (`mark`), applied when a bill is rendered.

Columns: `type` (`TRADE` or `REFUND`), `txn_no` (the payment's channel number, also on its
refunds), `out_trade_no`, `out_refund_no` (empty on trades), `amount` (minor units),
`currency`, `finished_at` (RFC 3339 in the business time zone). Only SUCCESS payments and
refunds appear, on the business day they finished. Bill faults remove real rows
(`missing_rows`) or add fabricated ones (`extra_rows`), for reconciliation drills.
"""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, insert, select

from .money_ops import settle_due_refunds
from .parts import ServiceParts
from .wire import PAY_SUCCESS, REFUND_SUCCESS, format_time

__all__ = ["COLUMNS", "PAYMENT_BILL_FAULTS", "mark", "render"]

PAYMENT_BILL_FAULTS = ("omit", "amount_off", "duplicate")

COLUMNS = ("type", "txn_no", "out_trade_no", "out_refund_no", "amount", "currency", "finished_at")
EXTRA_ROW_AMOUNT_BASE = 100


def _day_bounds(bill_date: date, tz) -> tuple[datetime, datetime]:
    start = datetime.combine(bill_date, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(bill_date + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def _real_rows(conn: Connection, svc: ServiceParts, mch_id: str, start: datetime, end: datetime) -> list[tuple]:
    p, r = svc.t.payments, svc.t.refunds
    trades = conn.execute(select(p).where(p.c.mch_id == mch_id, p.c.status == PAY_SUCCESS,
                                          p.c.paid_at >= start, p.c.paid_at < end)).all()
    refunds = conn.execute(select(r).where(r.c.mch_id == mch_id, r.c.status == REFUND_SUCCESS,
                                           r.c.finished_at >= start, r.c.finished_at < end)).all()
    rows = [(t.paid_at, "TRADE", t.txn_no, t.out_trade_no, "", t.amount, t.currency) for t in trades]
    rows += [(f.finished_at, "REFUND", f.txn_no, f.out_trade_no, f.out_refund_no, f.amount, f.currency)
             for f in refunds]
    return rows


def _extra_rows(bill_date: date, count: int, tz) -> list[tuple]:
    """Fabricated trades no merchant ever made: deterministic, so a test can name them."""
    noon = datetime.combine(bill_date, time(12), tzinfo=tz).astimezone(UTC)
    day = f"{bill_date:%Y%m%d}"
    return [(noon, "TRADE", f"X{day}{i:016d}", f"extra-{day}-{i}", "", EXTRA_ROW_AMOUNT_BASE + i, "CNY")
            for i in range(1, count + 1)]


def mark(conn: Connection, svc: ServiceParts, kind: str, now: datetime, *, txn_no: str | None = None,
         bill_date: date | None = None, amount: int | None = None) -> dict:
    """Remember a bill fault: `kind` on one payment (`txn_no`), or an `extra` payment on a day."""
    row = {"id": "bm_" + secrets.token_hex(8), "kind": kind, "txn_no": txn_no, "amount": amount, "created_at": now,
           "bill_date": bill_date.isoformat() if bill_date else None}
    if kind == "extra":
        row["txn_no"] = f"X{bill_date:%Y%m%d}{secrets.randbelow(10**16):016d}"
    conn.execute(insert(svc.t.bill_marks).values(**row))
    return {"code": "SUCCESS", "kind": kind, "txn_no": row["txn_no"], "date": row["bill_date"], "amount": amount}


def _apply_marks(conn: Connection, svc: ServiceParts, rows: list[tuple], bill_date: date) -> list[tuple]:
    m = svc.t.bill_marks
    txns = sorted({row[2] for row in rows if row[1] == "TRADE"})
    per_txn: dict[str, str] = {}
    for i in range(0, len(txns), 900):
        for txn, kind in conn.execute(select(m.c.txn_no, m.c.kind).where(m.c.txn_no.in_(txns[i:i + 900]))):
            per_txn[txn] = kind
    out: list[tuple] = []
    for row in rows:
        kind = per_txn.get(row[2]) if row[1] == "TRADE" else None
        if kind == "omit":
            continue
        if kind == "amount_off":
            row = row[:5] + (row[5] - 1,) + row[6:]
        out.append(row)
        if kind == "duplicate":
            out.append(row)
    start, end = _day_bounds(bill_date, svc.tz)
    noon = datetime.combine(bill_date, time(12), tzinfo=svc.tz).astimezone(UTC)
    for txn, amount, added in conn.execute(select(m.c.txn_no, m.c.amount, m.c.created_at).where(
            m.c.kind == "extra", m.c.bill_date == bill_date.isoformat()).order_by(m.c.created_at, m.c.id)):
        at = added if start <= added < end else noon  # "paid" when it was added, if that is on the day
        out.append((at, "TRADE", txn, f"extra-{txn}"[:64], "", amount, "CNY"))
    return out


def render(svc: ServiceParts, mch_id: str, bill_date: date) -> bytes:
    start, end = _day_bounds(bill_date, svc.tz)
    now = svc.clock.now()

    def work(conn: Connection) -> list[tuple]:
        settle_due_refunds(conn, svc, now)
        return _apply_marks(conn, svc, _real_rows(conn, svc, mch_id, start, end), bill_date)

    rows = svc.store.write(work)
    missing: set[str] = set()
    extra = 0
    for fault in svc.faults.bill_row_faults():
        if fault.kind == "missing_rows":
            missing.update(fault.out_trade_nos)
        elif fault.kind == "extra_rows":
            extra += fault.remaining or 0
    rows = [row for row in rows if row[3] not in missing] + _extra_rows(bill_date, extra, svc.tz)
    rows.sort(key=lambda row: (row[0], row[1], row[2], row[4]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for finished_at, kind, txn_no, out_trade_no, out_refund_no, amount, currency in rows:
        writer.writerow([kind, txn_no, out_trade_no, out_refund_no, amount, currency,
                         format_time(finished_at, svc.tz)])
    return out.getvalue().encode()
