"""Bound cards (quick pay): the state table. Binding sends an SMS; the right code activates the
card, the third wrong one fails it; unbinding ends it. Only active cards pay."""

from __future__ import annotations

from piaohao.domain.states import StateMachine

PENDING, ACTIVE, FAILED, UNBOUND = "pending", "active", "failed", "unbound"
SMS_FAILURES_MAX = 3  # the third wrong code fails the card

CARD_STATES = StateMachine(
    "card",
    {
        (PENDING, "confirm"): ACTIVE,
        (PENDING, "fail"): FAILED,
        (PENDING, "unbind"): UNBOUND,
        (ACTIVE, "unbind"): UNBOUND,
    },
    final={FAILED, UNBOUND},
)
