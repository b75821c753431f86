"""The pure refund rules: states, drawing on components, the retry policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piaohao.domain.refunds import (
    FAILED,
    PROCESSING,
    REFUND_STATES,
    SUCCEEDED,
    AllocationError,
    Component,
    RefundPolicy,
    allocate,
)
from piaohao.domain.states import IllegalTransition
from piaohao.kernel.settings import Settings


def comp(method: str, amount: int, refunded: int = 0, kind: str | None = None) -> Component:
    kind = kind or ("internal" if method in ("balance", "coins", "credit") else "channel")
    return Component("a1", method, kind, amount, refunded)


def test_states_allow_only_the_table():
    assert REFUND_STATES.next(PROCESSING, "succeed") == SUCCEEDED
    assert REFUND_STATES.next(PROCESSING, "fail") == FAILED
    assert REFUND_STATES.next(FAILED, "succeed") == SUCCEEDED  # the channel's late truth
    for state, event in ((SUCCEEDED, "fail"), (SUCCEEDED, "succeed"), (FAILED, "fail")):
        with pytest.raises(IllegalTransition):
            REFUND_STATES.next(state, event)


def test_channel_first_then_balance_credit_and_coins_last():
    parts = [comp("coins", 25), comp("credit", 15), comp("balance", 20), comp("sandbox", 40)]
    assert [(d.method, d.amount) for d in allocate(100, parts)] == [
        ("sandbox", 40), ("balance", 20), ("credit", 15), ("coins", 25)]
    assert [(d.method, d.amount) for d in allocate(50, parts)] == [("sandbox", 40), ("balance", 10)]


def test_already_refunded_parts_are_skipped_and_caps_hold():
    parts = [comp("sandbox", 70, refunded=70), comp("coins", 30, refunded=10)]
    assert [(d.method, d.amount) for d in allocate(20, parts)] == [("coins", 20)]
    with pytest.raises(AllocationError):
        allocate(21, parts)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "1"])
def test_allocation_refuses_non_positive_or_non_int_amounts(amount):
    with pytest.raises(AllocationError):
        allocate(amount, [comp("sandbox", 10)])


@given(st.lists(st.tuples(st.sampled_from(["sandbox", "balance", "credit", "coins"]),
                          st.integers(1, 10**6), st.integers(0, 10**6)), min_size=1, max_size=4,
                unique_by=lambda t: t[0]),
       st.integers(1, 4 * 10**6))
def test_allocation_never_exceeds_any_component_and_sums_exactly(spec, amount):
    parts = [comp(m, a, min(r, a)) for m, a, r in spec]
    left = sum(p.refundable for p in parts)
    if amount > left:
        with pytest.raises(AllocationError):
            allocate(amount, parts)
        return
    draws = allocate(amount, parts)
    assert sum(d.amount for d in draws) == amount
    by_method = {p.method: p for p in parts}
    assert all(0 < d.amount <= by_method[d.method].refundable for d in draws)
    # Drawing in order: every component before the last one drawn is used up.
    for d in draws[:-1]:
        assert d.amount == by_method[d.method].refundable


def test_policy_grows_and_caps_and_reads_settings():
    policy = RefundPolicy(retry_base_s=1, retry_max_s=5, tries_max=3)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 10)] == [1, 2, 4, 5, 5]
    s = Settings().with_(active_query_after_s=0.5, active_query_interval_max_s=2.0, channel_timeout_s=1.0,
                         extra={"refund_tries_max": 2})
    p = RefundPolicy.from_settings(s)
    assert (p.retry_base_s, p.retry_max_s, p.tries_max, p.lease_s) == (0.5, 2.0, 2, 7.0)
    with pytest.raises(ValueError):
        RefundPolicy.from_settings(s.with_(extra={"refund_tries_max": 0}))
