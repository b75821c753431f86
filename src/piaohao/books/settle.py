"""Settle: one seller's batch of orders moves from pending to settled money, net of fees, with
subsidies added and splits paid to their receivers.

    seller pending_settlement (what the orders took in)      debit
    platform_marketing_expense (the batch's subsidies)       debit
    seller settled (its share)                               credit
    platform_fee_income (the fees)                           credit
    receiver_settled, per split receiver                     credit
    key ("settlement_batch", batch_no, "settle"): one entry per batch

A settlement run posts the entries of many batches at once (`post_batches`: accounts resolved in
bulk, one `post_entries` call per ENTRIES_PER_POST_MAX batches), and `verify_batch_entries` reads
them all back in one query and compares them, account by account, with what each batch computed
(the pair check of a flow that writes money twice: details and ledger).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.domain.splits import PLATFORM_RECEIVER
from piaohao.kernel.errors import SettlementVerificationFailed
from piaohao.ledger import write as ledger

__all__ = ["BatchMoney", "batch_debits_total", "batch_key", "post_batches", "receiver_accounts",
           "verify_batch_entries"]

ENTRIES_PER_POST_MAX = 2000  # batches posted by one post_entries call (one SQL statement on PostgreSQL)
SOURCE_TYPE, OPERATION = "settlement_batch", "settle"


def batch_key(batch_no: str) -> tuple[str, str, str]:
    return (SOURCE_TYPE, batch_no, OPERATION)


@dataclass
class BatchMoney:
    """What one batch moves, in minor units; `to_receiver` is receiver_id -> amount."""

    batch_no: str
    merchant_id: str
    seller_type: str
    seller_id: str
    currency: str
    pending_out: int = 0
    subsidy: int = 0
    seller_amount: int = 0
    fee: int = 0
    to_receiver: dict[str, int] = field(default_factory=lambda: defaultdict(int))


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


def _seller_accounts(conn: Connection, batches: list[BatchMoney], at: datetime) -> dict[tuple, str]:
    """(name, seller_type, seller_id, currency) -> account id for every batch's seller, in bulk."""
    wanted: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for b in batches:
        wanted[(b.seller_type, b.currency, "pending")].add(b.seller_id)
        wanted[(b.seller_type, b.currency, "settled")].add(b.seller_id)
    out: dict[tuple, str] = {}
    for (seller_type, currency, which), ids in wanted.items():
        prefix = "sub_merchant" if seller_type == chart.SUB_MERCHANT else "merchant"
        spec = chart.STANDARD[f"{prefix}_{'pending_settlement' if which == 'pending' else 'settled'}"]
        found = ledger.get_or_create_accounts(conn, spec.owner_type, ids, spec.purpose, currency,
                                              normal_side=spec.normal_side, constraint=spec.constraint, at=at)
        for seller_id, account_id in found.items():
            out[(which, seller_type, seller_id, currency)] = account_id
    return out


def post_batches(conn: Connection, batches: list[BatchMoney], *, at: datetime) -> dict[str, dict[str, int]]:
    """Post one entry per batch; returns batch_no -> expected signed amount per account (debit > 0)."""
    sellers = _seller_accounts(conn, batches, at)
    receivers: dict[tuple[str, str], dict[str, str]] = {}
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for b in batches:
        wanted[(b.merchant_id, b.currency)].update(b.to_receiver)
    for (merchant_id, currency), ids in wanted.items():
        receivers[(merchant_id, currency)] = receiver_accounts(conn, merchant_id, ids, currency, at=at)
    platform: dict[tuple[str, str], str] = {}

    def platform_account(name: str, currency: str) -> str:  # created only when a batch needs it
        if (name, currency) not in platform:
            platform[(name, currency)] = chart.standard_account(conn, name, chart.PLATFORM_OWNER_ID,
                                                                currency).account_id
        return platform[(name, currency)]

    wants: dict[str, dict[str, int]] = {}
    entries = []
    for b in batches:
        want: dict[str, int] = defaultdict(int)
        want[sellers[("pending", b.seller_type, b.seller_id, b.currency)]] += b.pending_out
        if b.subsidy:
            want[platform_account("platform_marketing_expense", b.currency)] += b.subsidy
        want[sellers[("settled", b.seller_type, b.seller_id, b.currency)]] -= b.seller_amount
        if b.fee:
            want[platform_account("platform_fee_income", b.currency)] -= b.fee
        accounts = receivers[(b.merchant_id, b.currency)]
        for receiver_id, amount in b.to_receiver.items():
            want[accounts[receiver_id]] -= amount
        want = {a: x for a, x in want.items() if x}
        wants[b.batch_no] = want
        if want:
            entries.append(ledger.NewEntry(
                ledger.EntryKey(*batch_key(b.batch_no)),
                [ledger.debit(a, x) if x > 0 else ledger.credit(a, -x) for a, x in sorted(want.items())],
                description=f"settlement batch {b.batch_no} of {b.seller_type} {b.seller_id}"))
    for i in range(0, len(entries), ENTRIES_PER_POST_MAX):
        ledger.post_entries(conn, entries[i:i + ENTRIES_PER_POST_MAX], at=at)
    return wants


def verify_batch_entries(conn: Connection, wants: dict[str, dict[str, int]]) -> None:
    """Each batch's entry, read back, moves exactly what the batch computed."""
    got = ledger.operation_movements(conn, SOURCE_TYPE, OPERATION, list(wants))
    for batch_no, want in wants.items():
        if got.get(batch_no, {}) != want:
            raise SettlementVerificationFailed(f"batch {batch_no}: the ledger says {got.get(batch_no, {})}, "
                                               f"the batch {want}")


def batch_debits_total(conn: Connection, batch_no: str) -> int:
    """What the batch's entry moved in (the sum of its debits), for the batch's verification."""
    return sum(x for x in ledger.entry_movements(conn, batch_key(batch_no)).values() if x > 0)
