"""Members (the merchant's buyers who hold money on the platform): create, read, coins, credit line.

A member's money lives in four ledger accounts, all in the member's currency and all created
with the member (`piaohao.books.chart`):
- `member_balance` (credit normal, never negative): `accounts.balance.available` is its
  `available` (posted minus pending holds that spend it);
- `member_frozen` (never negative): `accounts.balance.frozen`, money of withdrawals in flight;
- `member_coins` (never negative): `accounts.coins.available` is its `available`;
  `accounts.coins.held` is its `pending_debits`, i.e. open ledger holds that spend coins (the
  cashier reserves coins with a hold whose leg debits this account while a channel part is open);
- `member_credit` (a credit line, may go down to -limit): `limit` is the account's credit limit,
  `used` what is drawn on it (holds included), `available` = limit - used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
import structlog
from sqlalchemy import Connection, select

from piaohao import ledger
from piaohao.books import chart, coins
from piaohao.db.inserts import insert_if_absent
from piaohao.db.schema_members import coin_grants, members
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import CreditLimitBelowUsed, IdempotencyConflict, InvalidRequest, MemberNotFound
from piaohao.kernel.ids import new_id
from piaohao.kernel.money import CURRENCY_EXPONENT, is_valid_amount
from piaohao.platform import Platform
from piaohao.services.passwords import hash_password

log = structlog.get_logger(__name__)


def fingerprint(**fields) -> str:
    """What makes two create requests "the same body" (sha256 of the fields, keys sorted)."""
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_amount(amount: object, *, allow_zero: bool = False) -> int:
    if not is_valid_amount(amount, allow_zero=allow_zero):
        low = 0 if allow_zero else 1
        raise InvalidRequest(f"amount must be an integer of minor units between {low} and 10^15")
    return amount  # type: ignore[return-value]


# --- reading ---------------------------------------------------------------------------------------

def member_accounts(conn: Connection, member_id: str, currency: str) -> dict:
    """The member's `accounts` object, read from the ledger in one query (shards summed)."""
    got = ledger.owner_figures(conn, "member", member_id, currency)
    zero = (0, 0, 0, 0)
    _, _, balance_available, _ = got.get("balance", zero)
    frozen_posted, _, _, _ = got.get("frozen", zero)
    _, coins_held, coins_available, _ = got.get("coins", zero)
    _, _, credit_available, credit_floor = got.get("credit", zero)
    limit = -int(credit_floor or 0)
    used = max(0, -credit_available)
    return {
        "balance": {"available": balance_available, "frozen": frozen_posted},
        "coins": {"available": coins_available, "held": coins_held},
        "credit": {"limit": limit, "used": used, "available": limit + credit_available},
    }


def member_view(p: Platform, row, accounts: dict) -> dict:
    return {
        "member_id": row["member_id"],
        "out_member_id": row["out_member_id"],
        "name": row["name"],
        "currency": row["currency"],
        "created_at": rfc3339(row["created_at"], p.settings.tz),
        "accounts": accounts,
    }


def load_member(conn: Connection, merchant_id: str, member_id: str):
    """The member row if it belongs to `merchant_id`; otherwise MemberNotFound (another merchant's
    member answers exactly as a missing one)."""
    row = conn.execute(select(members).where(members.c.member_id == member_id,
                                             members.c.merchant_id == merchant_id)).mappings().first()
    if row is None:
        raise MemberNotFound("no such member")
    return row


def _view_of(p: Platform, conn: Connection, row) -> dict:
    return member_view(p, row, member_accounts(conn, row["member_id"], row["currency"]))


def get_member(p: Platform, merchant_id: str, *, member_id: str | None = None,
               out_member_id: str | None = None) -> dict:
    q = select(members).where(members.c.merchant_id == merchant_id)
    if member_id is not None:
        q = q.where(members.c.member_id == member_id)
    elif out_member_id is not None:
        q = q.where(members.c.out_member_id == out_member_id)
    else:
        raise InvalidRequest("give member_id or out_member_id")
    with p.db.read() as conn:
        row = conn.execute(q).mappings().first()
        if row is None:
            raise MemberNotFound("no such member")
        return _view_of(p, conn, row)


# --- create ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewMember:
    out_member_id: str
    name: str
    payment_password: str
    currency: str = "CNY"


def _same_member(existing, req: NewMember) -> None:
    if existing["name"] != req.name or existing["currency"] != req.currency:
        raise IdempotencyConflict(f"out_member_id {req.out_member_id} was already used with another name")


