"""The manual-handling queue (API.md "Operations"): alerts deduplicated and rate-limited per source,
filtered and paged; resolve, retry and payment resolution from the command line, each audited."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from piaohao import ledger
from piaohao.alerts import SOURCE_ALERTS_MAX, raise_alert_now
from piaohao.cli import app as cli
from piaohao.db.schema import alerts, audit_log, payments
from piaohao.db.schema_members import disbursements
from piaohao.db.schema_refunds import refunds
from piaohao.services.refund_tries import execute_refund
from piaohao.workers.payouts import PayoutExecutor
from tests.conftest import TEST_SECRET_KEY
from tests.e2e.test_payments import signed_sandbox_notification
from tests.members.conftest import BANK_OK, PASSWORD, fund_member, new_member
from tests.refunds.helpers import create_trade, paid_trade, refund, start, wait_refund
from tests.support import patient


@pytest.fixture
def ops(running, monkeypatch):
    """Run `piaohao ...` against the running platform's database; returns parsed JSON."""
    monkeypatch.setenv("PIAOHAO_DATABASE_URL", running.settings.database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", TEST_SECRET_KEY)
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args))
        if ok:
            assert result.exit_code == 0, (args, result.output)
            return _json(result.stdout) if "--json" in args else result.stdout
        return result

    return run


def _json(stdout: str):
    """The command's JSON (its last line; log lines of an unconfigured test process come before it)."""
    return json.loads(stdout.strip().splitlines()[-1])


def _count(running, table, *where) -> int:
    with running.platform.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_a_flood_of_forged_notifications_from_one_source_does_not_bury_a_critical_alert(running, receiver, ops):
    m = running.merchant()
    notify = running.platform.channel_notify_url("sandbox")
    for i in range(3 * SOURCE_ALERTS_MAX):
        body = json.dumps({"kind": "payment", "out_trade_no": f"pay_forged{i:04d}"}).encode()
        r = patient.post(notify, content=body, headers={"X-Sandbox-Signature": "AAAA", "X-Sandbox-Timestamp": "1"})
        assert r.status_code == 400
    rejected = _count(running, alerts, alerts.c.kind == "notification_rejected")
    assert rejected == SOURCE_ALERTS_MAX  # the rest are counted on one flood alert
    flood = ops("alerts", "list", "--kind", "alert_flood", "--json")
    assert len(flood) == 1 and flood[0]["occurrences"] == 2 * SOURCE_ALERTS_MAX
    # The same forged notification again only counts.
    body = json.dumps({"kind": "payment", "out_trade_no": "pay_forged0000"}).encode()
    patient.post(notify, content=body, headers={"X-Sandbox-Signature": "AAAA", "X-Sandbox-Timestamp": "1"})
    assert _count(running, alerts, alerts.c.kind == "notification_rejected") == SOURCE_ALERTS_MAX

    # A signed notification about a payment we never made: critical, and on top of its filter.
    trade = create_trade(m, receiver, "A1", 100)
    start(trade)
    with running.platform.db.read() as conn:
        payment_no = conn.execute(select(payments.c.payment_no).where(payments.c.trade_no == trade["trade_no"])
                                  ).scalar_one()
    headers, body = signed_sandbox_notification(running, payment_no, 100)
    from piaohao.channels.sandbox import rsa
    from piaohao.channels.sandbox.wire import HEADER_SIGNATURE, HEADER_TIMESTAMP, response_canonical

    forged = body.replace(payment_no.encode(), b"pay_unknown0000000000000")
    keys = running.assembly.sandbox_store.channel_keys()
    headers[HEADER_SIGNATURE] = rsa.sign(keys.private_pem, response_canonical(headers[HEADER_TIMESTAMP], forged))
    assert patient.post(notify, content=forged, headers=headers).status_code == 200
    critical = ops("alerts", "list", "--severity", "critical", "--limit", "1", "--json")
    assert [a["kind"] for a in critical] == ["unknown_payment"]
    assert set(critical[0]) >= {"alert_id", "kind", "severity", "subject_type", "subject_id", "message", "status",
                                "created_at"}
    page1 = ops("alerts", "list", "--limit", "5", "--json")
    page2 = ops("alerts", "list", "--limit", "5", "--before", page1[-1]["alert_id"], "--json")
    assert len(page1) == len(page2) == 5 and int(page2[0]["alert_id"]) < int(page1[-1]["alert_id"])


