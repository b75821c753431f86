"""The payout executor at the service level (scripted channel, fake clock), on both databases:
concurrent executors never pay a record twice; an outcome that stays unknown is retried at
growing intervals, then parked with an alert and kept processing; a late answer still settles it."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from piaohao import ledger
from piaohao.alerts import list_alerts
from piaohao.channels.spi import Outcome, PayoutResult
from piaohao.db.schema_members import disbursements
from piaohao.kernel.clock import FakeClock
from piaohao.kernel.settings import Settings
from piaohao.services import members, passwords, payouts, withdrawals
from piaohao.services.merchants import create_merchant
from piaohao.services.payouts import BankAccount, apply_payout_result
from piaohao.workers.payouts import PayoutExecutor
from tests.conftest import TEST_SECRET_KEY
from tests.members.conftest import PASSWORD, fund_member
from tests.members.scripted import SUFFIX, ScriptedChannel


@pytest.fixture
def service(database_url, tmp_path, monkeypatch):
    from piaohao.bootstrap import assemble

    monkeypatch.setattr(passwords, "SCRYPT_N", 2**4)
    settings = Settings.from_env({}).with_(
        database_url=database_url, base_url="http://127.0.0.1:9", secret_key=TEST_SECRET_KEY,
        channel_env={"PIAOHAO_SANDBOX": "on", "PIAOHAO_SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path}/sb.db"},
        active_query_after_s=10, active_query_interval_max_s=60)
    assembly = assemble(settings, clock=FakeClock(), migrate_now=True, with_api=False)
    yield assembly.platform
    assert ledger.check(assembly.platform.db) == []
    assembly.close()


class _Running:
    def __init__(self, p):
        self.platform = p


def _member_with_money(p, amount: int):
    creds = create_merchant(p, "Shop", p.clock.now())
    member = members.create_member(p, creds.merchant_id, members.NewMember("u1", "Li Lei", PASSWORD))[0]
    fund_member(_Running(p), member["member_id"], amount)
    return creds, member


def _withdraw(p, creds, member, n: int, amount: int, outcome: str) -> str:
    account = BankAccount("ICBC", "622202020011223" + SUFFIX[outcome], "Li Lei")
    view, _ = withdrawals.create_withdrawal(p, creds.merchant_id, creds.app_id, withdrawals.NewWithdrawal(
        f"W{n}", member["member_id"], amount, account, PASSWORD))
    return view["withdrawal_no"]


def _row(p, number):
    with p.db.read() as conn:
        return conn.execute(select(disbursements).where(disbursements.c.disbursement_no == number)).mappings().one()


def test_concurrent_executors_call_the_bank_once_per_record(service):
    p = service
    channel = ScriptedChannel(delay_s=0.05)
    p.channels["sandbox"] = channel
    creds, member = _member_with_money(p, 10_000)
    numbers = [_withdraw(p, creds, member, i, 100, "paid") for i in range(12)]
    executors = [PayoutExecutor(p) for _ in range(4)]
    barrier = threading.Barrier(len(executors))

    def work(executor):
        barrier.wait()
        executor.run_once()

    threads = [threading.Thread(target=work, args=(e,)) for e in executors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert channel.calls == dict.fromkeys(numbers, 1)
    assert {_row(p, n)["status"] for n in numbers} == {"succeeded"}
    got = members.get_member(p, creds.merchant_id, member_id=member["member_id"])["accounts"]["balance"]
    assert got == {"available": 8800, "frozen": 0}


def test_an_unknown_outcome_is_retried_growing_then_parked_and_a_late_answer_settles_it(service):
    p = service
    channel = ScriptedChannel()
    p.channels["sandbox"] = channel
    creds, member = _member_with_money(p, 500)
    number = _withdraw(p, creds, member, 1, 500, "silent")
    executor = PayoutExecutor(p)
    gaps = []
    for _ in range(payouts.PAYOUT_TRIES_MAX):
        before = _row(p, number)
        assert before["next_attempt_at"] is not None
        gaps.append((before["next_attempt_at"] - p.clock.now()).total_seconds())
        p.clock.set(before["next_attempt_at"])
        assert executor.run_once() == 1
        assert executor.run_once() == 0  # not due again at once
    row = _row(p, number)
    assert row["status"] == "processing" and row["parked_at"] is not None and row["next_attempt_at"] is None
    assert row["attempts"] == payouts.PAYOUT_TRIES_MAX and channel.calls[number] == 1  # paid once, then queried
    assert gaps[1:] == sorted(gaps[1:]) and gaps[1] == 10 and max(gaps) == 60
    alerts = list_alerts(p.db, kind="payout_unknown")
    assert len(alerts) == 1 and alerts[0]["subject_id"] == number and "0009" in alerts[0]["message"]
    assert channel.payouts[number].account_number not in alerts[0]["message"]  # the full number is never shown
    p.clock.advance(86400)
    assert executor.run_once() == 0  # parked: only an operator (or a late answer) moves it
    got = members.get_member(p, creds.merchant_id, member_id=member["member_id"])["accounts"]["balance"]
    assert got == {"available": 0, "frozen": 500}  # never guessed
    late = PayoutResult(Outcome.SUCCEEDED, channel_payout_no="P1")
    assert apply_payout_result(p, number, late) == "succeeded"
    assert apply_payout_result(p, number, late) == "ignored"
    assert apply_payout_result(p, number, PayoutResult(Outcome.FAILED)) == "ignored"
    got = members.get_member(p, creds.merchant_id, member_id=member["member_id"])["accounts"]["balance"]
    assert got == {"available": 0, "frozen": 0}


def test_a_payout_the_channel_never_received_is_sent_again(service):
    p = service
    channel = ScriptedChannel()
    p.channels["sandbox"] = channel
    creds, member = _member_with_money(p, 300)
    number = _withdraw(p, creds, member, 1, 300, "paid")
    lost = PayoutResult(Outcome.UNKNOWN, error="connection refused")
    # The first call never reached the bank: record it as unknown by hand.
    with p.db.read() as conn:
        attempts = conn.execute(select(disbursements.c.attempts)).scalar_one()
    assert attempts == 0
    executor = PayoutExecutor(p)
    original = channel.payout
    channel.payout = lambda req: lost
    executor.run_once()
    channel.payout = original
    assert _row(p, number)["status"] == "processing" and number not in channel.payouts
    p.clock.set(_row(p, number)["next_attempt_at"])
    executor.run_once()  # the query says NOT_FOUND: pay again (safe: idempotent on payout_no)
    assert _row(p, number)["status"] == "succeeded" and channel.calls[number] == 1
