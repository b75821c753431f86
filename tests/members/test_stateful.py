"""A Hypothesis state machine over the member services: top-ups (paid, paid twice, abandoned and
paid late), transfers (and their replays), coins grants, trades paid with every own method and
combination (balance, credit, coins + balance, coins + channel that succeeds or fails, channel
alone), withdrawals that the bank pays, refuses, or answers only to a query. After every step the
books balance, nothing constrained is negative, and every member's accounts equal a plain model.

Service layer only: a Platform from `assemble(..., with_api=False)` on SQLite with a FakeClock,
a scripted channel in place of the sandbox (no HTTP), and the payout executor driven by hand."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from piaohao import ledger
from piaohao.channels.spi import Outcome, PaymentResult
from piaohao.domain import trades as trade_states
from piaohao.kernel.clock import FakeClock
from piaohao.kernel.errors import InsufficientBalance
from piaohao.kernel.settings import Settings
from piaohao.services import cashier, members, passwords, payments, topups, trade_store, trades, transfers, withdrawals
from piaohao.services.closing import close_pending_trade
from piaohao.services.merchants import create_merchant
from piaohao.services.payouts import BankAccount, get_disbursement
from piaohao.workers.payouts import PayoutExecutor
from tests.members.scripted import SUFFIX, ScriptedChannel

PASSWORD = "246810"


@dataclass
class Figures:
    available: int = 0
    frozen: int = 0
    coins: int = 0
    credit_used: int = 0


CREDIT_LIMIT = 4000


@dataclass
class Pending:
    member: int
    amount: int
    outcome: str
    runs: int = 0


_counter = itertools.count()
people = st.integers(0, 2)
amounts = st.integers(1, 5000)


class MemberMachine(RuleBasedStateMachine):
    def __init__(self, p, executor: PayoutExecutor, channel: ScriptedChannel) -> None:
        super().__init__()
        self.p, self.executor, self.channel = p, executor, channel
        creds = create_merchant(p, f"Shop {next(_counter)}", p.clock.now())
        self.merchant, self.app = creds.merchant_id, creds.app_id
        self.ids = [members.create_member(p, self.merchant, members.NewMember(f"u{i}", f"M{i}", PASSWORD))[0]
                    ["member_id"] for i in range(3)]
        self.model = [Figures() for _ in self.ids]
        for member_id in self.ids:
            members.set_credit_limit(p, self.merchant, member_id, CREDIT_LIMIT)
        self.withdrawals: dict[str, Pending] = {}
        self.transfer_keys: list[tuple[transfers.NewTransfer, dict]] = []
        self.n = 0

    def _key(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _topup(self, who: int, amount: int) -> tuple[dict, str]:
        topup, created = topups.create_topup(self.p, self.merchant, self.app, topups.NewTopup(
            self._key("T"), self.ids[who], amount))
        assert created and topup["status"] == "pending"
        token = topup["pay_url"].rsplit("/", 1)[1]
        started = payments.start_payment(self.p, token, "sandbox")
        return topup, started["payment_no"]

    def _paid(self, payment_no: str, amount: int) -> str:
        return payments.apply_channel_result(self.p, payment_no, PaymentResult(
            Outcome.SUCCEEDED, channel_txn_no="T" + payment_no, amount=amount, currency="CNY"), source="notify")

    @rule(who=people, amount=amounts, answers=st.integers(1, 3))
    def top_up(self, who, amount, answers):
        topup, payment_no = self._topup(who, amount)
        effects = [self._paid(payment_no, amount) for _ in range(answers)]  # the channel may answer twice
        assert effects[0] == "succeeded" and set(effects[1:]) <= {"duplicate"}
        assert topups.get_topup(self.p, self.merchant, topup_no=topup["topup_no"])["status"] == "succeeded"
        self.model[who].available += amount

    @rule(who=people, amount=amounts, paid_late=st.booleans())
    def abandoned_top_up(self, who, amount, paid_late):
        topup, payment_no = self._topup(who, amount)
        assert close_pending_trade(self.p, self._trade_no(topup), reason=trade_states.CLOSE_REASON_EXPIRED) == "closed"
        assert topups.get_topup(self.p, self.merchant, topup_no=topup["topup_no"])["status"] == "failed"
        if paid_late:  # the buyer's money arrives after all: suspense and an alert, never the balance
            assert self._paid(payment_no, amount) == "paid_after_close"

    def _trade_no(self, topup: dict) -> str:
        from sqlalchemy import select

        from piaohao.db.schema_members import topups as table

        with self.p.db.read() as conn:
            return conn.execute(select(table.c.trade_no).where(table.c.topup_no == topup["topup_no"])).scalar_one()

    @rule(a=people, b=people, amount=amounts)
    def transfer(self, a, b, amount):
        if a == b:
            return
        req = transfers.NewTransfer(self._key("X"), self.ids[a], self.ids[b], amount, PASSWORD)
        try:
            view, created = transfers.create_transfer(self.p, self.merchant, self.app, req)
        except InsufficientBalance:
            assert self.model[a].available < amount
            return
        assert created and self.model[a].available >= amount
        self.model[a].available -= amount
        self.model[b].available += amount
        self.transfer_keys.append((req, view))

    @precondition(lambda self: self.transfer_keys)
    @rule(pick=st.integers(0, 10**6))
    def replay_transfer(self, pick):
        req, view = self.transfer_keys[pick % len(self.transfer_keys)]
        again, created = transfers.create_transfer(self.p, self.merchant, self.app, req)
        assert not created and again == view

    @rule(who=people, amount=st.integers(1, 1000))
    def grant(self, who, amount):
        members.grant_coins(self.p, self.merchant, self.ids[who], members.NewCoinGrant(self._key("C"), amount))
        self.model[who].coins += amount

    @rule(who=people, amount=st.integers(2, 3000),
          how=st.sampled_from(["balance", "credit", "coins+balance", "coins+sandbox", "coins+sandbox-fails",
                               "sandbox"]))
    def pay_a_trade(self, who, amount, how):
        trade, _ = trades.create_trade(self.p, self.merchant, self.app, trades.NewTrade(
            self._key("P"), amount, "CNY", "socks", order_timeout_s=3600, member_id=self.ids[who]))
        token = trade["pay_url"].rsplit("/", 1)[1]
        m = self.model[who]
        coins = min(m.coins, amount * 50 // 100)  # the default cap: half the trade
        if how.startswith("coins") and coins == 0:
            how = how.split("+")[1].replace("-fails", "")
        if how.startswith("coins"):
            rest = how.split("+")[1].replace("-fails", "")
            kwargs = {"method": None, "components": [("coins", coins), (rest, None)]}
        else:
            kwargs = {"method": how, "components": None}
        short = {"balance": m.available < amount, "credit": CREDIT_LIMIT - m.credit_used < amount,
                 "coins+balance": m.available < amount - coins}.get(how, False)
        try:
            answer = cashier.pay(self.p, token, payment_password=PASSWORD, **kwargs)
        except InsufficientBalance:
            assert short, (how, m, amount)
            return
        assert not short, (how, m, amount)
        if "sandbox" in how:
            channel_amount = amount - (coins if how.startswith("coins") else 0)
            outcome = Outcome.FAILED if how.endswith("fails") else Outcome.SUCCEEDED
            effect = payments.apply_channel_result(self.p, answer["payment_no"], PaymentResult(
                outcome, channel_txn_no="T" + answer["payment_no"], amount=channel_amount, currency="CNY"),
                source="notify")
            if outcome == Outcome.FAILED:
                assert effect == "failed"
                assert trade_store.get_trade(self.p, self.merchant, trade_no=trade["trade_no"])["status"] == "pending"
                return
            assert effect == "succeeded"
        paid = trade_store.get_trade(self.p, self.merchant, trade_no=trade["trade_no"])
        assert paid["status"] == "succeeded"
        assert sum(c["amount"] for c in paid["components"]) == amount
        if how == "balance":
            m.available -= amount
        elif how == "credit":
            m.credit_used += amount
        elif how == "coins+balance":
            m.coins -= coins
            m.available -= amount - coins
        elif how == "coins+sandbox":
            m.coins -= coins

    @rule(who=people, amount=amounts, outcome=st.sampled_from(["paid", "refused", "timeout"]))
    def withdraw(self, who, amount, outcome):
        account = BankAccount("ICBC", "622202020011223" + SUFFIX[outcome], "Li Lei")
        req = withdrawals.NewWithdrawal(self._key("W"), self.ids[who], amount, account, PASSWORD)
        try:
            view, _ = withdrawals.create_withdrawal(self.p, self.merchant, self.app, req)
        except InsufficientBalance:
            assert self.model[who].available < amount
            return
        assert view["status"] == "processing"
        self.model[who].available -= amount
        self.model[who].frozen += amount
        self.withdrawals[view["withdrawal_no"]] = Pending(who, amount, outcome)

    @rule(seconds=st.sampled_from([0, 3600]))
    def run_executor(self, seconds):
        self.p.clock.advance(seconds)
        due = {n for n, w in self.withdrawals.items()} if seconds else {
            n for n, w in self.withdrawals.items() if w.runs == 0}
        self.executor.run_once()
        for number in sorted(due):
            w = self.withdrawals[number]
            w.runs += 1
            status = get_disbursement(self.p, self.merchant, "withdrawal", number=number, out_request_no=None,
                                      not_found=LookupError)["status"]
            expected = {"paid": "succeeded", "refused": "failed"}.get(w.outcome)
            if w.outcome == "timeout":
                expected = "processing" if w.runs == 1 else "succeeded"
            assert status == expected, (w, status)
            if status == "processing":
                continue
            del self.withdrawals[number]
            self.model[w.member].frozen -= w.amount
            if status == "failed":
                self.model[w.member].available += w.amount

    @invariant()
    def books_match_the_model(self):
        assert ledger.check(self.p.db) == []
        for member_id, want in zip(self.ids, self.model, strict=True):
            got = members.get_member(self.p, self.merchant, member_id=member_id)["accounts"]
            assert got["balance"] == {"available": want.available, "frozen": want.frozen}, (member_id, got, want)
            assert got["coins"] == {"available": want.coins, "held": 0}
            assert got["credit"] == {"limit": CREDIT_LIMIT, "used": want.credit_used,
                                     "available": CREDIT_LIMIT - want.credit_used}
            assert min(want.available, want.frozen, want.coins) >= 0


@pytest.fixture
def service_platform(tmp_path, monkeypatch):
    from piaohao.bootstrap import assemble

    monkeypatch.setattr(passwords, "SCRYPT_N", 2**4)  # the real cost is tested elsewhere; keep examples fast
    settings_ = Settings.from_env({}).with_(
        database_url=f"sqlite:///{tmp_path}/piaohao.db", base_url="http://127.0.0.1:9",
        channel_env={"PIAOHAO_SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path}/sandbox.db"}, active_query_after_s=30,
        active_query_interval_max_s=600)
    assembly = assemble(settings_, clock=FakeClock(), migrate_now=True, with_api=False)
    channel = ScriptedChannel()
    assembly.platform.channels["sandbox"] = channel
    yield assembly.platform, channel
    assembly.close()


def test_member_services_keep_the_books_and_match_the_model(service_platform):
    p, channel = service_platform
    executor = PayoutExecutor(p, batch_size=500)
    run_state_machine_as_test(
        lambda: MemberMachine(p, executor, channel),
        settings=settings(max_examples=30, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))


def test_every_payment_method_moves_what_the_model_says(service_platform):
    """The payment rule driven directly once per method, so a broken branch cannot hide from the search."""
    p, channel = service_platform
    machine = MemberMachine(p, PayoutExecutor(p, batch_size=500), channel)
    machine.top_up(0, 5000, 1)
    machine.grant(0, 1000)
    for how in ("balance", "credit", "coins+balance", "coins+sandbox", "coins+sandbox-fails", "sandbox"):
        machine.pay_a_trade(0, 1000, how)
        machine.books_match_the_model()
    assert machine.model[0].coins < 1000 and machine.model[0].credit_used == 1000
