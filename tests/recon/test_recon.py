"""Reconciliation end to end on SQLite and PostgreSQL: a clean day, every sandbox bill fault,
corrupted money fields, reruns, resolving (accept, adjust) and the near-real-time worker."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from typer.testing import CliRunner

from piaohao import ledger
from piaohao.db.schema import payments
from piaohao.db.schema_recon import recon_findings
from piaohao.db.schema_refunds import refunds
from piaohao.kernel.clock import FakeClock
from piaohao.recon import findings as queue
from piaohao.recon import rules
from piaohao.recon.matching import BillLine, OurRecord, match_duckdb, match_python
from piaohao.recon.run import realtime_pass, run_day
from piaohao.workers.recon import ReconWorker
from tests.refunds.helpers import create_trade, refund, start, trade_of, wait_refund
from tests.support import patient
from tests.support.merchant import wait_until
from tests.support.steps import StepRecorder


def _start(trade) -> str:
    """The buyer opens the sandbox; a loaded machine may time the first try out (it is safe to retry)."""
    for _ in range(4):
        r = patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30)
        if r.status_code == 200:
            return r.json()["redirect_url"]
    return start(trade)


def _pay(running, m, receiver, out_trade_no: str, amount: int, bill: str | None = None) -> dict:
    trade = create_trade(m, receiver, out_trade_no, amount)
    body = {"bill": bill} if bill else None
    r = patient.post(_start(trade) + "/succeed", json=body, timeout=30)
    assert r.status_code < 300, r.text
    assert wait_until(lambda: trade_of(m, trade)["status"] == "succeeded")
    return trade_of(m, trade)


def _today(running):
    return running.platform.clock.now().astimezone(running.platform.settings.tz).date()


def _classes(found) -> list[tuple[str, str, str]]:
    return sorted((f["class"], f["subject_type"], f["subject_id"]) for f in found)


def _finding_count(running) -> int:
    with running.platform.db.read() as conn:
        return conn.execute(select(func.count()).select_from(recon_findings)).scalar_one()


def test_a_day_without_faults_reconciles_with_zero_findings_on_both_engines(make_platform, receiver):
    running = make_platform(recon_grace_s=0)
    m = running.merchant()
    t1 = _pay(running, m, receiver, "C1", 500)
    _pay(running, m, receiver, "C2", 700)
    r = refund(m, t1, "R1", 200)
    assert r.status_code in (200, 201), r.text
    assert wait_refund(m, r.json()["refund_no"], "succeeded")
    steps = StepRecorder()
    for engine in ("python", "duckdb"):
        res = run_day(running.platform, _today(running), engine=engine, progress=steps)
        assert res.findings == [] and res.summary == {} and res.errors == [], res.as_dict()
        assert res.matched == 3 and res.channels == ["sandbox"] and res.engine == engine
    assert _finding_count(running) == 0 and ledger.check(running.platform.db) == []
    day = _today(running).isoformat()  # what `recon run`'s progress bar shows, per run
    one_run = [("start", f"recon {day}", 2), ("advance", "sandbox"), ("advance", "record checks and rules")]
    assert steps.calls == one_run * 2


def test_each_sandbox_bill_fault_is_exactly_its_finding_and_reruns_add_none(make_platform, receiver):
    running = make_platform(recon_grace_s=0)
    m = running.merchant()
    _pay(running, m, receiver, "OK1", 300)
    omitted = _pay(running, m, receiver, "OM1", 301, bill="omit")
    short = _pay(running, m, receiver, "AO1", 302, bill="amount_off")
    twice = _pay(running, m, receiver, "DU1", 303, bill="duplicate")
    day = _today(running)
    extra = patient.post(running.url + "/sandbox/bill/extra", json={"date": day.isoformat(), "amount": 999})
    assert extra.status_code == 201, extra.text
    res = run_day(running.platform, day)
    assert _classes(res.findings) == sorted([
        ("platform_only", "trade", omitted["trade_no"]), ("amount_mismatch", "trade", short["trade_no"]),
        ("duplicate", "trade", twice["trade_no"]), ("channel_only", "channel_txn", extra.json()["txn_no"])])
    by_class = {f["class"]: f for f in res.findings}
    assert by_class["amount_mismatch"]["expected"] == 302 and by_class["amount_mismatch"]["actual"] == 301
    assert by_class["channel_only"]["actual"] == 999 and by_class["platform_only"]["expected"] == 301
    assert res.matched == 2  # OK1 and DU1 (once); AO1 is a mismatch
    before = _finding_count(running)
    again = run_day(running.platform, day, engine="duckdb")
    assert _classes(again.findings) == _classes(res.findings) and _finding_count(running) == before == 4
    kinds = {a["kind"] for a in queue_alerts(running)}
    assert {"recon.platform_only", "recon.amount_mismatch", "recon.duplicate", "recon.channel_only"} <= kinds


def queue_alerts(running) -> list[dict]:
    from piaohao.alerts import list_alerts
    return list_alerts(running.platform.db, status=None)


def test_resolving_accept_and_adjust_keeps_the_books_clean_and_is_not_raised_again(make_platform, receiver):
    running = make_platform(recon_grace_s=0)
    m = running.merchant()
    omitted = _pay(running, m, receiver, "OM2", 410, bill="omit")
    day = _today(running)
    patient.post(running.url + "/sandbox/bill/extra", json={"date": day.isoformat(), "amount": 77})
    res = run_day(running.platform, day)
    by_class = {f["class"]: f for f in res.findings}
    assert set(by_class) == {"platform_only", "channel_only"}
    p = running.platform
    adjusted = queue.resolve(p, by_class["channel_only"]["finding_id"], action="adjust", note="claimed at channel",
                             operator="alice")
    legs = adjusted["resolution"]["adjustment"]["legs"]
    assert sorted(leg["amount"] for leg in legs) == [-77, 77] and adjusted["resolution"]["operator"] == "alice"
    accepted = queue.resolve(p, by_class["platform_only"]["finding_id"], action="accept", note="bill late",
                             operator="bob")
    assert accepted["status"] == "resolved" and accepted["resolution"]["action"] == "accept"
    assert ledger.check(p.db) == []
    with p.db.read() as conn:
        assert ledger.get_entry(conn, ("recon_finding", by_class["channel_only"]["finding_id"], "adjust"))
    rerun = run_day(p, day)
    assert rerun.findings == [] and _finding_count(running) == 2
    assert queue.list_findings(p, open_only=True) == []
    assert omitted["trade_no"] == by_class["platform_only"]["subject_id"]


def test_corrupted_money_fields_are_found_by_their_checks(make_platform, receiver):
    running = make_platform(recon_grace_s=0)
    m = running.merchant()
    a = _pay(running, m, receiver, "X1", 600)
    b = _pay(running, m, receiver, "X2", 800)
    r = refund(m, b, "RX2", 100).json()
    assert wait_refund(m, r["refund_no"], "succeeded")
    p = running.platform
    assert realtime_pass(p).findings == []
    p.db.write(lambda conn: conn.execute(update(payments).where(payments.c.trade_no == a["trade_no"]).values(
        amount=payments.c.amount + 1)))
    p.db.write(lambda conn: conn.execute(update(refunds).where(refunds.c.refund_no == r["refund_no"]).values(
        amount=refunds.c.amount + 5)))
    found = realtime_pass(p).findings
    assert sorted((f["class"], f["subject_id"]) for f in found) == sorted([
        ("ledger_mismatch", a["trade_no"]), ("ledger_mismatch", r["refund_no"]), ("sum_mismatch", b["trade_no"])])
    day_run = run_day(p, _today(running))
    assert ("amount_mismatch", "trade", a["trade_no"]) in _classes(day_run.findings)


def test_the_worker_finds_a_corrupted_amount_within_two_intervals(make_platform, receiver):
    clock = FakeClock(datetime.now().astimezone())
    running = make_platform(clock=clock, recon_interval_s=60)
    m = running.merchant()
    t = _pay(running, m, receiver, "W1", 250)
    worker = ReconWorker(running.platform)
    worker.run_once()
    clock.advance(10)
    corrupted_at = clock.now()
    running.platform.db.write(lambda conn: conn.execute(text(
        "UPDATE payments SET amount = amount - 1 WHERE trade_no = :t"), {"t": t["trade_no"]}))
    detected_at = None
    for _ in range(8):
        clock.advance(15)
        worker.run_once()
        if queue.list_findings(running.platform, open_only=True, cls="ledger_mismatch"):
            detected_at = clock.now()
            break
    assert detected_at is not None and detected_at - corrupted_at <= timedelta(seconds=2 * 60)
    assert any(a["kind"] == "recon.ledger_mismatch" for a in queue_alerts(running))


def test_custom_rules_are_read_only_selects_whose_rows_are_findings(make_platform, receiver, tmp_path):
    running = make_platform(recon_grace_s=0)
    m = running.merchant()
    big = _pay(running, m, receiver, "BIG", 5000)
    p = running.platform
    for bad in ("DELETE FROM trades", "SELECT 1; DELETE FROM trades", "UPDATE trades SET amount = 0",
                "WITH x AS (SELECT 1) DELETE FROM trades"):
        try:
            rules.add_rule(p, "bad", bad)
        except Exception as e:  # noqa: BLE001
            assert "INVALID_REQUEST" in getattr(e, "code", "")
        else:
            raise AssertionError(bad)
    rules.add_rule(p, "big-trades", "SELECT 'trade' AS subject_type, trade_no AS subject_id, '{}' AS details "
                                    "FROM trades WHERE amount > 1000")
    found = realtime_pass(p).findings
    assert [(f["class"], f["subject_id"]) for f in found] == [("custom", big["trade_no"])]
    rules.disable_rule(p, "big-trades")
    assert [r["status"] for r in rules.list_rules(p)] == ["disabled"]


def test_cli_findings_resolve_and_report_print_json(make_platform, receiver, tmp_path):
    from piaohao.cli import app
    running = make_platform(recon_grace_s=0)
    m = running.merchant()
    _pay(running, m, receiver, "CL1", 120, bill="amount_off")
    day = _today(running)
    env = {"PIAOHAO_DATABASE_URL": running.settings.database_url, "PIAOHAO_SECRET_KEY": running.settings.secret_key,
           "PIAOHAO_SANDBOX": "off"}
    cli = CliRunner()
    run_env = dict(env, PIAOHAO_SANDBOX="on", PIAOHAO_BASE_URL=running.url, PIAOHAO_RECON_GRACE_S="0",
                   PIAOHAO_SANDBOX_DATABASE_URL=running.settings.channel_env["PIAOHAO_SANDBOX_DATABASE_URL"])
    ran = cli.invoke(app, ["recon", "run", "--date", day.isoformat(), "--json"], env=run_env)
    assert ran.exit_code == 1, ran.output
    report_line = [ln for ln in ran.output.splitlines() if ln.startswith('{"run_id"')][-1]
    assert json.loads(report_line)["summary"] == {"amount_mismatch": 1}
    out = cli.invoke(app, ["recon", "findings", "--open", "--json"], env=env)
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["class"] for r in rows] == ["amount_mismatch"]
    done = cli.invoke(app, ["recon", "resolve", rows[0]["finding_id"], "--action", "adjust", "--note", "fee",
                            "--operator", "carol", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["resolution"]["operator"] == "carol"
    rep = cli.invoke(app, ["recon", "report", "--date", day.isoformat()], env=env)
    assert json.loads(rep.output)["summary"] == {"amount_mismatch": {"open": 0, "resolved": 1}}
    csv_out = cli.invoke(app, ["recon", "report", "--date", day.isoformat(), "--format", "csv"], env=env)
    assert csv_out.output.splitlines()[0].startswith("finding_id,class")
    assert ledger.check(running.platform.db) == []


def test_both_engines_give_the_same_result_on_the_same_data():
    rnd = random.Random(7)
    ours = [OurRecord("payment", f"p{i}", 100 + i, "CNY", f"t{i}", "2026-11-23T01:00:00+00:00") for i in range(3000)]
    bill = []
    for i, o in enumerate(ours):
        if i % 97 == 0:
            continue  # platform only
        amount = o.amount - 1 if i % 89 == 0 else o.amount
        bill.append(BillLine("payment", o.key, amount, "CNY", f"T{i}", o.finished_at, len(bill) + 1))
        if i % 83 == 0:
            bill.append(BillLine("payment", o.key, amount, "CNY", f"T{i}", o.finished_at, len(bill) + 1))
    bill += [BillLine("payment", f"x{i}", 5, "CNY", f"X{i}", "2026-11-23T02:00:00+00:00", len(bill) + 1)
             for i in range(11)]
    rnd.shuffle(bill)
    py, dk = match_python(bill, ours), match_duckdb(bill, ours)
    assert py.signature() == dk.signature()
    assert (len(py.ours_only), len(py.bill_only), len(py.mismatched)) == (31, 11, 33)
    assert len(py.duplicates) > 0 and py.matched > 2800
