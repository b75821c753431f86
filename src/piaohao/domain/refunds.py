"""Refunds (退款單): states, which funding components a refund draws on, and the retry policy.

Pure rules, no I/O. `services/refunds.py` applies them inside transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

from piaohao.domain.states import StateMachine
from piaohao.kernel.invariants import require

PROCESSING, SUCCEEDED, FAILED = "processing", "succeeded", "failed"
FINAL_STATES = (SUCCEEDED, FAILED)

# "merchant": asked for by the merchant through /v1/refunds, counted against the trade.
# "stray": the platform's own refund of a payment that no trade could take (paid after close,
# a second payment of a paid trade); never counted against the trade, never shown to the merchant.
KIND_MERCHANT, KIND_STRAY = "merchant", "stray"

REFUND_STATES = StateMachine(
    "refund",
    {
        (PROCESSING, "succeed"): SUCCEEDED,
        (PROCESSING, "fail"): FAILED,
        # The channel paid the refund out after we had given up on it (its answer was late): the
        # money really left, so the record must say so; see services.refund_results._late_success.
        (FAILED, "succeed"): SUCCEEDED,
    },
    final={SUCCEEDED},
)

# The order in which a partial refund draws on a trade's funding components: the channel part
# first (the buyer's real money goes back where it came from), then balance, then credit, and
# coins last (coins are marketing money: returned only once everything else has been).
CHANNEL_RANK = 0
INTERNAL_RANK = {"balance": 1, "credit": 2, "coins": 9}
UNKNOWN_INTERNAL_RANK = 5  # a future internal method: after credit, before coins


def component_rank(kind: str, method: str) -> int:
    if kind == "channel":
        return CHANNEL_RANK
    return INTERNAL_RANK.get(method, UNKNOWN_INTERNAL_RANK)


@dataclass(frozen=True)
class Component:
    """What a trade's funding component can still give back."""

    attempt: str
    method: str
    kind: str  # "channel" | "internal"
    amount: int
    refunded_amount: int

    @property
    def refundable(self) -> int:
        return self.amount - self.refunded_amount


@dataclass(frozen=True)
class Draw:
    attempt: str
    method: str
    kind: str
    amount: int


class AllocationError(ValueError):
    """The components cannot cover the amount (a broken invariant: the trade said they could)."""


def allocate(amount: int, components: list[Component]) -> list[Draw]:
    """Draw `amount` from `components` in the fixed order, never more than a component has left.

    Returns only the components drawn on (positive amounts), in drawing order.
    """
    if type(amount) is not int or amount <= 0:
        raise AllocationError("a refund amount is a positive int")
    ordered = sorted(components, key=lambda c: (component_rank(c.kind, c.method), c.method, c.attempt))
    left = amount
    draws: list[Draw] = []
    for c in ordered:
        if left == 0:
            break
        if c.refundable < 0 or c.refunded_amount < 0:
            raise AllocationError(f"component {c.method} is over-refunded")
        take = min(left, c.refundable)
        if take > 0:
            draws.append(Draw(c.attempt, c.method, c.kind, take))
            left -= take
    if left:
        raise AllocationError(f"components cover {amount - left} of {amount}")
    require(sum(d.amount for d in draws) == amount, "refund draws must sum to the refund's amount")
    return draws


@dataclass(frozen=True)
class RefundPolicy:
    """How the platform retries a refund at the channel.

    - `retry_base_s`, `retry_max_s`: the wait after the n-th try is base * 2^(n-1), capped at max.
    - `tries_max`: how many times the channel is *asked to refund*. Before every try but the first
      the channel is *queried*; only when it then says it has no such refund after the last try
      is the refund given up (`failed`). A channel that keeps answering "processing" or nothing
      at all is never guessed at: the refund stays `processing`, is parked for an operator, and
      queried at `retry_max_s` until the channel says.
    - `lease_s`: how long one worker owns a refund while it talks to the channel.
    """

    retry_base_s: float = 30.0
    retry_max_s: float = 600.0
    tries_max: int = 8
    lease_s: float = 15.0

    def delay_s(self, tries: int) -> float:
        base = max(self.retry_base_s, 0.05)
        return min(base * 2 ** min(max(tries - 1, 0), 20), max(base, self.retry_max_s))

    @classmethod
    def from_settings(cls, settings) -> RefundPolicy:
        """Defaults from the active-query settings (asking a channel about something it has not
        confirmed is the same job for payments and refunds); `settings.extra` may override with
        `refund_retry_base_s`, `refund_retry_max_s`, `refund_tries_max`."""
        extra = settings.extra or {}
        tries = int(extra.get("refund_tries_max", cls.tries_max))
        if tries < 1:
            raise ValueError("refund_tries_max must be at least 1")
        return cls(retry_base_s=float(extra.get("refund_retry_base_s", settings.active_query_after_s)),
                   retry_max_s=float(extra.get("refund_retry_max_s", settings.active_query_interval_max_s)),
                   tries_max=tries, lease_s=2 * settings.channel_timeout_s + 5.0)
