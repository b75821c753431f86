"""Payouts (付) of a merchant's settled money, and what withdrawals and payouts share: money that
leaves the platform through the channel's bank payout (table `disbursements`).

Both are two-phase. When created, in one transaction with the record, the amount is set aside:
- a withdrawal moves it from the member's balance to `member_frozen` (a posted entry), so
  `accounts.balance.frozen` shows it at once (`piaohao.services.withdrawals`);
- a payout reserves it on `merchant_settled` with a ledger hold (debit merchant_settled, credit
  channel clearing): the settled `available` drops at once, nothing is posted yet.
The executor (`piaohao.workers.payouts`) then calls the channel outside any transaction and
`apply_payout_result` records the answer:
- SUCCEEDED: the money leaves the books: withdrawal frozen -> channel clearing; payout hold posted.
- FAILED:    it comes back: withdrawal frozen -> balance; payout hold voided.
- anything else (UNKNOWN, PENDING, NOT_FOUND) is never read as failure: it is asked again at
  growing intervals; after the last try the record stays `processing` and a `payout_unknown`
  alert asks an operator to settle it.
Each final state enqueues `withdrawal.*` / `payout.*` in the same transaction. Bank account numbers
are kept in full (needed to pay, and to pay again with the same key) but sealed (`db.sealed`),
opened only by the executor to call the channel; views and logs use the masked copy (last 4 digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, select, update

from piaohao import ledger
from piaohao.alerts import raise_alert
from piaohao.books import chart, payout, withdraw
from piaohao.channels.spi import Outcome, PayoutResult
from piaohao.db.inserts import Raced, insert_once
from piaohao.db.schema_members import disbursements
from piaohao.db.sealed import open_column, seal_column
from piaohao.domain.bank_accounts import BankAccount, mask  # noqa: F401  (re-exported)
from piaohao.domain.business import DISBURSEMENT_STATES, PAYOUT, PROCESSING, WITHDRAWAL
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    IdempotencyConflict,
    InsufficientBalance,
    InvalidRequest,
    MethodNotAvailable,
    NotFound,
    PayoutNotFound,
    SubMerchantNotActive,
    SubMerchantNotFound,  # noqa: F401  (importable from here)
)
from piaohao.kernel.ids import new_id
from piaohao.kernel.invariants import require
from piaohao.kernel.money import CURRENCY_EXPONENT
from piaohao.kernel.outbound import check_urls
from piaohao.platform import Platform
from piaohao.services import notifications
from piaohao.services.members import check_amount, fingerprint
from piaohao.services.sub_merchants import find_sub_merchant, sub_merchant_bank_account

log = structlog.get_logger(__name__)
NUMBER_OF = {WITHDRAWAL: "withdrawal_no", PAYOUT: "payout_no"}
_d = disbursements.c

PAYOUT_TRIES_MAX = 10  # channel calls (payout, then queries) before an unknown outcome is parked
# --- views -----------------------------------------------------------------------------------------

def disbursement_view(p: Platform, d) -> dict:
    tz = p.settings.tz
    view = {NUMBER_OF[d["kind"]]: d["disbursement_no"], "out_request_no": d["out_request_no"]}
    if d["kind"] == WITHDRAWAL:
        view["member_id"] = d["member_id"]
    else:
        view["sub_merchant_id"] = d["sub_merchant_id"]
    view.update({
        "amount": d["amount"], "currency": d["currency"],
        "bank_account": {"bank": d["bank"], "number": d["account_number_masked"], "name": d["account_name"]},
        "status": d["status"], "fail_reason": d["fail_reason"], "notify_url": d["notify_url"],
        "created_at": rfc3339(d["created_at"], tz), "finished_at": rfc3339(d["finished_at"], tz),
    })
    return view


def find_disbursement(conn: Connection, merchant_id: str, kind: str, out_request_no: str):
    return conn.execute(select(disbursements).where(_d.merchant_id == merchant_id, _d.kind == kind,
                                                    _d.out_request_no == out_request_no)).mappings().first()


def get_disbursement(p: Platform, merchant_id: str, kind: str, *, number: str | None,
                     out_request_no: str | None, not_found: type[NotFound]) -> dict:
    q = select(disbursements).where(_d.merchant_id == merchant_id, _d.kind == kind)
    if number is not None:
        q = q.where(_d.disbursement_no == number)
    elif out_request_no is not None:
        q = q.where(_d.out_request_no == out_request_no)
    else:
        raise InvalidRequest(f"give {NUMBER_OF[kind]} or out_request_no")
    with p.db.read() as conn:
        row = conn.execute(q).mappings().first()
    if row is None:
        raise not_found(f"no such {kind}")
    return disbursement_view(p, row)


# --- creating (shared by withdrawals and payouts) --------------------------------------------------

def payout_channel_key(p: Platform) -> str:
    """The platform's own channel account that pays out to banks (one whose adapter can `payout`).
    MethodNotAvailable when none is provisioned: nothing is created then."""
    for key in p.channels:
        if callable(getattr(p.channels[key], "payout", None)):
            return key
    raise MethodNotAvailable("no payout channel is configured")


def new_row(p: Platform, kind: str, *, merchant_id: str, app_id: str, out_request_no: str, amount: int,
            currency: str, account: BankAccount, notify_url: str | None, request_hash: str,
            member_id: str | None = None, sub_merchant_id: str | None = None) -> dict:
    now = p.clock.now()
    number = new_id("wd" if kind == WITHDRAWAL else "po")
    return {"disbursement_no": number, "kind": kind,
            "merchant_id": merchant_id, "app_id": app_id, "out_request_no": out_request_no, "member_id": member_id,
            "sub_merchant_id": sub_merchant_id, "amount": amount, "currency": currency, "bank": account.bank,
            "account_number_sealed": seal_column(p.sealer(), "disbursements", "account_number_sealed", number,
                                                 account.number),
            "account_number_masked": mask(account.number), "account_name": account.name, "status": PROCESSING,
            "channel": payout_channel_key(p), "hold_id": None, "notify_url": notify_url, "request_hash": request_hash,
            "attempts": 0, "next_attempt_at": now, "channel_payout_no": None, "last_error": None,
            "fail_reason": None, "parked_at": None, "created_at": now, "finished_at": None, "updated_at": now}


def create_disbursement(p: Platform, row: dict, set_aside) -> tuple[dict, bool]:
    """Insert `row` and run `set_aside(conn, row)` (the ledger part) in one transaction; an
    identical request that won the race is answered instead. Returns (view, created)."""
    p.channel(row["channel"])  # MethodNotAvailable when the payout channel is not configured

    def replay(existing) -> dict:
        if existing["request_hash"] != row["request_hash"]:
            raise IdempotencyConflict(
                f"out_request_no {row['out_request_no']} was already used for another {row['kind']}")
        return disbursement_view(p, existing)

    def tx(conn: Connection) -> dict:
        r = dict(row)  # a retried transaction starts from the original row
        insert_once(conn, disbursements, r, ["merchant_id", "kind", "out_request_no"])
        try:
            set_aside(conn, r)
        except ledger.InsufficientFunds:
            raise InsufficientBalance(f"not enough available money for this {r['kind']}") from None
        return disbursement_view(p, r)

    try:
        view = p.db.write(tx)
    except Raced:
        with p.db.read() as conn:
            return replay(find_disbursement(conn, row["merchant_id"], row["kind"], row["out_request_no"])), False
    log.info(f"{row['kind']}.created", number=row["disbursement_no"], amount=row["amount"],
             account=row["account_number_masked"])
    return view, True


def replay_or_none(p: Platform, merchant_id: str, kind: str, out_request_no: str, digest: str) -> dict | None:
    with p.db.read() as conn:
        existing = find_disbursement(conn, merchant_id, kind, out_request_no)
    if existing is None:
        return None
    if existing["request_hash"] != digest:
        raise IdempotencyConflict(f"out_request_no {out_request_no} was already used for another {kind}")
    return disbursement_view(p, existing)


# --- merchant payouts ------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewPayout:
    out_request_no: str
    amount: int
    bank_account: BankAccount | None = None
    sub_merchant_id: str | None = None
    currency: str = "CNY"
    notify_url: str | None = None

    def fingerprint(self) -> str:
        account = self.bank_account
        return fingerprint(amount=self.amount, currency=self.currency, sub_merchant_id=self.sub_merchant_id,
                           bank_account=[account.bank, account.number, account.name] if account else None,
                           notify_url=self.notify_url)


def create_payout(p: Platform, merchant_id: str, app_id: str, req: NewPayout) -> tuple[dict, bool]:
    """Pay the merchant's own settled money to a bank account. Returns (payout view, created)."""
    check_urls(allow_private=p.settings.outbound_private_allowed, notify_url=req.notify_url)
    check_amount(req.amount)
    if req.currency not in CURRENCY_EXPONENT:
        raise InvalidRequest(f"unsupported currency {req.currency!r}")
    account = req.bank_account
    if req.sub_merchant_id is not None:
        # A sub-merchant's settled money, to its registered bank account unless another is named.
        with p.db.read() as conn:
            seller = find_sub_merchant(conn, merchant_id, req.sub_merchant_id)
        if account is None:
            account = sub_merchant_bank_account(p, seller)
    if account is None:
        raise InvalidRequest("bank_account is required for the merchant's own payout")
    digest = req.fingerprint()
    replayed = replay_or_none(p, merchant_id, PAYOUT, req.out_request_no, digest)
    if replayed is not None:
        return replayed, False
    row = new_row(p, PAYOUT, merchant_id=merchant_id, app_id=app_id, out_request_no=req.out_request_no,
                  amount=req.amount, currency=req.currency, account=account, notify_url=req.notify_url,
                  request_hash=digest, sub_merchant_id=req.sub_merchant_id)

    def set_aside(conn: Connection, r: dict) -> None:
        if req.sub_merchant_id is not None:
            _check_sub_merchant_may_pay_out(conn, merchant_id, req.sub_merchant_id)
        hold_id = payout.reserve(conn, payout_no=r["disbursement_no"], merchant_id=merchant_id,
                                 sub_merchant_id=req.sub_merchant_id, channel=r["channel"], currency=r["currency"],
                                 amount=r["amount"], at=r["created_at"])
        conn.execute(update(disbursements).where(_d.disbursement_no == r["disbursement_no"]).values(hold_id=hold_id))
        r["hold_id"] = hold_id

    return create_disbursement(p, row, set_aside)


