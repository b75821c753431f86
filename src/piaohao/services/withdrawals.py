"""Withdrawals (提): a member's available balance paid out to their bank account, in two phases.

Phase one, when created (one transaction with the record): a posted ledger entry moves the
amount from `member_balance` to `member_frozen` (debit balance, credit frozen), so the member's
`accounts.balance` shows it as `frozen` at once and it cannot be spent twice; a balance that is
not enough makes the ledger refuse it (`409 INSUFFICIENT_BALANCE`, nothing written).
Phase two is the payout executor's (`piaohao.workers.payouts`, via
`piaohao.services.payouts.apply_payout_result`): paid -> frozen to channel clearing (the money
leaves the books), `succeeded`; refused -> frozen back to balance, `failed`; unknown -> asked
again, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from piaohao.books import withdraw
from piaohao.domain.business import WITHDRAWAL
from piaohao.kernel.errors import WithdrawalNotFound
from piaohao.kernel.outbound import check_urls
from piaohao.platform import Platform
from piaohao.services.members import check_amount, fingerprint, load_member
from piaohao.services.passwords import verify_payment_password
from piaohao.services.payouts import BankAccount, create_disbursement, get_disbursement, new_row, replay_or_none


@dataclass(frozen=True)
class NewWithdrawal:
    out_request_no: str
    member_id: str
    amount: int
    bank_account: BankAccount
    payment_password: str
    notify_url: str | None = None

    def fingerprint(self) -> str:  # the password is not part of "the same request"
        a = self.bank_account
        return fingerprint(member_id=self.member_id, amount=self.amount, bank_account=[a.bank, a.number, a.name],
                           notify_url=self.notify_url)


def create_withdrawal(p: Platform, merchant_id: str, app_id: str, req: NewWithdrawal) -> tuple[dict, bool]:
    """Returns (withdrawal view, created). Raises MemberNotFound, InvalidPaymentPassword /
    PaymentPasswordLocked, InsufficientBalance, IdempotencyConflict."""
    check_urls(allow_private=p.settings.outbound_private_allowed, notify_url=req.notify_url)
    check_amount(req.amount)
    digest = req.fingerprint()
    replayed = replay_or_none(p, merchant_id, WITHDRAWAL, req.out_request_no, digest)
    if replayed is not None:
        return replayed, False
    with p.db.read() as conn:
        member = load_member(conn, merchant_id, req.member_id)
    verify_payment_password(p, req.member_id, req.payment_password, p.clock.now())
    row = new_row(p, WITHDRAWAL, merchant_id=merchant_id, app_id=app_id, out_request_no=req.out_request_no,
                  amount=req.amount, currency=member["currency"], account=req.bank_account,
                  notify_url=req.notify_url, request_hash=digest, member_id=req.member_id)

    def freeze(conn: Connection, r: dict) -> None:
        withdraw.freeze(conn, withdrawal_no=r["disbursement_no"], member_id=r["member_id"], currency=r["currency"],
                        amount=r["amount"], at=r["created_at"])

    return create_disbursement(p, row, freeze)


def get_withdrawal(p: Platform, merchant_id: str, *, withdrawal_no: str | None = None,
                   out_request_no: str | None = None) -> dict:
    return get_disbursement(p, merchant_id, WITHDRAWAL, number=withdrawal_no, out_request_no=out_request_no,
                            not_found=WithdrawalNotFound)
