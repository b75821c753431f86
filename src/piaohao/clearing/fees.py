"""Billing (計費): match a record to a fee rule, then compute the fee by the rule's explicit rounding.

A rule: criteria (merchant, method, business type, currency; NULL matches anything), an explicit
`priority` (lowest wins; ties go to the rule with more criteria set, then to the rule id), a rate
in basis points (a Decimal), a fixed part, a minimum and a maximum, a named rounding rule and who
bears the fee (the seller, deducted from its settled amount and credited to platform fee income,
or the platform, recorded only). A record that matches no rule raises NoFeeRule: the seeded
catch-all rule "default" (0 bp, charged to the seller: nothing) is what makes the default free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import Connection, insert, select

from piaohao.db.schema_clearing import fee_rules
from piaohao.kernel.errors import InvalidRequest, NoFeeRule
from piaohao.kernel.ids import new_id
from piaohao.kernel.money import muldiv

ROUNDING = ("half_up", "floor", "ceil")
BEARERS = ("seller", "platform")
BP = Decimal(10000)


@dataclass(frozen=True)
class FeeRule:
    rule_id: str
    priority: int
    rate_bp: Decimal
    fixed_amount: int = 0
    min_fee: int = 0
    max_fee: int | None = None
    rounding: str = "half_up"
    bearer: str = "seller"
    merchant_id: str | None = None
    method: str | None = None
    business_type: str | None = None
    currency: str | None = None

    def matches(self, *, merchant_id: str, method: str, business_type: str, currency: str) -> bool:
        return all(want is None or want == got for want, got in (
            (self.merchant_id, merchant_id), (self.method, method), (self.business_type, business_type),
            (self.currency, currency)))

    @property
    def specificity(self) -> int:
        return sum(x is not None for x in (self.merchant_id, self.method, self.business_type, self.currency))

    @property
    def rate_ratio(self) -> tuple[int, int]:
        """The rate as an exact fraction of one: (numerator, denominator), the basis points' 10,000
        folded into the denominator. Exact integers where a Decimal product of a large base and a
        long rate would round at the context's 28 digits; settlement computes the same in SQL."""
        num, den = self.rate_bp.as_integer_ratio()
        return num, den * 10000

    def fee(self, base: int) -> int:
        """The fee on `base` minor units: base × rate / 10000 rounded by the named rule, plus the
        fixed part, clamped to [min, max]; never negative and never more than the base."""
        if base <= 0:
            return 0
        num, den = self.rate_ratio
        variable = muldiv(base, num, den, self.rounding)
        fee = max(variable + self.fixed_amount, self.min_fee)
        if self.max_fee is not None:
            fee = min(fee, self.max_fee)
        return max(0, min(fee, base))


def parse_rate(raw) -> Decimal:
    try:
        rate = Decimal(str(raw))
    except InvalidOperation:
        raise InvalidRequest(f"rate_bp must be a decimal number of basis points, not {raw!r}") from None
    if not rate.is_finite() or rate < 0 or rate > BP:
        raise InvalidRequest("rate_bp must be between 0 and 10000")
    return rate


def rule_of(row) -> FeeRule:
    return FeeRule(rule_id=row["rule_id"], priority=row["priority"], rate_bp=Decimal(row["rate_bp"]),
                   fixed_amount=row["fixed_amount"], min_fee=row["min_fee"], max_fee=row["max_fee"],
                   rounding=row["rounding"], bearer=row["bearer"], merchant_id=row["merchant_id"],
                   method=row["method"], business_type=row["business_type"], currency=row["currency"])


def load_rules(conn: Connection) -> list[FeeRule]:
    """Active rules, in the order they are tried."""
    rows = conn.execute(select(fee_rules).where(fee_rules.c.active.is_(True))).mappings().all()
    return sorted((rule_of(r) for r in rows), key=lambda r: (r.priority, -r.specificity, r.rule_id))


def match(rules: list[FeeRule], *, merchant_id: str, method: str, business_type: str, currency: str) -> FeeRule:
    for rule in rules:
        if rule.matches(merchant_id=merchant_id, method=method, business_type=business_type, currency=currency):
            return rule
    raise NoFeeRule(f"no fee rule matches merchant {merchant_id}, method {method}, {business_type}, {currency}")


def add_rule(conn: Connection, now: datetime, *, priority: int, rate_bp, fixed_amount: int = 0, min_fee: int = 0,
             max_fee: int | None = None, rounding: str = "half_up", bearer: str = "seller",
             merchant_id: str | None = None, method: str | None = None, business_type: str | None = None,
             currency: str | None = None, rule_id: str | None = None) -> FeeRule:
    rate = parse_rate(rate_bp)
    if rounding not in ROUNDING:
        raise InvalidRequest(f"rounding must be one of {', '.join(ROUNDING)}")
    if bearer not in BEARERS:
        raise InvalidRequest("bearer must be seller or platform")
    if fixed_amount < 0 or min_fee < 0 or (max_fee is not None and max_fee < min_fee):
        raise InvalidRequest("fixed_amount and min_fee must be >= 0, and max_fee >= min_fee")
    if business_type not in (None, "order", "own"):
        raise InvalidRequest("business_type must be order or own")
    row = {"rule_id": rule_id or new_id("fee"), "merchant_id": merchant_id, "method": method,
           "business_type": business_type, "currency": currency, "priority": priority, "rate_bp": str(rate),
           "fixed_amount": fixed_amount, "min_fee": min_fee, "max_fee": max_fee, "rounding": rounding,
           "bearer": bearer, "active": True, "created_at": now}
    conn.execute(insert(fee_rules).values(**row))
    return rule_of(row)
