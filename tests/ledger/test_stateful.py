"""A Hypothesis state machine: random transfers, holds, posts, voids, expiries and limit changes
among a few accounts, compared after every step with a plain Python model and with `check`.

Every example gets fresh accounts (a unique owner id) in one database per backend, so `check`
also proves that the earlier examples left the books consistent. SQLite gets most examples; the
PostgreSQL run is shorter but exercises its different code path (one statement per posting)."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from piaohao.db.database import Database
from piaohao.ledger.write import (
    CreditLimitBelowUsed,
    HoldNotPending,
    InsufficientFunds,
    balance,
    check,
    credit,
    debit,
    get_or_create_account,
    post_hold,
    reserve,
    set_credit_limit,
    transfer,
    void_expired_holds,
    void_hold,
)

T0 = datetime(2026, 11, 23, tzinfo=UTC)
EXAMPLE_SPAN = timedelta(days=10)  # far more than 30 steps of at most 900 s
_examples = itertools.count()
# name: (normal side, constraint, initial credit limit, shards)
ACCOUNTS = {
    "src": ("debit", "none", None, 1),  # the platform's reserve: where money comes from
    "hot": ("debit", "none", None, 3),  # a sharded clearing account
    "m1": ("credit", "non_negative", None, 1),
    "m2": ("credit", "non_negative", None, 1),
    "cash": ("debit", "non_negative", None, 1),  # a debit-normal constrained account
    "line": ("credit", "credit_limit", 300, 1),
}
@dataclass
class Model:
    posted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0))
    pend_d: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0))
    pend_c: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0))
    limit: dict[str, int] = field(default_factory=lambda: {k: v[2] or 0 for k, v in ACCOUNTS.items()})

    def sign(self, name: str) -> int:
        return 1 if ACCOUNTS[name][0] == "debit" else -1

    def available(self, name: str) -> int:
        against = self.pend_c[name] if ACCOUNTS[name][0] == "debit" else self.pend_d[name]
        return self.posted[name] - against

    def floor(self, name: str) -> int | None:
        kind = ACCOUNTS[name][1]
        return None if kind == "none" else 0 if kind == "non_negative" else -self.limit[name]

    def allows(self, dr: str, cr: str, amount: int) -> bool:
        """Would debiting `dr` and crediting `cr` keep both above their floors?"""
        for name, signed in ((dr, amount), (cr, -amount)):
            change = self.sign(name) * signed
            f = self.floor(name)
            if f is not None and change < 0 and self.available(name) + change < f:
                return False
        return True


names = st.sampled_from(sorted(ACCOUNTS))
amounts = st.integers(min_value=1, max_value=400)


picks = st.integers(min_value=0, max_value=10**6)  # which open hold (mod their number)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        run = secrets.token_hex(4)
        self.model = Model()
        # Each example lives in its own stretch of time, after sweeping what earlier ones left, so
        # the sweep's count below only sees this example's holds.
        self.now = T0 + next(_examples) * EXAMPLE_SPAN
        void_expired_holds(db, self.now)
        self.n = 0
        self.hold_info: dict[str, tuple[str, str, int, datetime | None]] = {}
        self.ids = self.db.write(lambda c: {
            name: get_or_create_account(c, "test", f"{run}-{name}", "balance", "CNY", normal_side=side, constraint=kind,
                                        credit_limit=limit, shard_count=shards).account_id
            for name, (side, kind, limit, shards) in ACCOUNTS.items()})

    def _key(self) -> tuple[str, str, str]:
        self.n += 1
        return ("sm", f"{self.ids['src']}-{self.n}", "x")

    @rule(dr=names, cr=names, amount=amounts)
    def move(self, dr, cr, amount):
        if dr == cr:
            return
        expected_ok = self.model.allows(dr, cr, amount)
        try:
            self.db.write(lambda c: transfer(c, self._key(), self.ids[dr], self.ids[cr], amount, at=self.now))
        except InsufficientFunds:
            assert not expected_ok
            return
        assert expected_ok
        self.model.posted[dr] += self.model.sign(dr) * amount
        self.model.posted[cr] -= self.model.sign(cr) * amount

    @rule(dr=names, cr=names, amount=amounts, ttl_s=st.one_of(st.none(), st.integers(1, 600)))
    def hold(self, dr, cr, amount, ttl_s):
        if dr == cr:
            return
        expected_ok = self.model.allows(dr, cr, amount)
        expires = None if ttl_s is None else self.now + timedelta(seconds=ttl_s)
        try:
            h = self.db.write(lambda c: reserve(c, self._key(), [debit(self.ids[dr], amount),
                                                                 credit(self.ids[cr], amount)],
                                                expires_at=expires, at=self.now))
        except InsufficientFunds:
            assert not expected_ok
            return
        assert expected_ok
        self.model.pend_d[dr] += amount
        self.model.pend_c[cr] += amount
        self.hold_info[h.hold_id] = (dr, cr, amount, expires)

    def _pick(self, pick: int) -> str | None:
        open_holds = sorted(self.hold_info)
        return open_holds[pick % len(open_holds)] if open_holds else None

    def _release(self, hold_id: str, post: bool) -> None:
        dr, cr, amount, _ = self.hold_info.pop(hold_id)
        self.model.pend_d[dr] -= amount
        self.model.pend_c[cr] -= amount
        if post:
            self.model.posted[dr] += self.model.sign(dr) * amount
            self.model.posted[cr] -= self.model.sign(cr) * amount

    @rule(pick=picks, twice=st.booleans())
    def post(self, pick, twice):
        hold_id = self._pick(pick)
        if hold_id is None:
            return
        expires = self.hold_info[hold_id][3]
        if expires is not None and self.now >= expires:
            try:
                self.db.write(lambda c: post_hold(c, hold_id, at=self.now))
            except HoldNotPending:
                return  # left for the sweep
            raise AssertionError("posted an expired hold")
        for _ in range(2 if twice else 1):
            self.db.write(lambda c: post_hold(c, hold_id, at=self.now))
        self._release(hold_id, post=True)
        try:
            self.db.write(lambda c: void_hold(c, hold_id, at=self.now))
            raise AssertionError("voided a posted hold")
        except HoldNotPending:
            pass

    @rule(pick=picks, twice=st.booleans())
    def void(self, pick, twice):
        hold_id = self._pick(pick)
        if hold_id is None:
            return
        for _ in range(2 if twice else 1):
            self.db.write(lambda c: void_hold(c, hold_id, at=self.now))
        self._release(hold_id, post=False)

    @rule(seconds=st.integers(1, 900))
    def sweep(self, seconds):
        self.now += timedelta(seconds=seconds)
        due = [h for h, (_, _, _, exp) in self.hold_info.items() if exp is not None and exp <= self.now]
        assert void_expired_holds(self.db, self.now) == len(due)
        for h in due:
            self._release(h, post=False)

    @rule(limit=st.integers(0, 800))
    def set_limit(self, limit):
        used = max(0, -self.model.available("line"))
        try:
            self.db.write(lambda c: set_credit_limit(c, self.ids["line"], limit))
        except CreditLimitBelowUsed:
            assert limit < used
            return
        assert limit >= used
        self.model.limit["line"] = limit

    @invariant()
    def books_match_model(self):
        with self.db.read() as c:
            for name, account_id in self.ids.items():
                b = balance(c, account_id)
                assert (b.posted, b.pending_debits, b.pending_credits) == (
                    self.model.posted[name], self.model.pend_d[name], self.model.pend_c[name]), name
                assert b.available == self.model.available(name), name
                f = self.model.floor(name)
                assert f is None or b.available >= f, name
        assert check(self.db) == []


def test_ledger_state_machine(db, backend):
    run_state_machine_as_test(
        lambda: LedgerMachine(db),
        settings=settings(max_examples=40 if backend == "sqlite" else 25, stateful_step_count=30, deadline=None,
                          suppress_health_check=list(HealthCheck)))
