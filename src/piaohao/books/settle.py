"""Settle: one seller's batch of orders moves from pending to settled money, net of fees, with
subsidies added and splits paid to their receivers.

    seller pending_settlement (what the orders took in)      debit
    platform_marketing_expense (the batch's subsidies)       debit
    seller settled (its share)                               credit
    platform_fee_income (the fees)                           credit
    receiver_settled, per split receiver                     credit
    key ("settlement_batch", batch_no, "settle"): one entry per batch

`verify_batch_entry` reads the entry back and compares it, account by account, with what the
batch computed (the pair check of a flow that writes money twice: details and ledger).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.domain.splits import PLATFORM_RECEIVER
from piaohao.kernel.errors import SettlementVerificationFailed
from piaohao.ledger import write as ledger

__all__ = ["batch_key", "post_batch", "receiver_accounts", "verify_batch_entry"]


def batch_key(batch_no: str) -> tuple[str, str, str]:
    return ("settlement_batch", batch_no, "settle")


def receiver_accounts(conn: Connection, merchant_id: str, receiver_ids: set[str], currency: str, *,
                      at: datetime) -> dict[str, str]:
    """receiver_id -> settled account id, created in bulk where missing; "platform" is the
    merchant's own settled account (its commission)."""
    spec = chart.STANDARD["receiver_settled"]
    out = ledger.get_or_create_accounts(conn, spec.owner_type, receiver_ids - {PLATFORM_RECEIVER}, spec.purpose,
                                        currency, normal_side=spec.normal_side, constraint=spec.constraint, at=at)
    if PLATFORM_RECEIVER in receiver_ids:
        out[PLATFORM_RECEIVER] = chart.merchant_settled(conn, merchant_id, currency).account_id
    return out


def post_batch(conn: Connection, *, batch_no: str, seller_type: str, seller_id: str, currency: str,
               pending_out: int, subsidy: int, seller_amount: int, fee: int, to_receiver: dict[str, int],
               at: datetime) -> dict[str, int]:
    """The batch's entry; returns the expected signed amount per account (debit > 0)."""
    want: dict[str, int] = defaultdict(int)
    want[chart.seller_pending(conn, seller_type, seller_id, currency).account_id] += pending_out
    if subsidy:
        want[chart.platform_marketing_expense(conn, currency).account_id] += subsidy
    want[chart.seller_settled(conn, seller_type, seller_id, currency).account_id] -= seller_amount
    if fee:
        want[chart.platform_fee_income(conn, currency).account_id] -= fee
    for account_id, amount in to_receiver.items():
        want[account_id] -= amount
    want = {a: x for a, x in want.items() if x}
    if want:
        ledger.post_entry(conn, batch_key(batch_no),
                          [ledger.debit(a, x) if x > 0 else ledger.credit(a, -x) for a, x in sorted(want.items())],
                          description=f"settlement batch {batch_no} of {seller_type} {seller_id}", at=at)
    return want


def verify_batch_entry(conn: Connection, batch_no: str, want: dict[str, int]) -> None:
    got = ledger.entry_movements(conn, batch_key(batch_no))
    if got != want:
        raise SettlementVerificationFailed(f"batch {batch_no}: the ledger says {got}, the batch {want}")


def batch_debits_total(conn: Connection, batch_no: str) -> int:
    """What the batch's entry moved in (the sum of its debits), for the batch's verification."""
    return sum(x for x in ledger.entry_movements(conn, batch_key(batch_no)).values() if x > 0)
