"""Settlement computes its money in SQL (clearing.settle): the largest remainder in window
functions and the fee by each rule's exact rounding. Here both are run on the database over
random inputs up to AMOUNT_MAX (where a 64-bit product overflows and a 28-digit Decimal rounds)
and must equal, unit for unit, `kernel.money.allocate` and `clearing.fees.FeeRule.fee`, which in
turn must equal a reference in exact fractions. Both databases."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import floor

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from piaohao.clearing.fees import FeeRule
from piaohao.clearing.settle import RULE_COLUMNS, SetSql, fee_of, largest_remainder, rules_param
from piaohao.db.database import Database
from piaohao.kernel.money import AMOUNT_MAX, allocate

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def db(database_url):
    d = Database(database_url, pool_size=1)
    yield d
    d.engine.dispose()


def reference_allocate(total: int, weights: list[int]) -> list[int]:
    """Largest remainder in exact fractions, ties to the earlier weight."""
    exact = [Fraction(total * w, sum(weights)) for w in weights]
    parts = [floor(e) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:total - sum(parts)]:
        parts[i] += 1
    return parts


def sql_allocate(db: Database, cases: list[tuple[int, list[int]]]) -> list[list[int]]:
    """Each case's shares, computed by the settlement's SQL in one statement."""
    rows = [{"k1": str(c), "k2": "", "total": total, "pos": min(i, 1), "receiver_id": f"r{i:03d}" if i else "",
             "weight": w} for c, (total, weights) in enumerate(cases) for i, w in enumerate(weights)]
    with db.read() as conn:
        sql = SetSql(conn)
        columns = {"k1": "text", "k2": "text", "total": "bigint", "pos": "integer", "receiver_id": "text",
                   "weight": "bigint"}
        got = sql.run(f"WITH lr_in AS (SELECT * FROM {sql.rows('cases', columns)}), "
                      f"{largest_remainder(sql.dialect)} SELECT k1, pos, receiver_id, share FROM lr",
                      rows={"cases": rows}).all()
    out = [[0] * len(weights) for _, weights in cases]
    for k1, pos, receiver_id, share in got:
        out[int(k1)][int(receiver_id[1:]) if pos else 0] = int(share)
    return out


weights_st = st.lists(st.one_of(st.integers(0, AMOUNT_MAX), st.integers(0, 100), st.just(7)), min_size=1,
                      max_size=6).filter(lambda ws: sum(ws) > 0)
case_st = weights_st.flatmap(lambda ws: st.tuples(st.integers(0, min(sum(ws), AMOUNT_MAX)), st.just(ws)))


@SETTINGS
@given(cases=st.lists(case_st, min_size=1, max_size=8))
@example(cases=[(AMOUNT_MAX - 1, [AMOUNT_MAX - 3, 1, 1, 1]), (5, [1, 1, 1]), (0, [0, 3]), (999, [3, 0, 0])])
def test_sql_largest_remainder_equals_allocate(db, cases):
    want = [allocate(total, weights) for total, weights in cases]
    assert want == [reference_allocate(total, weights) for total, weights in cases]
    assert sql_allocate(db, cases) == want


rule_st = st.builds(
    lambda rate, fixed, min_fee, extra, capped, rounding: FeeRule(
        rule_id="r", priority=1, rate_bp=rate, fixed_amount=fixed, min_fee=min_fee,
        max_fee=min_fee + extra if capped else None, rounding=rounding),
    st.one_of(st.decimals(min_value=0, max_value=10000, places=2),
              st.decimals(min_value=0, max_value=10000, places=12),
              st.sampled_from([Decimal("0"), Decimal("1E+2"), Decimal("10000"), Decimal("38.5"), Decimal("0.005")])),
    st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 10**6), st.booleans(),
    st.sampled_from(["half_up", "floor", "ceil"]))
bases_st = st.lists(st.one_of(st.integers(0, AMOUNT_MAX), st.integers(0, 20_000), st.just(0)), min_size=1,
                    max_size=10)


def reference_fee(rule: FeeRule, base: int) -> int:
    if base <= 0:
        return 0
    exact = Fraction(base) * Fraction(rule.rate_bp) / 10000
    whole = floor(exact)
    variable = {"floor": whole, "ceil": whole + (exact != whole),
                "half_up": whole + (exact - whole >= Fraction(1, 2))}[rule.rounding]
    fee = max(variable + rule.fixed_amount, rule.min_fee)
    if rule.max_fee is not None:
        fee = min(fee, rule.max_fee)
    return max(0, min(fee, base))


@SETTINGS
@given(rule=rule_st, bases=bases_st)
@example(rule=FeeRule("r", 1, Decimal("12.345678901234567890123"), rounding="half_up"), bases=[AMOUNT_MAX, 3, 0])
@example(rule=FeeRule("r", 1, Decimal("50"), rounding="half_up"), bases=[1, 100, 101, 199, 200])
def test_sql_fee_equals_the_rule(db, rule, bases):
    want = [rule.fee(b) for b in bases]
    assert want == [reference_fee(rule, b) for b in bases]
    with db.read() as conn:
        sql = SetSql(conn)
        got = dict(sql.run(f"SELECT b.i, {fee_of(sql.dialect, 'b.base', 'rules')} "
                           f"FROM {sql.rows('b', {'i': 'integer', 'base': 'bigint'})} "
                           f"CROSS JOIN {sql.rows('rules', RULE_COLUMNS)}",
                           rows={"b": [{"i": i, "base": b} for i, b in enumerate(bases)],
                                 "rules": rules_param([rule])}).all())
    assert [int(got[i]) for i in range(len(bases))] == want
