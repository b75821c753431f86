"""Sub-merchants' own payout cycles (`payout_every_days`): settled money paid out automatically.

Cycles lie on a grid of business days (`settings.business_tz`) counted from the sub-merchant's
creation day: due days are creation + N, + 2N, ... A cycle is due when the last cycle payout's due
day (or, with none yet, the creation day) is at least N days before `as_of`'s day; the payout it
makes takes the whole `available` of `sub_merchant_settled` (CNY) to the registered bank account
through `services.payouts.create_payout` (ledger hold, executor, `payout.*` events).

The cycle is recorded by the payout itself, no extra column: its `out_request_no` is
`cycle-<sub_merchant_id>-<YYYYMMDD of the due day>`, and the latest such payout of a sub-merchant
is its last cycle. The due day is the latest grid day not after `as_of` (missed cycles are not
paid one by one: one payout takes everything). Two workers, or a re-run, compute the same key, and
the payouts' unique (merchant, kind, out_request_no) lets only one payout exist per cycle. A
cycle whose payout the bank refused is still spent: the money is back in `settled` and goes with
the next cycle (or a `POST /v1/payouts`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import structlog
from sqlalchemy import select

from piaohao import ledger
from piaohao.books import chart
from piaohao.db.schema import apps
from piaohao.db.schema_clearing import sub_merchants
from piaohao.db.schema_members import disbursements
from piaohao.domain.business import PAYOUT
from piaohao.kernel.errors import IdempotencyConflict, PiaohaoError
from piaohao.platform import Platform
from piaohao.services.payouts import NewPayout, create_payout

log = structlog.get_logger(__name__)
PREFIX = "cycle-"
CURRENCY = "CNY"
_s = sub_merchants.c
_d = disbursements.c


def cycle_key(sub_merchant_id: str, due: date) -> str:
    return f"{PREFIX}{sub_merchant_id}-{due:%Y%m%d}"


def _key_day(out_request_no: str) -> date | None:
    try:
        return datetime.strptime(out_request_no.rsplit("-", 1)[1], "%Y%m%d").date()
    except (IndexError, ValueError):
        return None


def due_day(anchor: date, every_days: int, today: date) -> date | None:
    """The latest day anchor + k*every_days (k >= 1) not after `today`, or None when none is."""
    if today < anchor + timedelta(days=every_days):
        return None
    k = (today - anchor).days // every_days
    return anchor + timedelta(days=k * every_days)


def run_payout_cycles(p: Platform, as_of: datetime | None = None) -> dict:
    """Create the payout of every sub-merchant whose cycle is due at `as_of` (default now).
    Returns a summary; one sub-merchant's refusal (e.g. frozen meanwhile) does not stop the others."""

    as_of = as_of or p.clock.now()
    tz = p.settings.tz
    today = as_of.astimezone(tz).date()
    summary = {"due": 0, "payouts": 0, "amount": 0, "already_paid": 0, "failed": 0, "payout_nos": []}
    with p.db.read() as conn:
        sellers = conn.execute(select(_s.sub_merchant_id, _s.merchant_id, _s.payout_every_days, _s.created_at)
                               .where(_s.status == "active", _s.payout_every_days.is_not(None))
                               .order_by(_s.sub_merchant_id)).mappings().all()
    for s in sellers:
        sid, every = s["sub_merchant_id"], s["payout_every_days"]
        with p.db.read() as conn:
            last = conn.execute(select(_d.out_request_no).where(
                _d.merchant_id == s["merchant_id"], _d.kind == PAYOUT, _d.sub_merchant_id == sid,
                _d.out_request_no.like(f"{PREFIX}{sid}-%")).order_by(_d.out_request_no.desc()).limit(1)
            ).scalar_one_or_none()
            anchor = (_key_day(last) if last else None) or s["created_at"].astimezone(tz).date()
            due = due_day(anchor, every, today)
            if due is None:
                continue
            account = chart.lookup(conn, "sub_merchant_settled", sid, CURRENCY)
            available = ledger.balance(conn, account.account_id).available if account else 0
            app_id = conn.execute(select(apps.c.app_id).where(apps.c.merchant_id == s["merchant_id"])
                                  .order_by(apps.c.status != "active", apps.c.created_at, apps.c.app_id)
                                  .limit(1)).scalar_one_or_none()
        if available <= 0 or app_id is None:
            continue
        summary["due"] += 1
        key = cycle_key(sid, due)
        try:
            view, created = create_payout(p, s["merchant_id"], app_id,
                                          NewPayout(out_request_no=key, amount=available, sub_merchant_id=sid,
                                                    currency=CURRENCY))
        except IdempotencyConflict:  # another run made this cycle's payout (for another amount)
            summary["already_paid"] += 1
            continue
        except PiaohaoError as e:  # frozen meanwhile, money paid out by hand meanwhile, a raced run, ...
            summary["failed"] += 1
            log.warning("payout_cycle.not_paid", sub_merchant_id=sid, key=key, error=str(e))
            continue
        if not created:
            summary["already_paid"] += 1
            continue
        summary["payouts"] += 1
        summary["amount"] += view["amount"]
        summary["payout_nos"].append(view["payout_no"])
        log.info("payout_cycle.paid", sub_merchant_id=sid, key=key, payout_no=view["payout_no"], amount=available)
    return summary
