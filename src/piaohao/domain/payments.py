"""Payment records (支付單): one per attempt to pay a trade through one method."""

from __future__ import annotations

from piaohao.domain.states import StateMachine

CREATED, PROCESSING, SUCCEEDED, FAILED, CLOSED = "created", "processing", "succeeded", "failed", "closed"
OPEN_STATES = (CREATED, PROCESSING)

PAYMENT_STATES = StateMachine(
    "payment",
    {
        (CREATED, "channel_accepted"): PROCESSING,
        (CREATED, "succeed"): SUCCEEDED,
        (PROCESSING, "succeed"): SUCCEEDED,
        (CREATED, "fail"): FAILED,
        (PROCESSING, "fail"): FAILED,
        (CREATED, "close"): CLOSED,
        (PROCESSING, "close"): CLOSED,
        # A channel may report success after we closed our side (the buyer paid in the gap):
        # the money is real, so the record must say so; the trade decides what happens next.
        (CLOSED, "succeed"): SUCCEEDED,
        (FAILED, "succeed"): SUCCEEDED,
    },
    final={SUCCEEDED},
)