def _check_sub_merchant_may_pay_out(conn: Connection, merchant_id: str, sub_merchant_id: str) -> None:
    """In the payout's transaction: a frozen or closed sub-merchant's money stays where it is."""
    status = find_sub_merchant(conn, merchant_id, sub_merchant_id)["status"]
    if status != "active":
        raise SubMerchantNotActive(f"sub-merchant is {status}: no payouts")


def get_payout(p: Platform, merchant_id: str, *, payout_no: str | None = None,
               out_request_no: str | None = None) -> dict:
    return get_disbursement(p, merchant_id, PAYOUT, number=payout_no, out_request_no=out_request_no,
                            not_found=PayoutNotFound)


def merchant_balance(p: Platform, merchant_id: str, currency: str = "CNY") -> dict:
    """The merchant's own money: `available` of its pending-settlement and settled accounts (a
    payout in flight has already left `settled`)."""
    with p.db.read() as conn:
        figures = {}
        for name, key in (("merchant_pending_settlement", "pending_settlement"), ("merchant_settled", "settled")):
            account = chart.lookup(conn, name, merchant_id, currency)
            figures[key] = ledger.balance(conn, account.account_id).available if account else 0
    return {"currency": currency, "balances": figures}


# --- the executor's side ---------------------------------------------------------------------------

