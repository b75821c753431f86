"""Agreements (協議支付 / 代扣): the mandate's state table (research part D5).

pending (the buyer has the sign page) → active (signed) | rejected (refused) | expired (never
signed in time: channels send nothing, we time it out); active → terminated (by the merchant, or
by the buyer at the channel, which may never tell us: the periodic query finds out). Only an
active agreement is debited, and never above its per-debit limit.
"""

from __future__ import annotations

from piaohao.domain.states import StateMachine

PENDING, ACTIVE, REJECTED, EXPIRED, TERMINATED = "pending", "active", "rejected", "expired", "terminated"
OPEN_STATES = (PENDING, ACTIVE)
SIGN_WINDOW_S = 24 * 3600  # a pending agreement not signed within this is expired

AGREEMENT_STATES = StateMachine(
    "agreement",
    {
        (PENDING, "sign"): ACTIVE,
        (PENDING, "reject"): REJECTED,
        (PENDING, "expire"): EXPIRED,
        (PENDING, "terminate"): TERMINATED,
        (ACTIVE, "terminate"): TERMINATED,
    },
    final={REJECTED, EXPIRED, TERMINATED},
)
