"""Settlement use cases: the merchant confirms (POST /v1/trades/{trade_no}/settle), the periodic run
(`piaohao settlement run`, the worker), batches and their statements."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import select

from piaohao.clearing import batches
from piaohao.clearing.orders import OWN_ORDER_NO, PENDING
from piaohao.clearing.settle import open_accounts_ahead, settle_orders
from piaohao.db.schema_clearing import settle_requests, settlement_batches, trade_orders
from piaohao.domain import trades as trade_states
from piaohao.kernel.errors import (
    IdempotencyConflict,
    OrderNotFound,
    RefundInProgress,
    SettlementBatchNotFound,
    TradeNotFound,
    TradeNotSettlable,
)
from piaohao.kernel.progress import SILENT, Progress
from piaohao.platform import Platform
from piaohao.services.members import fingerprint
from piaohao.services.trade_store import get_trade, lock_trade

log = structlog.get_logger(__name__)
_o = trade_orders.c
SETTLABLE = (trade_states.SUCCEEDED, trade_states.REFUNDED)


def confirm(p: Platform, merchant_id: str, trade_no: str, out_request_no: str,
            out_order_nos: list[str] | None) -> dict:
    """Settle the named orders of a paid trade now (all of them when none are named), in one
    transaction; idempotent on (merchant, out_request_no). Returns the trade view."""
    digest = fingerprint(trade_no=trade_no, out_order_nos=sorted(out_order_nos) if out_order_nos else None)
    now = p.clock.now()
    mine = select(trade_orders).where(_o.trade_no == trade_no, _o.merchant_id == merchant_id, _o.status == PENDING)
    if out_order_nos:
        mine = mine.where(_o.out_order_no.in_(sorted(set(out_order_nos))))
    accounts = open_accounts_ahead(p, mine, at=now)  # own transaction, before the one that credits them

    def tx(conn):
        t = lock_trade(conn, trade_no)
        if t is None or t["merchant_id"] != merchant_id or t["purpose"] != "sale":
            raise TradeNotFound("no such trade")
        seen = conn.execute(select(settle_requests.c.request_hash).where(
            settle_requests.c.merchant_id == merchant_id, settle_requests.c.out_request_no == out_request_no)
        ).scalar_one_or_none()
        if seen is not None:
            if seen != digest:
                raise IdempotencyConflict(f"out_request_no {out_request_no} was already used for another settlement")
            return []
        if t["status"] not in SETTLABLE:
            raise TradeNotSettlable(f"the trade is {t['status']}: only a paid trade settles")
        rows = conn.execute(select(trade_orders).where(_o.trade_no == trade_no).order_by(_o.position)
                            .with_for_update()).mappings().all()
        named = {r["out_order_no"]: r for r in rows}
        if out_order_nos:
            missing = [n for n in out_order_nos if n not in named or named[n]["kind"] != "order"]
            if missing:
                raise OrderNotFound(f"the trade has no order {missing[0]}")
            chosen = [named[n] for n in dict.fromkeys(out_order_nos)]
        else:
            chosen = list(rows)
        if not chosen and OWN_ORDER_NO not in named:
            raise TradeNotSettlable("the trade has nothing to settle")
        todo = [r for r in chosen if r["status"] == PENDING]
        results, skipped = settle_orders(conn, p, todo, trigger="confirm", now=now, accounts=accounts)
        if skipped:
            raise RefundInProgress(f"order {skipped[0]['out_order_no']} has a refund at the channel; settle it "
                                   "once the refund is final")
        conn.execute(settle_requests.insert().values(merchant_id=merchant_id, out_request_no=out_request_no,
                                                     trade_no=trade_no, request_hash=digest, created_at=now))
        return results

    results = p.db.write(tx)
    if results:
        log.info("settlement.confirmed", trade_no=trade_no, batches=[r.batch_no for r in results])
    return get_trade(p, merchant_id, trade_no=trade_no)


def run(p: Platform, as_of: datetime | None = None, progress: Progress = SILENT) -> dict:
    return batches.run_due(p, as_of, progress=progress)


def list_batches(p: Platform, merchant_id: str, seller_id: str | None = None, limit: int = 100) -> list[dict]:
    q = select(settlement_batches).where(settlement_batches.c.merchant_id == merchant_id)
    if seller_id:
        q = q.where(settlement_batches.c.seller_id == seller_id)
    with p.db.read() as conn:
        rows = conn.execute(q.order_by(settlement_batches.c.created_at.desc()).limit(limit)).mappings().all()
    return [batches.batch_view(p, r) for r in rows]


def get_batch(p: Platform, merchant_id: str | None, batch_no: str) -> dict:
    q = select(settlement_batches).where(settlement_batches.c.batch_no == batch_no)
    if merchant_id is not None:
        q = q.where(settlement_batches.c.merchant_id == merchant_id)
    with p.db.read() as conn:
        r = conn.execute(q).mappings().first()
        if r is None:
            raise SettlementBatchNotFound(f"no settlement batch {batch_no}")
        view = batches.batch_view(p, r)
        view["problems"] = batches.verify_batch(conn, batch_no)
    return view