def create_member(p: Platform, merchant_id: str, req: NewMember) -> tuple[dict, bool]:
    """Returns (member view, created). The same out_member_id and name again returns the member
    (its password unchanged), created=False; another name is IDEMPOTENCY_CONFLICT."""
    if req.currency not in CURRENCY_EXPONENT:
        raise InvalidRequest(f"unsupported currency {req.currency!r}")
    m = members.c
    with p.db.read() as conn:
        existing = conn.execute(select(members).where(m.merchant_id == merchant_id,
                                                      m.out_member_id == req.out_member_id)).mappings().first()
        if existing is not None:
            _same_member(existing, req)
            return _view_of(p, conn, existing), False
    password_hash = hash_password(req.payment_password)  # slow: outside any transaction
    now = p.clock.now()
    row = {"member_id": new_id("mbr"), "merchant_id": merchant_id, "out_member_id": req.out_member_id,
           "name": req.name, "currency": req.currency, "password_hash": password_hash, "password_failures": 0,
           "password_locked_until": None, "created_at": now, "updated_at": now}

    def tx(conn: Connection) -> tuple[dict, bool]:
        if not insert_if_absent(conn, members, row, ["merchant_id", "out_member_id"]):  # a twin won the race
            existing = conn.execute(select(members).where(m.merchant_id == merchant_id,
                                                          m.out_member_id == req.out_member_id)).mappings().one()
            _same_member(existing, req)
            return _view_of(p, conn, existing), False
        for make in (chart.member_balance, chart.member_coins, chart.member_credit, chart.member_frozen):
            make(conn, row["member_id"], req.currency)
        return _view_of(p, conn, row), True

    view, created = p.db.write(tx)
    if created:
        log.info("member.created", member_id=view["member_id"], merchant_id=merchant_id)
    return view, created


# --- coins -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewCoinGrant:
    out_request_no: str
    amount: int
    reason: str | None = None


def grant_view(p: Platform, g) -> dict:
    return {"grant_no": g["grant_no"], "out_request_no": g["out_request_no"], "member_id": g["member_id"],
            "amount": g["amount"], "currency": g["currency"], "reason": g["reason"],
            "created_at": rfc3339(g["created_at"], p.settings.tz)}


def grant_coins(p: Platform, merchant_id: str, member_id: str, req: NewCoinGrant) -> tuple[dict, bool]:
    """Grant coins funded by the platform's marketing expense (debit marketing expense, credit the
    member's coins), in one transaction with the grant record. Idempotent on (merchant,
    out_request_no): the same body again returns the grant (created=False), another body is
    IDEMPOTENCY_CONFLICT."""
    check_amount(req.amount)
    digest = fingerprint(member_id=member_id, amount=req.amount, reason=req.reason)
    g = coin_grants.c

    def replay(conn: Connection) -> dict:
        existing = conn.execute(select(coin_grants).where(g.merchant_id == merchant_id,
                                                          g.out_request_no == req.out_request_no)).mappings().one()
        if existing["request_hash"] != digest:
            raise IdempotencyConflict(f"out_request_no {req.out_request_no} was already used for another grant")
        return grant_view(p, existing)

    def tx(conn: Connection) -> tuple[dict, bool]:
        member = load_member(conn, merchant_id, member_id)
        now = p.clock.now()
        row = {"grant_no": new_id("cg"), "merchant_id": merchant_id, "member_id": member_id,
               "out_request_no": req.out_request_no, "amount": req.amount, "currency": member["currency"],
               "reason": req.reason, "request_hash": digest, "created_at": now}
        if not insert_if_absent(conn, coin_grants, row, ["merchant_id", "out_request_no"]):
            return replay(conn), False
        coins.grant(conn, grant_no=row["grant_no"], member_id=member_id, currency=member["currency"],
                    amount=req.amount, at=now)
        return grant_view(p, row), True

    view, created = p.db.write(tx)
    if created:
        log.info("member.coins_granted", member_id=member_id, grant_no=view["grant_no"], amount=req.amount)
    return view, created


# --- credit line -----------------------------------------------------------------------------------

def set_credit_limit(p: Platform, merchant_id: str, member_id: str, limit: int) -> dict:
    """Set the member's credit line; a limit below what is used (holds included) raises
    CreditLimitBelowUsed (409) and changes nothing."""
    check_amount(limit, allow_zero=True)

    def tx(conn: Connection) -> dict:
        member = load_member(conn, merchant_id, member_id)
        try:
            coins.set_credit_limit(conn, member_id=member_id, currency=member["currency"], limit=limit)
        except CreditLimitBelowUsed:
            used = member_accounts(conn, member_id, member["currency"])["credit"]["used"]
            raise CreditLimitBelowUsed(f"the member has used {used} of the credit line; "
                                              f"the limit cannot be set to {limit}") from None
        return _view_of(p, conn, member)

    view = p.db.write(tx)
    log.info("member.credit_limit_set", member_id=member_id, limit=limit)
    return view
