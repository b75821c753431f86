"""Periodic settlement (T+N): orders whose settlement period ran out settle by themselves, in
chunks, one transaction per chunk, one verified batch per seller and currency; plus the
re-verification of a batch and its statement (CSV).

The due orders are selected set-based (`status = pending_settlement AND settle_due_at <= as_of`,
keyset-paginated, `FOR UPDATE SKIP LOCKED` on PostgreSQL so several workers share the work).
Before each page's transaction, the ledger accounts the page will credit are opened in a short
transaction of their own (`clearing.settle.open_accounts_ahead`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

import structlog
from sqlalchemy import Connection, Select, func, select, tuple_

from piaohao.books.settle import batch_debits_total
from piaohao.clearing.orders import PENDING
from piaohao.clearing.settle import open_accounts_ahead, settle_orders
from piaohao.db.schema_clearing import (
    settlement_batches,
    settlement_details,
    settlement_split_details,
    trade_orders,
)
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import SettlementBatchNotFound
from piaohao.kernel.progress import SILENT, Progress
from piaohao.platform import Platform

log = structlog.get_logger(__name__)
CHUNK_ORDERS = 5000
_o = trade_orders.c


def run_due(p: Platform, as_of: datetime | None = None, *, chunk: int = CHUNK_ORDERS,
            max_chunks: int | None = None, progress: Progress = SILENT) -> dict:
    """Settle every order (and every own sale) due at `as_of` (default now). Returns a summary.

    `progress` hears one step per page of `chunk` orders; the count behind its total is read only
    when someone watches (the worker's periodic run does not pay for it)."""
    as_of = as_of or p.clock.now()
    if progress is not SILENT:
        progress.start("settle due orders", -(-_count_due(p, as_of) // chunk))
    summary = {"as_of": as_of.isoformat(), "orders": 0, "batches": 0, "skipped_refund_in_flight": 0,
               "seller_amount": 0, "split_amount": 0, "fee_amount": 0, "batch_nos": []}
    last: tuple | None = None
    chunks = 0
    while max_chunks is None or chunks < max_chunks:
        page = _due_page(as_of, last, chunk)
        accounts = open_accounts_ahead(p, page, at=p.clock.now())  # own transaction: see its docstring

        def tx(conn: Connection, page=page, accounts=accounts):
            q = page if p.db.is_sqlite else page.with_for_update(skip_locked=True)
            rows = conn.execute(q).mappings().all()
            if not rows:
                return None
            results, skipped = settle_orders(conn, p, rows, trigger="auto", now=p.clock.now(), accounts=accounts)
            tail = rows[-1]
            return (tail["seller_id"], tail["trade_no"], tail["out_order_no"]), results, len(skipped)

        done = p.db.write(tx)
        if done is None:
            break
        last, results, skipped = done
        chunks += 1
        summary["skipped_refund_in_flight"] += skipped
        for r in results:
            summary["orders"] += r.order_count
            summary["batches"] += 1
            summary["seller_amount"] += r.seller_amount
            summary["split_amount"] += r.split_amount
            summary["fee_amount"] += r.fee_amount
            if len(summary["batch_nos"]) < 100:
                summary["batch_nos"].append(r.batch_no)
        progress.advance(f"{summary['orders']} settled")
    if summary["orders"]:
        log.info("settlement.run", orders=summary["orders"], batches=summary["batches"], as_of=summary["as_of"])
    return summary


def _due_page(as_of: datetime, after: tuple | None, chunk: int) -> Select:
    """The next `chunk` due orders after the keyset `after` (seller, trade, order), unlocked."""
    q = select(trade_orders).where(_o.status == PENDING, _o.settle_due_at <= as_of)
    if after is not None:
        q = q.where(tuple_(_o.seller_id, _o.trade_no, _o.out_order_no) > tuple_(*after))
    return q.order_by(_o.seller_id, _o.trade_no, _o.out_order_no).limit(chunk)


def _count_due(p: Platform, as_of: datetime) -> int:
    with p.db.read() as conn:
        q = select(func.count()).select_from(trade_orders).where(_o.status == PENDING, _o.settle_due_at <= as_of)
        return int(conn.execute(q).scalar_one())


def verify_batch(conn: Connection, batch_no: str) -> list[str]:
    """Re-verify a written batch: totals = sum of details, receiver rows = details' splits, every
    detail's order settled by this batch, and the ledger entry moves exactly the batch. [] if clean."""
    b = conn.execute(select(settlement_batches).where(settlement_batches.c.batch_no == batch_no)).mappings().first()
    if b is None:
        raise SettlementBatchNotFound(f"no settlement batch {batch_no}")
    d = settlement_details.c
    problems = []
    row = conn.execute(select(func.count(), func.coalesce(func.sum(d.amount), 0),
                              func.coalesce(func.sum(d.seller_amount), 0), func.coalesce(func.sum(d.split_amount), 0),
                              func.coalesce(func.sum(d.fee_amount), 0), func.coalesce(func.sum(d.subsidy_amount), 0),
                              func.coalesce(func.sum(d.refunded_amount), 0)).where(d.batch_no == batch_no)).one()
    want = (b["order_count"], b["gross_amount"], b["seller_amount"], b["split_amount"], b["fee_amount"],
            b["subsidy_amount"], b["refunded_amount"])
    if tuple(int(x) for x in row) != want:
        problems.append(f"details sum to {tuple(int(x) for x in row)}, the batch says {want}")
    splits = conn.execute(select(func.coalesce(func.sum(settlement_split_details.c.amount), 0)).where(
        settlement_split_details.c.batch_no == batch_no)).scalar_one()
    if int(splits) != b["split_amount"]:
        problems.append(f"receiver rows sum to {splits}, the batch's splits are {b['split_amount']}")
    mismatched = conn.execute(select(func.count()).select_from(settlement_details.join(
        trade_orders, (_o.trade_no == d.trade_no) & (_o.out_order_no == d.out_order_no))).where(
        d.batch_no == batch_no, (_o.batch_no != batch_no) | (_o.status != "settled"))).scalar_one()
    if mismatched:
        problems.append(f"{mismatched} details whose order is not settled by this batch")
    moved = batch_debits_total(conn, batch_no)
    if int(moved) != b["gross_amount"] - b["refunded_amount"] + b["subsidy_amount"]:
        problems.append(f"the ledger entry debits {moved}, the batch moves "
                        f"{b['gross_amount'] - b['refunded_amount'] + b['subsidy_amount']}")
    return problems


STATEMENT_HEADER = ["batch_no", "seller_type", "seller_id", "trade_no", "out_order_no", "currency", "amount",
                    "refunded_amount", "subsidy_amount", "split_amount", "fee_amount", "seller_amount",
                    "fee_rule_id", "settled_at"]


STATEMENT_ROWS_PER_CHUNK = 2000  # CSV rows per yielded piece: memory is bounded whatever the batch's size


def statement_chunks(p: Platform, merchant_id: str, batch_no: str) -> Iterator[str]:
    """The settlement statement of one seller's batch, streamed: the header, one row per order
    (read through a server-side cursor, STATEMENT_ROWS_PER_CHUNK at a time), then a `total` row.
    Raises SettlementBatchNotFound before yielding anything."""
    with p.db.read() as conn:
        b = conn.execute(select(settlement_batches).where(
            settlement_batches.c.batch_no == batch_no, settlement_batches.c.merchant_id == merchant_id)
        ).mappings().first()
    if b is None:
        raise SettlementBatchNotFound(f"no settlement batch {batch_no}")
    return _statement_pieces(p, b)


def _statement_pieces(p: Platform, b) -> Iterator[str]:
    batch_no, when = b["batch_no"], rfc3339(b["created_at"], p.settings.tz)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(STATEMENT_HEADER)
    d = settlement_details.c
    with p.db.read() as conn:
        result = conn.execution_options(stream_results=True, yield_per=STATEMENT_ROWS_PER_CHUNK).execute(
            select(d.trade_no, d.out_order_no, d.amount, d.refunded_amount, d.subsidy_amount, d.split_amount,
                   d.fee_amount, d.seller_amount, d.fee_rule_id).where(d.batch_no == batch_no)
            .order_by(d.trade_no, d.out_order_no))
        for part in result.partitions():
            for r in part:
                w.writerow([batch_no, b["seller_type"], b["seller_id"], r.trade_no, r.out_order_no, b["currency"],
                            r.amount, r.refunded_amount, r.subsidy_amount, r.split_amount, r.fee_amount,
                            r.seller_amount, r.fee_rule_id, when])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    w.writerow([batch_no, b["seller_type"], b["seller_id"], "total", b["order_count"], b["currency"],
                b["gross_amount"], b["refunded_amount"], b["subsidy_amount"], b["split_amount"], b["fee_amount"],
                b["seller_amount"], "", when])
    yield out.getvalue()


def statement_csv(p: Platform, merchant_id: str, batch_no: str) -> str:
    """The whole statement as one string (`statement_chunks` streams it)."""
    return "".join(statement_chunks(p, merchant_id, batch_no))


def batch_view(p: Platform, b) -> dict:
    return {k: b[k] for k in ("batch_no", "seller_type", "seller_id", "currency", "business_date", "trigger",
                              "order_count", "gross_amount", "refunded_amount", "subsidy_amount", "split_amount",
                              "fee_amount", "platform_fee_amount", "seller_amount", "status")} | {
        "created_at": rfc3339(b["created_at"], p.settings.tz)}
