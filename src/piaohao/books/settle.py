"""Settle: one seller's batch of orders moves from pending to settled money, net of fees, with
subsidies added and splits paid to their receivers.

    seller pending_settlement (what the orders took in)      debit
    platform_marketing_expense (the batch's subsidies)       debit
    seller settled (its share)                               credit
    platform_fee_income (the fees)                           credit
    receiver_settled, per split receiver                     credit
    key ("settlement_batch", batch_no, "settle"): one entry per batch

A settlement run opens the accounts first, in bulk and in a transaction of their own
(`open_accounts`), then posts the entries of many batches at once (`post_batches`: the accounts
taken from what was opened, one `post_entries` call per ENTRIES_PER_POST_MAX batches), and
`verify_batch_entries` reads
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

__all__ = ["AccountNeeds", "BatchMoney", "SettlementAccounts", "batch_debits_total", "batch_key", "needs_of",
           "open_accounts", "post_batches", "verify_batch_entries"]

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


@dataclass
class SettlementAccounts:
    """The ledger accounts a settlement moves money through, by role, each resolved to its id.

    `open_accounts` fills it in a short transaction of its own, before the transaction that
    credits them (an account is not money: an empty account left behind by a crediting
    transaction that rolled back is harmless, and the next run finds it). PostgreSQL re-checks a
    foreign key on every UPDATE of a row inserted by the same transaction: balance rows created
    in the crediting transaction cost seconds per page of checks (docs/speed.md, Settlement).
    Account ids never change, so the crediting transaction takes them from here."""

    sellers: dict[tuple[str, str, str, str], str] = field(default_factory=dict)  # (which, type, id, currency)
    receivers: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (merchant_id, currency, receiver)
    platform: dict[tuple[str, str], str] = field(default_factory=dict)  # (chart name, currency)


@dataclass
class AccountNeeds:
    """Which accounts a settlement will use: sellers as (seller_type, seller_id, currency) (both
    their pending and settled accounts), receivers as (merchant_id, currency, receiver_id) ("platform"
    is the merchant's own settled account, its commission), platform accounts as (chart name, currency)."""

    sellers: set[tuple[str, str, str]] = field(default_factory=set)
    receivers: set[tuple[str, str, str]] = field(default_factory=set)
    platform: set[tuple[str, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.sellers or self.receivers or self.platform)


FEE_INCOME, MARKETING = "platform_fee_income", "platform_marketing_expense"


def _seller_spec(seller_type: str, which: str) -> chart.AccountSpec:
    prefix = "sub_merchant" if seller_type == chart.SUB_MERCHANT else "merchant"
    return chart.STANDARD[f"{prefix}_{'pending_settlement' if which == 'pending' else 'settled'}"]


def open_accounts(conn: Connection, needs: AccountNeeds, *, at: datetime,
                  known: SettlementAccounts | None = None) -> SettlementAccounts:
    """Every account of `needs` (those already in `known` are taken from it, not read), created
    where missing: one bulk get-or-create per kind of account (a few statements for thousands of
    receivers), the platform's accounts one by one (one per currency). Call it in a transaction
    of its own before the one that credits the accounts; `post_batches` calls it again for what
    that did not cover (a page that changed in between), which then reads nothing."""
    known = known or SettlementAccounts()
    out = SettlementAccounts(dict(known.sellers), dict(known.receivers), dict(known.platform))
    wanted: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (which, seller_type, currency) -> ids
    for seller_type, seller_id, currency in needs.sellers:
        for which in ("pending", "settled"):
            if (which, seller_type, seller_id, currency) not in out.sellers:
                wanted[(which, seller_type, currency)].add(seller_id)
    receivers: dict[str, set[str]] = defaultdict(set)  # currency -> receiver ids
    for merchant_id, currency, receiver_id in needs.receivers:
        if (merchant_id, currency, receiver_id) in out.receivers:
            continue
        if receiver_id == PLATFORM_RECEIVER:
            if ("settled", chart.MERCHANT, merchant_id, currency) not in out.sellers:
                wanted[("settled", chart.MERCHANT, currency)].add(merchant_id)
        else:
            receivers[currency].add(receiver_id)
    for (which, seller_type, currency), ids in sorted(wanted.items()):
        spec = _seller_spec(seller_type, which)
        found = ledger.get_or_create_accounts(conn, spec.owner_type, ids, spec.purpose, currency,
                                              normal_side=spec.normal_side, constraint=spec.constraint, at=at)
        out.sellers.update({(which, seller_type, seller_id, currency): a for seller_id, a in found.items()})
    spec = chart.STANDARD["receiver_settled"]
    by_receiver: dict[tuple[str, str], str] = {}
    for currency, ids in sorted(receivers.items()):
        found = ledger.get_or_create_accounts(conn, spec.owner_type, ids, spec.purpose, currency,
                                              normal_side=spec.normal_side, constraint=spec.constraint, at=at)
        by_receiver.update({(receiver_id, currency): a for receiver_id, a in found.items()})
    for merchant_id, currency, receiver_id in needs.receivers:
        if (merchant_id, currency, receiver_id) not in out.receivers:
            out.receivers[(merchant_id, currency, receiver_id)] = (
                out.sellers[("settled", chart.MERCHANT, merchant_id, currency)] if receiver_id == PLATFORM_RECEIVER
                else by_receiver[(receiver_id, currency)])
    for name, currency in sorted(needs.platform - out.platform.keys()):
        out.platform[(name, currency)] = chart.standard_account(conn, name, chart.PLATFORM_OWNER_ID, currency,
                                                                at=at).account_id
    return out


def needs_of(batches: list[BatchMoney]) -> AccountNeeds:
    """The accounts these batches' entries move money through."""
    needs = AccountNeeds()
    for b in batches:
        needs.sellers.add((b.seller_type, b.seller_id, b.currency))
        needs.receivers.update((b.merchant_id, b.currency, receiver_id) for receiver_id in b.to_receiver)
        if b.subsidy:
            needs.platform.add((MARKETING, b.currency))
        if b.fee:
            needs.platform.add((FEE_INCOME, b.currency))
    return needs


def post_batches(conn: Connection, batches: list[BatchMoney], *, at: datetime,
                 accounts: SettlementAccounts | None = None) -> dict[str, dict[str, int]]:
    """Post one entry per batch; returns batch_no -> expected signed amount per account (debit > 0).

    `accounts`: opened ahead by `open_accounts` in their own transaction; any the batches need
    beyond them are resolved (created if missing) here."""
    acc = open_accounts(conn, needs_of(batches), at=at, known=accounts)
    wants: dict[str, dict[str, int]] = {}
    entries = []
    for b in batches:
        want: dict[str, int] = defaultdict(int)
        want[acc.sellers[("pending", b.seller_type, b.seller_id, b.currency)]] += b.pending_out
        if b.subsidy:
            want[acc.platform[(MARKETING, b.currency)]] += b.subsidy
        want[acc.sellers[("settled", b.seller_type, b.seller_id, b.currency)]] -= b.seller_amount
        if b.fee:
            want[acc.platform[(FEE_INCOME, b.currency)]] -= b.fee
        for receiver_id, amount in b.to_receiver.items():
            want[acc.receivers[(b.merchant_id, b.currency, receiver_id)]] -= amount
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
