"""The console's other actions call the same use cases as the CLI, each audited with the signed-in
operator: findings resolve, notification resend, refund retry, ledger check; and `piaohao
operators` creates operators whose password is shown once and kept only as a hash."""

from __future__ import annotations

import json

from sqlalchemy import select, update
from typer.testing import CliRunner

from piaohao.cli import app as cli
from piaohao.db.schema import audit_log, outbox_events
from piaohao.db.schema_console import operators
from piaohao.db.schema_members import disbursements
from piaohao.db.schema_recon import recon_findings
from piaohao.db.schema_refunds import refunds
from piaohao.recon.findings import Finding, record
from piaohao.services import notifications
from piaohao.services.operators import sign_in
from tests.conftest import TEST_SECRET_KEY
from tests.console.helpers import signed_in
from tests.members.conftest import BANK_OK, PASSWORD, fund_member, new_member
from tests.refunds.helpers import paid_trade, refund


def _audit(running, action: str) -> list[dict]:
    with running.platform.db.read() as conn:
        return [dict(r) for r in conn.execute(select(audit_log).where(audit_log.c.action == action)).mappings()]


def test_an_operator_accepts_a_reconciliation_finding_with_a_note(console):
    p = console.platform
    [fid] = p.db.write(lambda conn: record(conn, p, [Finding(cls="platform_only", subject_type="payment",
                                                             subject_id="pay_demo", channel="sandbox",
                                                             expected=100, actual=None)],
                                           run_id=None, now=p.clock.now()))
    viewer = signed_in(console, "vera", "viewer")
    assert "pay_demo" in viewer.get("/console/queue").text
    assert viewer.post(f"/console/findings/{fid}/resolve", {"action": "accept", "note": "no"}).status_code == 403
    user = signed_in(console, "olga", "operator")
    assert user.post(f"/console/findings/{fid}/resolve", {"action": "accept", "note": ""}).status_code == 400
    r = user.post(f"/console/findings/{fid}/resolve", {"action": "accept", "note": "test payment, voided"})
    assert r.status_code == 303
    with p.db.read() as conn:
        row = conn.execute(select(recon_findings).where(recon_findings.c.finding_id == fid)).mappings().one()
    assert row["status"] == "resolved" and row["resolved_by"] == "olga"
    [entry] = _audit(console, "finding.accept")
    assert entry["operator"] == "olga" and entry["object_id"] == fid and entry["note"] == "test payment, voided"
    assert "No open findings." in user.get("/console/queue").text


def test_an_operator_resends_a_parked_notification(console):
    p = console.platform
    m = console.merchant()

    def parked(conn):
        eid = notifications.enqueue(conn, now=p.clock.now(), merchant_id=m.merchant_id, app_id=m.app_id,
                                    type="trade.succeeded", subject_id="tr_demo", data={"trade_no": "tr_demo"},
                                    notify_url="http://127.0.0.1:9/n")
        conn.execute(update(outbox_events).where(outbox_events.c.event_id == eid).values(
            status="parked", parked_at=p.clock.now(), attempts=4, last_error="HTTP 500"))
        return eid

    eid = p.db.write(parked)
    user = signed_in(console, "olga", "operator")
    assert eid in user.get("/console/queue").text
    r = user.post(f"/console/notifications/{eid}/resend", {"back": "/console/queue"})
    assert r.status_code == 303
    assert notifications.get_event(p.db, eid)["status"] == "pending"
    assert [(a["operator"], a["object_id"]) for a in _audit(console, "notification.resend")] == [("olga", eid)]
    assert user.post("/console/notifications/evt_nope/resend", {}).status_code == 404


def test_an_operator_runs_the_ledger_check(console):
    user = signed_in(console, "olga", "operator")
    r = user.post("/console/ledger/check", {})
    assert r.status_code == 200 and "Ledger ok" in r.text
    assert [a["operator"] for a in _audit(console, "ledger.check")] == ["olga"]


def test_retrying_a_refund_that_is_not_parked_is_refused_with_its_reason(console):
    user = signed_in(console, "olga", "operator")
    r = user.post("/console/refunds/rf_nope/retry", {})
    assert r.status_code == 404 and "rf_nope" in r.text
    assert _audit(console, "refund.retry") == []


