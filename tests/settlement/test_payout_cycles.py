"""Sub-merchants' payout cycles (`payout_every_days`): settled money paid out when the cycle is due."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from piaohao.clearing.payout_cycles import cycle_key, run_payout_cycles
from piaohao.db.schema_members import disbursements
from piaohao.kernel.clock import FakeClock
from piaohao.services.payouts import disbursement_account_number
from piaohao.services.sub_merchants import change_status
from tests.settlement.helpers import BANK, balances, books_balance, create_trade, key, pay
from tests.support.merchant import wait_until

DAY = dt.timedelta(days=1)


def cycling_seller(running, m, every: int = 7) -> str:
    r = m.call("POST", "/v1/sub-merchants", {
        "out_sub_merchant_id": key("SUB"), "name": "Seller", "settle_after_days": 30, "payout_every_days": every,
        "bank_account": BANK,
        "kyc": {"type": "individual", "legal_name": "Li Lei", "id_number": "11010519491231002X"}})
    assert r.status_code == 201, r.text
    assert r.json()["payout_every_days"] == every
    sid = r.json()["sub_merchant_id"]
    change_status(running.platform, sid, "approve")
    return sid


def sell_and_settle(m, sid: str, amount: int) -> None:
    trade = create_trade(m, amount, [{"out_order_no": "O1", "sub_merchant_id": sid, "amount": amount,
                                      "subsidy_amount": 0}]).json()
    pay(m, trade)
    r = m.call("POST", f"/v1/trades/{trade['trade_no']}/settle", {"out_request_no": key("S")})
    assert r.status_code == 200, r.text


def cycle_payouts(running, sid: str) -> list:
    with running.platform.db.read() as conn:
        return conn.execute(select(disbursements).where(disbursements.c.sub_merchant_id == sid)
                            .order_by(disbursements.c.out_request_no)).mappings().all()


def test_due_cycle_pays_the_whole_settled_amount_once(make_platform):
    clock = FakeClock(dt.datetime.now(dt.UTC))
    running = make_platform(clock=clock)  # the workers run on the frozen clock: the cycle is driven by as_of
    p, m = running.platform, running.merchant()
    sid = cycling_seller(running, m)
    sell_and_settle(m, sid, 4000)
    assert balances(m, "sub-merchants", sid) == {"pending_settlement": 0, "settled": 4000}

    assert run_payout_cycles(p, clock.now() + 6 * DAY)["payouts"] == 0  # not due yet
    assert cycle_payouts(running, sid) == []

    due_at = clock.now() + 7 * DAY
    summary = run_payout_cycles(p, due_at)
    assert summary["payouts"] == 1 and summary["amount"] == 4000
    again = run_payout_cycles(p, due_at)  # a re-run of the same cycle
    assert again["payouts"] == 0
    assert run_payout_cycles(p, due_at + 3 * DAY)["payouts"] == 0  # the next cycle is not due yet
    [payout] = cycle_payouts(running, sid)
    assert payout["out_request_no"] == cycle_key(sid, due_at.astimezone(p.settings.tz).date())
    assert payout["amount"] == 4000 and disbursement_account_number(p, payout) == BANK["number"]
    assert balances(m, "sub-merchants", sid)["settled"] == 0  # held at once
    no = summary["payout_nos"][0]
    assert wait_until(lambda: m.call("GET", f"/v1/payouts/{no}").json()["status"] == "succeeded")
    assert balances(m, "sub-merchants", sid) == {"pending_settlement": 0, "settled": 0}

    # The next cycle: 7 days after the last one's due day, with new money only.
    sell_and_settle(m, sid, 1500)
    assert run_payout_cycles(p, due_at + 6 * DAY)["payouts"] == 0
    nxt = run_payout_cycles(p, due_at + 7 * DAY)
    assert nxt["payouts"] == 1 and nxt["amount"] == 1500
    assert wait_until(lambda: m.call("GET", f"/v1/payouts/{nxt['payout_nos'][0]}").json()["status"] == "succeeded")
    assert balances(m, "sub-merchants", sid)["settled"] == 0
    assert [d["status"] for d in cycle_payouts(running, sid)] == ["succeeded", "succeeded"]
    books_balance(running)


def test_no_payout_without_money_when_frozen_or_without_a_cycle(make_platform):
    clock = FakeClock(dt.datetime.now(dt.UTC))
    running = make_platform(clock=clock)
    p, m = running.platform, running.merchant()
    empty = cycling_seller(running, m)
    frozen = cycling_seller(running, m, every=1)
    sell_and_settle(m, frozen, 2000)
    change_status(p, frozen, "freeze")
    summary = run_payout_cycles(p, clock.now() + 30 * DAY)
    assert summary["payouts"] == 0
    assert cycle_payouts(running, empty) == [] and cycle_payouts(running, frozen) == []
    assert balances(m, "sub-merchants", frozen)["settled"] == 2000
    change_status(p, frozen, "unfreeze")
    assert run_payout_cycles(p, clock.now() + 30 * DAY)["payouts"] == 1
    books_balance(running)


def test_two_runners_at_once_pay_a_cycle_once(make_platform):
    from concurrent.futures import ThreadPoolExecutor

    clock = FakeClock(dt.datetime.now(dt.UTC))
    running = make_platform(clock=clock)
    p, m = running.platform, running.merchant()
    sid = cycling_seller(running, m, every=2)
    sell_and_settle(m, sid, 3000)
    when = clock.now() + 2 * DAY
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run_payout_cycles(p, when), range(4)))
    assert sum(r["payouts"] for r in results) == 1
    with p.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(disbursements)
                            .where(disbursements.c.sub_merchant_id == sid)).scalar_one() == 1
    assert wait_until(lambda: cycle_payouts(running, sid)[0]["status"] == "succeeded")
    assert balances(m, "sub-merchants", sid)["settled"] == 0
    books_balance(running)


def test_settlement_worker_and_cli_run_the_cycles(make_platform, monkeypatch):
    from typer.testing import CliRunner

    from piaohao.cli import app
    from piaohao.workers.settlement import SettlementWorker

    running = make_platform(workers=False)
    p, m = running.platform, running.merchant()
    by_worker, by_cli = cycling_seller(running, m, every=1), cycling_seller(running, m, every=1)
    sell_and_settle(m, by_worker, 700)
    assert SettlementWorker(p).run_once(p.clock.now() + 2 * DAY) == 1
    assert [d["amount"] for d in cycle_payouts(running, by_worker)] == [700]
    sell_and_settle(m, by_cli, 800)
    monkeypatch.setenv("PIAOHAO_DATABASE_URL", running.settings.database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", running.settings.secret_key)
    monkeypatch.setenv("PIAOHAO_SANDBOX", "on")
    later = (dt.datetime.now(dt.UTC) + 2 * DAY).isoformat()
    result = CliRunner().invoke(app, ["settlement", "run", "--as-of", later, "--json"])
    assert result.exit_code == 0, result.output
    assert '"payout_cycles": {' in result.output and '"amount": 800' in result.output
    assert [d["amount"] for d in cycle_payouts(running, by_cli)] == [800]
    from piaohao.workers.payouts import PayoutExecutor

    executor = PayoutExecutor(p)
    assert wait_until(lambda: executor.run_once() == 0 and all(
        d["status"] == "succeeded" for s in (by_worker, by_cli) for d in cycle_payouts(running, s)))
    assert balances(m, "sub-merchants", by_worker)["settled"] == 0
    assert balances(m, "sub-merchants", by_cli)["settled"] == 0
    books_balance(running)
