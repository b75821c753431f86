from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piaohao.kernel.money import AMOUNT_MAX, allocate, is_valid_amount


@pytest.mark.parametrize("value,ok", [(0, True), (1, True), (AMOUNT_MAX, True), (AMOUNT_MAX + 1, False),
                                      (-1, False), (True, False), (1.0, False), ("1", False), (None, False)])
def test_is_valid_amount(value, ok):
    assert is_valid_amount(value) is ok


def test_allocate_largest_remainder_with_deterministic_ties():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(10, [Decimal("0.3"), Decimal("0.3"), Decimal("0.4")]) == [3, 3, 4]
    assert allocate(1, [1, 1]) == [1, 0]


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**6), min_size=1, max_size=30).filter(any))
def test_allocate_conserves_and_stays_within_one_unit(total, weights):
    parts = allocate(total, weights)
    assert sum(parts) == total
    wsum = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        exact = Decimal(total) * w / wsum
        assert abs(Decimal(part) - exact) < 1
        assert part >= 0


def test_allocate_refuses_nonsense():
    for args in ((-1, [1]), (1, []), (1, [0, 0]), (1, [-1, 2])):
        with pytest.raises(ValueError):
            allocate(*args)


def test_format_major_is_exact_for_every_exponent():
    from piaohao.kernel.money import format_major

    assert format_major(1999, "CNY") == "19.99"
    assert format_major(5, "CNY") == "0.05"
    assert format_major(-5, "CNY") == "-0.05"
    assert format_major(123456789, "CNY") == "1,234,567.89"
    assert format_major(500, "JPY") == "500"
    assert format_major(10**15, "CNY") == "10,000,000,000,000.00"  # no float rounding at the cap