def test_operators_add_shows_the_password_once_and_keeps_only_its_hash(console, monkeypatch):
    monkeypatch.setenv("PIAOHAO_DATABASE_URL", console.settings.database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", TEST_SECRET_KEY)
    runner = CliRunner()
    result = runner.invoke(cli, ["operators", "add", "ada", "--role", "admin", "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout.strip().splitlines()[-1])
    assert made["name"] == "ada" and made["role"] == "admin" and len(made["password"]) >= 20
    with console.platform.db.read() as conn:
        stored = conn.execute(select(operators.c.password_hash).where(operators.c.name == "ada")).scalar_one()
    assert made["password"] not in stored and stored.startswith("scrypt$")
    operator, _token = sign_in(console.platform, "ada", made["password"])
    assert operator.role == "admin"
    again = runner.invoke(cli, ["operators", "add", "ada", "--role", "viewer"])
    assert again.exit_code == 1 and "OPERATOR_EXISTS" in again.output
    assert runner.invoke(cli, ["operators", "add", "bob", "--role", "boss"]).exit_code == 2
    listed = runner.invoke(cli, ["operators", "list", "--json"])
    rows = json.loads(listed.stdout.strip().splitlines()[-1])
    assert [(r["name"], r["role"]) for r in rows] == [("ada", "admin")]
    assert "scrypt" not in listed.stdout and made["password"] not in listed.stdout


def test_an_operator_retries_a_parked_refund_from_the_queue(console, receiver):
    p, m = console.platform, console.merchant()
    trade = paid_trade(m, receiver, amount=100)
    console.assembly.sandbox_service.set_fault("refund", "error", count=1)
    no = refund(m, trade, "R1", 100).json()["refund_no"]
    p.db.write(lambda conn: conn.execute(update(refunds).where(refunds.c.refund_no == no).values(
        parked_at=p.clock.now(), next_attempt_at=None, channel_calls=9)))
    user = signed_in(console, "olga", "operator")
    assert f'action="/console/refunds/{no}/retry"' in user.get("/console/queue").text
    assert f'action="/console/refunds/{no}/retry"' in user.get("/console/refunds?parked=true").text
    r = user.post(f"/console/refunds/{no}/retry", {"note": "bank is back", "back": "/console/refunds?parked=true"})
    assert r.status_code == 303 and r.headers["location"] == "/console/refunds?parked=true&done=refund.retry"
    with p.db.read() as conn:
        row = conn.execute(select(refunds).where(refunds.c.refund_no == no)).mappings().one()
    assert row["parked_at"] is None and row["next_attempt_at"] is not None
    [entry] = _audit(console, "refund.retry")
    assert entry["operator"] == "olga" and entry["object_id"] == no and entry["note"] == "bank is back"
    assert user.post(f"/console/refunds/{no}/retry", {}).status_code == 409  # not parked any more


def test_an_operator_retries_a_parked_withdrawal_shown_with_its_bank_number_masked(console):
    p, m = console.platform, console.merchant()
    member = new_member(m, name="Han Meimei")
    fund_member(console, member["member_id"], 500)
    r = m.call("POST", "/v1/withdrawals", {"out_request_no": "W1", "member_id": member["member_id"], "amount": 200,
                                           "bank_account": BANK_OK, "payment_password": PASSWORD})
    assert r.status_code == 201, r.text
    number = r.json()["withdrawal_no"]
    p.db.write(lambda conn: conn.execute(update(disbursements).where(disbursements.c.disbursement_no == number)
                                         .values(parked_at=p.clock.now(), next_attempt_at=None, attempts=10)))
    user = signed_in(console, "olga", "operator")
    assert "Han Meimei" in user.get(f"/console/members?merchant_id={m.merchant_id}").text
    page = user.get("/console/payouts?parked=true").text
    assert number in page and "¥2.00" in page and "***************0001" in page
    assert BANK_OK["number"] not in page
    assert user.post(f"/console/payouts/{number}/retry", {"back": "/console/queue"}).status_code == 303
    with p.db.read() as conn:
        row = conn.execute(select(disbursements).where(disbursements.c.disbursement_no == number)).mappings().one()
    assert row["parked_at"] is None and row["next_attempt_at"] is not None
    assert [(a["operator"], a["object_id"]) for a in _audit(console, "withdrawal.retry")] == [("olga", number)]
