"""Split rules (分賬), pure: validating a trade's orders and allocating money between a seller and
its split receivers. Every allocation is by the largest remainder (`piaohao.kernel.money.allocate`), so
the parts always sum exactly to the money that moves and none is negative."""

from __future__ import annotations

from dataclasses import dataclass, field

from piaohao.kernel.errors import InvalidOrders, SplitRatioExceeded
from piaohao.kernel.invariants import require
from piaohao.kernel.money import AMOUNT_MAX, allocate

PLATFORM_RECEIVER = "platform"  # a split to the merchant itself (its commission)
ORDERS_MAX = 100
SPLITS_MAX = 50


@dataclass(frozen=True)
class Split:
    receiver_id: str
    amount: int


@dataclass(frozen=True)
class Order:
    out_order_no: str
    sub_merchant_id: str
    amount: int
    subsidy_amount: int = 0
    splits: tuple[Split, ...] = field(default_factory=tuple)

    @property
    def split_amount(self) -> int:
        return sum(s.amount for s in self.splits)


def _int(v) -> bool:
    return type(v) is int and 0 <= v <= AMOUNT_MAX


def validate_orders(trade_amount: int, orders: list[Order], ratio_max_pct: int) -> None:
    """INVALID_ORDERS or SPLIT_RATIO_EXCEEDED, before anything touches the database."""
    if not orders or len(orders) > ORDERS_MAX:
        raise InvalidOrders(f"a trade carries 1-{ORDERS_MAX} orders")
    seen = set()
    for o in orders:
        if o.out_order_no in seen:
            raise InvalidOrders(f"out_order_no {o.out_order_no} appears twice")
        seen.add(o.out_order_no)
        if not _int(o.amount) or o.amount <= 0:
            raise InvalidOrders(f"order {o.out_order_no}: amount must be a positive integer of minor units")
        if not _int(o.subsidy_amount):
            raise InvalidOrders(f"order {o.out_order_no}: subsidy_amount must be an integer >= 0")
        if len(o.splits) > SPLITS_MAX:
            raise InvalidOrders(f"order {o.out_order_no}: at most {SPLITS_MAX} splits")
        receivers = set()
        for s in o.splits:
            if not _int(s.amount) or s.amount <= 0:
                raise InvalidOrders(f"order {o.out_order_no}: every split amount must be positive")
            if s.receiver_id in receivers:
                raise InvalidOrders(f"order {o.out_order_no}: receiver {s.receiver_id} appears twice")
            receivers.add(s.receiver_id)
    if sum(o.amount for o in orders) != trade_amount:
        raise InvalidOrders(f"the orders sum to {sum(o.amount for o in orders)}, the trade is {trade_amount}")
    for o in orders:
        # Integer comparison, no rounding: splits * 100 <= amount * pct.
        if o.split_amount * 100 > o.amount * ratio_max_pct:
            raise SplitRatioExceeded(
                f"order {o.out_order_no}: splits {o.split_amount} exceed {ratio_max_pct}% of {o.amount}")


def refund_shares(amount: int, splits: list[int], refunded: int) -> list[int]:
    """How `refunded` (cumulative, of an order of `amount`) divides between the seller's own share
    (first) and each split, in proportion to what each was to receive. Sums to `refunded`."""
    if refunded == 0:
        return [0] * (1 + len(splits))
    seller = amount - sum(splits)
    weights = [seller, *splits]
    if sum(weights) == 0:
        raise ValueError("an order's weights cannot all be zero")
    return allocate(refunded, weights)


@dataclass(frozen=True)
class OrderSettlement:
    """What settling one order moves (all minor units, none negative)."""

    pending_out: int  # taken from the seller's pending settlement: amount - refunded
    subsidy: int  # paid by platform marketing expense
    seller_amount: int  # to the seller's settled account
    split_parts: tuple[int, ...]  # to each receiver, in the order's split order
    fee: int  # charged to the seller, to platform fee income
    platform_fee: int  # borne by the platform (memo)

    def check(self) -> None:
        require(min(self.pending_out, self.subsidy, self.seller_amount, self.fee, *self.split_parts, 0) >= 0,
                "no part of an order's split may be negative")
        require(self.pending_out + self.subsidy == self.seller_amount + sum(self.split_parts) + self.fee,
                "an order's split must account for every minor unit")


def settle_order(amount: int, splits: list[int], refunded: int, subsidy: int, fee_of) -> OrderSettlement:
    """Settle an order: receivers get their splits less their share of what was refunded; the
    seller gets the rest plus the subsidy, less the fee the rule charges it. `fee_of(base)` ->
    (fee, bearer); the base is what the seller sold net of refunds and splits."""
    if not 0 <= refunded <= amount:
        raise ValueError("refunded must be within the order amount")
    shares = refund_shares(amount, splits, refunded)
    parts = tuple(s - c for s, c in zip(splits, shares[1:], strict=True))
    seller_gross = amount - sum(splits) - shares[0]
    fee, bearer = fee_of(seller_gross)
    seller_fee = min(fee, seller_gross + subsidy) if bearer == "seller" else 0
    platform_fee = fee if bearer == "platform" else 0
    s = OrderSettlement(pending_out=amount - refunded, subsidy=subsidy,
                        seller_amount=seller_gross + subsidy - seller_fee, split_parts=parts, fee=seller_fee,
                        platform_fee=platform_fee)
    s.check()
    return s