def test_resolving_an_alert_closes_it_with_an_audit_record(running, ops):
    p = running.platform
    raise_alert_now(p.db, now=p.clock.now(), kind="refund_stuck", message="look at me", subject_type="refund",
                    subject_id="rf_1")
    alert_id = ops("alerts", "list", "--json")[0]["alert_id"]
    done = ops("alerts", "resolve", alert_id, "--note", "checked at the bank", "--operator", "alice", "--json")
    assert done["status"] == "resolved" and done["resolved_by"] == "alice"
    assert ops("alerts", "list", "--json") == []
    assert ops("alerts", "list", "--all", "--json")[0]["alert_id"] == alert_id
    again = ops("alerts", "resolve", alert_id, "--note", "twice", ok=False)
    assert again.exit_code == 1 and "OPERATION_NOT_ALLOWED" in again.output
    audit = ops("audit", "list", "--json")
    assert audit[0] | {"at": None} == {"at": None, "operator": "alice", "action": "alert.resolve",
                                       "object_type": "alert", "object_id": alert_id, "note": "checked at the bank",
                                       "details": audit[0]["details"]}


def test_payments_resolve_settles_a_payment_through_the_channel_answer_path(running, receiver, ops):
    m = running.merchant()
    trade = create_trade(m, receiver, "A1", 250)
    start(trade)
    with running.platform.db.read() as conn:
        payment_no = conn.execute(select(payments.c.payment_no).where(payments.c.trade_no == trade["trade_no"])
                                  ).scalar_one()
    bad = ops("payments", "resolve", payment_no, "--status", "maybe", "--note", "x", ok=False)
    assert bad.exit_code == 1
    out = ops("payments", "resolve", payment_no, "--status", "succeeded", "--channel-txn-no", "T123",
              "--note", "seen in the channel console", "--operator", "bob", "--json")
    assert out["status"] == "succeeded" and out["effect"] == "succeeded"
    assert m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"] == "succeeded"
    assert ledger.check(running.platform.db) == []
    again = ops("payments", "resolve", payment_no, "--status", "failed", "--note", "oops", ok=False)
    assert again.exit_code == 1 and "OPERATION_NOT_ALLOWED" in again.output
    assert ops("audit", "list", "--json")[0]["action"] == "payment.resolve"


def test_refunds_retry_re_drives_a_parked_refund(make_platform, receiver, monkeypatch):
    running = make_platform(workers=False)
    monkeypatch.setenv("PIAOHAO_DATABASE_URL", running.settings.database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", TEST_SECRET_KEY)
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    running.assembly.sandbox_service.set_fault("refund", "error", count=1)
    no = refund(m, trade, "R1", 100).json()["refund_no"]
    p = running.platform
    p.db.write(lambda conn: conn.execute(update(refunds).where(refunds.c.refund_no == no).values(
        parked_at=p.clock.now(), next_attempt_at=None, channel_calls=9)))
    runner = CliRunner()
    assert runner.invoke(cli, ["refunds", "retry", "rf_nope"]).exit_code == 1
    result = runner.invoke(cli, ["refunds", "retry", no, "--note", "bank is back", "--json"])
    assert result.exit_code == 0, result.output
    with p.db.read() as conn:
        row = conn.execute(select(refunds).where(refunds.c.refund_no == no)).mappings().one()
    assert row["parked_at"] is None and row["next_attempt_at"] is not None and row["channel_calls"] == 1
    # claimable again: this try reaches the channel, whose own notification of the success may be
    # applied first (seen under load), so the try can find the refund already settled
    assert execute_refund(p, no) in ("succeeded", "duplicate", "waiting", "unknown")
    assert wait_refund(m, no, "succeeded")
    assert runner.invoke(cli, ["refunds", "retry", no]).exit_code == 1  # not parked any more
    assert _count(running, audit_log, audit_log.c.action == "refund.retry") == 1


def test_payouts_retry_re_drives_a_parked_withdrawal(make_platform, monkeypatch):
    running = make_platform(workers=False)
    monkeypatch.setenv("PIAOHAO_DATABASE_URL", running.settings.database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", TEST_SECRET_KEY)
    m = running.merchant()
    member = new_member(m)
    fund_member(running, member["member_id"], 500)
    r = m.call("POST", "/v1/withdrawals", {"out_request_no": "W1", "member_id": member["member_id"], "amount": 200,
                                           "bank_account": BANK_OK, "payment_password": PASSWORD})
    assert r.status_code == 201, r.text
    number = r.json()["withdrawal_no"]
    p = running.platform
    p.db.write(lambda conn: conn.execute(update(disbursements).where(disbursements.c.disbursement_no == number)
                                         .values(parked_at=p.clock.now(), next_attempt_at=None, attempts=10)))
    runner = CliRunner()
    result = runner.invoke(cli, ["payouts", "retry", number, "--operator", "carol", "--json"])
    assert result.exit_code == 0, result.output
    assert PayoutExecutor(p).run_once() == 1  # due again: queried, and sent since the channel never had it
    with p.db.read() as conn:
        row = conn.execute(select(disbursements).where(disbursements.c.disbursement_no == number)).mappings().one()
    assert row["parked_at"] is None and row["status"] in ("processing", "succeeded")
    audit = _json(runner.invoke(cli, ["audit", "list", "--json"]).stdout)
    assert audit[0]["action"] == "withdrawal.retry" and audit[0]["operator"] == "carol"
    assert ledger.check(p.db) == []