def disbursement_account_number(p: Platform, d) -> str:
    """The full account number to pay (the executor's call to the channel; nothing else opens it)."""
    return open_column(p.sealer(), "disbursements", "account_number_sealed", d["disbursement_no"],
                       d["account_number_sealed"])


def retry_delay_s(p: Platform, attempts: int) -> float:
    """Growing intervals after the k-th call: base, 2x base, 4x base, ... capped."""
    base = max(p.settings.active_query_after_s, 0.05)
    return min(base * 2 ** min(max(attempts - 1, 0), 20), max(base, p.settings.active_query_interval_max_s))


def _finish(conn: Connection, p: Platform, d, outcome: Outcome, result: PayoutResult, now: datetime) -> str:
    event = "succeed" if outcome == Outcome.SUCCEEDED else "fail"
    new_status = DISBURSEMENT_STATES.next(d["status"], event)
    fail_reason = None if event == "succeed" else (result.error or "refused by the bank")[:256]
    done = conn.execute(update(disbursements).where(
        _d.disbursement_no == d["disbursement_no"], _d.status.in_(DISBURSEMENT_STATES.sources(event))).values(
        status=new_status, finished_at=now, updated_at=now, next_attempt_at=None, fail_reason=fail_reason,
        channel_payout_no=result.channel_payout_no or d["channel_payout_no"], last_error=None)).rowcount
    require(done == 1, "the row is locked and processing")
    no, amount, currency = d["disbursement_no"], d["amount"], d["currency"]
    if d["kind"] == WITHDRAWAL:
        if event == "succeed":
            withdraw.pay_out(conn, withdrawal_no=no, member_id=d["member_id"], channel=d["channel"],
                             currency=currency, amount=amount, at=now)
        else:
            withdraw.unfreeze(conn, withdrawal_no=no, member_id=d["member_id"], currency=currency, amount=amount,
                              at=now)
    elif event == "succeed":
        payout.paid(conn, d["hold_id"], payout_no=no, at=now)
    else:
        payout.refused(conn, d["hold_id"], at=now)
    final = dict(d, status=new_status, finished_at=now, updated_at=now, fail_reason=fail_reason)
    notifications.enqueue(conn, now=now, merchant_id=d["merchant_id"], app_id=d["app_id"],
                          type=f"{d['kind']}.{new_status}", subject_id=no, data=disbursement_view(p, final),
                          notify_url=d["notify_url"], tz=p.settings.tz)
    return new_status


