"""How a buyer splits one trade over several methods (coins + balance, coins + channel, ...).

Pure rules, no I/O: every part but the last names a positive amount, the last takes the rest;
each method at most once; at most one channel method; the parts sum exactly to the trade's
amount; coins pay at most the merchant's cap of the trade's amount.
"""

from __future__ import annotations

from dataclasses import dataclass

from piaohao.kernel.errors import CoinsCapExceeded, InvalidComponents
from piaohao.kernel.invariants import require

INTERNAL_METHODS = ("balance", "coins", "credit")
COMPONENTS_MAX = 4


@dataclass(frozen=True)
class Part:
    method: str
    amount: int

    @property
    def internal(self) -> bool:
        return self.method in INTERNAL_METHODS


def compose(trade_amount: int, parts: list[tuple[str, int | None]], channel_methods: set[str]) -> list[Part]:
    """Turn the buyer's request into exact parts, or raise InvalidComponents."""
    if not parts or len(parts) > COMPONENTS_MAX:
        raise InvalidComponents(f"give 1 to {COMPONENTS_MAX} components")
    methods = [m for m, _ in parts]
    if len(set(methods)) != len(methods):
        raise InvalidComponents("each method may appear only once")
    unknown = [m for m in methods if m not in INTERNAL_METHODS and m not in channel_methods]
    if unknown:
        raise InvalidComponents(f"unknown or unavailable method {unknown[0]!r}")
    if sum(1 for m in methods if m in channel_methods) > 1:
        raise InvalidComponents("at most one channel method")
    out: list[Part] = []
    for method, amount in parts[:-1]:
        if type(amount) is not int or amount <= 0:
            raise InvalidComponents(f"{method}: every part but the last needs a positive integer amount")
        out.append(Part(method, amount))
    rest = trade_amount - sum(p.amount for p in out)
    last_method, last_amount = parts[-1]
    if last_amount is not None and (type(last_amount) is not int or last_amount != rest):
        raise InvalidComponents("the last part takes the rest: its amount, if given, must be exactly that")
    if rest <= 0:
        raise InvalidComponents("the parts exceed the trade's amount")
    out.append(Part(last_method, rest))
    require(sum(p.amount for p in out) == trade_amount, "composed parts must sum to the trade's amount")
    return out


def coins_cap(trade_amount: int, cap_pct: int) -> int:
    """The most coins may pay of a trade (rounded down: never more than the cap)."""
    return trade_amount * cap_pct // 100


def check_coins_cap(parts: list[Part], trade_amount: int, cap_pct: int) -> None:
    coins = sum(p.amount for p in parts if p.method == "coins")
    if coins > coins_cap(trade_amount, cap_pct):
        raise CoinsCapExceeded(f"coins may pay at most {cap_pct}% of the trade ({coins_cap(trade_amount, cap_pct)})")
