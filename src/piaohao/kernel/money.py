"""Money is an integer of minor units plus an ISO 4217 currency. This is the only place it is computed."""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal

from piaohao.kernel.invariants import require

AMOUNT_MAX = 10**15
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Currencies we accept, with their minor-unit exponent (only used for display and channel conversion).
CURRENCY_EXPONENT = {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "JPY": 0, "GBP": 2, "SGD": 2}


def is_valid_amount(value: object, *, allow_zero: bool = True) -> bool:
    """True for a real int (not bool) between 0 (or 1) and AMOUNT_MAX."""
    if type(value) is not int:
        return False
    return (0 if allow_zero else 1) <= value <= AMOUNT_MAX


def muldiv(a: int, b: int, c: int, rounding: str = "floor") -> int:
    """a × b / c for non-negative integers, rounded by the named rule, exactly (Python's integers
    do not overflow; `db.exact` is the same arithmetic in SQL). half_up: a half rounds up."""
    if a < 0 or b < 0 or c <= 0:
        raise ValueError("muldiv takes a, b >= 0 and c > 0")
    if rounding == "floor":
        return a * b // c
    if rounding == "ceil":
        return -(-(a * b) // c)
    if rounding == "half_up":
        return (2 * a * b + c) // (2 * c)
    raise ValueError(f"muldiv: unknown rounding {rounding!r}")


def allocate(total_minor: int, weights: list[int] | list[Decimal]) -> list[int]:
    """Split `total_minor` in proportion to `weights` by the largest-remainder rule.

    The parts always sum exactly to the total and each part is within one minor unit of its exact
    share. Ties in the remainders go to the earlier weight, so the result is deterministic.
    Integer weights are divided exactly (a part is total × weight // sum, its remainder
    total × weight % sum): `clearing.settle` computes the same in SQL and must agree to the unit.
    """
    if total_minor < 0:
        raise ValueError("allocate: total must not be negative")
    if not weights:
        raise ValueError("allocate: no weights")
    if any(w < 0 for w in weights):
        raise ValueError("allocate: weights must not be negative")
    if all(type(w) is int for w in weights):
        weight_sum = sum(weights)
        if weight_sum == 0:
            raise ValueError("allocate: weights sum to zero")
        floors = [total_minor * w // weight_sum for w in weights]
        remainders = [total_minor * w % weight_sum for w in weights]
    else:
        ws = [Decimal(w) for w in weights]
        weight_sum = sum(ws)
        if weight_sum == 0:
            raise ValueError("allocate: weights sum to zero")
        exact = [Decimal(total_minor) * w / weight_sum for w in ws]
        floors = [int(e.to_integral_value(rounding=ROUND_FLOOR)) for e in exact]
        remainders = [e - f for e, f in zip(exact, floors, strict=True)]
    left = total_minor - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    require(sum(floors) == total_minor, "largest remainder must conserve the total")
    return floors


def format_major(amount_minor: int, currency: str) -> str:
    """1999 CNY -> "19.99", 500 JPY -> "500", -5 CNY -> "-0.05": exact, by integer arithmetic."""
    require(type(amount_minor) is int, "format_major takes integer minor units")
    exponent = CURRENCY_EXPONENT.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    whole, part = divmod(abs(amount_minor), 10**exponent)
    return f"{sign}{whole:,}" + (f".{part:0{exponent}d}" if exponent else "")