def apply_payout_result(p: Platform, disbursement_no: str, result: PayoutResult, *, claim: int | None = None) -> str:
    """Record one channel answer about a withdrawal or payout (idempotent: a final record ignores
    late answers). `claim` is the executor's claim number (`attempts` it set): a non-final answer
    from a claim that is no longer the latest changes nothing. Returns what it did."""
    now = p.clock.now()

    def tx(conn: Connection) -> str:
        d = conn.execute(select(disbursements).where(_d.disbursement_no == disbursement_no).with_for_update()
                         ).mappings().first()
        if d is None:
            return "unknown"
        if d["status"] != PROCESSING:
            return "ignored"  # already final: a late or repeated answer
        if result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            return _finish(conn, p, d, result.outcome, result, now)
        if claim is not None and d["attempts"] != claim:
            return "stale"
        error = f"{result.outcome}: {result.error or ''}"[:512]
        if d["attempts"] >= PAYOUT_TRIES_MAX:
            conn.execute(update(disbursements).where(
                _d.disbursement_no == disbursement_no, _d.status.in_(DISBURSEMENT_STATES.sources("park"))).values(
                next_attempt_at=None, parked_at=now, last_error=error, updated_at=now))
            raise_alert(conn, now=now, kind="payout_unknown", subject_type=d["kind"], subject_id=disbursement_no,
                        message=f"{d['kind']} {disbursement_no} of {d['amount']} {d['currency']} to "
                                f"{d['account_number_masked']}: the channel has not confirmed it after "
                                f"{d['attempts']} tries; check with the bank and settle it by hand",
                        details={"merchant_id": d["merchant_id"], "last_error": error})
            return "parked"
        delay = retry_delay_s(p, d["attempts"])
        conn.execute(update(disbursements).where(
            _d.disbursement_no == disbursement_no, _d.status.in_(DISBURSEMENT_STATES.sources("retry"))).values(
            next_attempt_at=now + timedelta(seconds=delay), last_error=error, updated_at=now))
        return "retry"

    effect = p.db.write(tx)
    log.info("payout.channel_result", number=disbursement_no, outcome=str(result.outcome), effect=effect,
             error=result.error)
    return effect
