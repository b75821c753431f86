"""No secret, full bank account / id / card number, password hash or SQL parameter in any log line,
tracebacks included: a full run of `piaohao serve` is grepped for the secrets it was given."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import httpx
import pytest
from sqlalchemy import create_engine, text

from piaohao.kernel.logs import scrub_text
from tests.e2e.test_serve_processes import stop
from tests.support import patient
from tests.support.merchant import MerchantClient, Receiver, wait_until
from tests.support.servers import free_port

PASSWORD = "Qx7pw9zz"
BANK_NUMBER = "6222020200112230001"
OTHER_BANK_NUMBER = "6217000010034589921"
ID_NUMBER = "11010119900307123X"
SECRET_KEY = "log-scrub-test-secret-key-0123456789abcdef"


def test_scrub_text_masks_numbers_hashes_keys_and_parameters():
    line = (f'acct {BANK_NUMBER} id {ID_NUMBER} hash scrypt$16384$8$1$00ff$abcdef01 '
            '[parameters: (\'s3cr3t\', 42)]\n(Background on this error at: https://sqlalche.me/e/20/gkpj) '
            '-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY----- Bearer abc.def')
    out = scrub_text(line)
    for leaked in (BANK_NUMBER, ID_NUMBER, "scrypt$", "s3cr3t", "MIIEv", "abc.def"):
        assert leaked not in out, (leaked, out)
    assert "****0001" in out and "****7123X" in out


def test_a_database_error_logged_with_its_traceback_shows_no_parameter(tmp_path):
    script = textwrap.dedent(f"""
        import logging, structlog
        from sqlalchemy import text
        from piaohao.kernel.logs import configure
        from piaohao.db.database import Database
        configure("INFO")
        db = Database("sqlite:///{tmp_path}/x.db")
        db.write(lambda c: c.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")))
        for _ in range(2):
            try:
                db.write(lambda c: c.execute(text("INSERT INTO t VALUES (:k, :v)"),
                                             {{"k": "{BANK_NUMBER}", "v": "scrypt$16384$8$1$00$ff"}}))
            except Exception:
                structlog.get_logger("t").exception("failed", password="{PASSWORD}", secret_key="{SECRET_KEY}")
                logging.getLogger("std").exception("failed too")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    logs = done.stdout + done.stderr
    assert "IntegrityError" in logs and "Traceback" in logs, logs
    for leaked in (BANK_NUMBER, "scrypt$", PASSWORD, SECRET_KEY):
        assert leaked not in logs, (leaked, logs)


@pytest.mark.timeout(600)  # a whole run through a served process: minutes on a loaded machine
def test_a_full_run_logs_no_secret(database_url, tmp_path):
    exe = shutil.which("piaohao") or os.path.join(os.path.dirname(sys.executable), "piaohao")
    port = free_port()
    env = dict(os.environ, PIAOHAO_DATABASE_URL=database_url, PIAOHAO_RATE_LIMIT_PER_S="0",
               PIAOHAO_SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path}/sandbox.db", PIAOHAO_NOTIFY_RETRY_S="0.2,0.2",
               PIAOHAO_WORKER_POLL_S="0.05", PIAOHAO_LOG_LEVEL="DEBUG", PIAOHAO_SANDBOX="on",
               PIAOHAO_SECRET_KEY=SECRET_KEY, PIAOHAO_OUTBOUND_PRIVATE="allow",
               PIAOHAO_ACTIVE_QUERY_AFTER_S="0.5")
    env.pop("PIAOHAO_BASE_URL", None)
    subprocess.run([exe, "db", "upgrade"], env=env, cwd=tmp_path, check=True, capture_output=True)
    creds = json.loads(subprocess.run([exe, "merchants", "create", "--name", "Logs", "--json"], env=env,
                                      cwd=tmp_path, check=True, capture_output=True, text=True).stdout)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen([exe, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                                  stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    receiver = Receiver()
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _up(base + "/healthz"), timeout_s=300)
        m = MerchantClient(base, creds["app_id"], creds["app_secret"])
        _flow(m, receiver)
    finally:
        stop(server)
        receiver.close()
    logs = log_path.read_text(errors="replace")
    assert "http.request" in logs and len(logs) > 1000  # it did log the run
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://")
                           if database_url.startswith("postgresql://") else database_url)
    with engine.connect() as conn:
        hashes = [h for (h,) in conn.execute(text("SELECT password_hash FROM members"))]
    engine.dispose()
    assert hashes
    for leaked in (creds["app_secret"], PASSWORD, BANK_NUMBER, OTHER_BANK_NUMBER, ID_NUMBER, SECRET_KEY,
                   "PRIVATE KEY", *hashes, *(h.split("$")[-1] for h in hashes)):
        assert leaked not in logs, leaked


def _flow(m: MerchantClient, receiver: Receiver) -> None:
    """A representative run: members, a wrong password, sub-merchants, receivers, payments, refunds,
    a withdrawal and payout, and requests that fail inside."""
    member = m.call("POST", "/v1/members", {"out_member_id": "u-1", "name": "Li Lei",
                                            "payment_password": PASSWORD}).json()
    other = m.call("POST", "/v1/members", {"out_member_id": "u-2", "name": "Han",
                                           "payment_password": PASSWORD}).json()
    bank = {"bank": "ICBC", "number": BANK_NUMBER, "name": "Li Lei"}
    for password in ("wrong-pw-1", PASSWORD):
        m.call("POST", "/v1/transfers", {"out_request_no": "T" + password[-1], "from_member_id": member["member_id"],
                                         "to_member_id": other["member_id"], "amount": 1,
                                         "payment_password": password})
    m.call("POST", "/v1/withdrawals", {"out_request_no": "W1", "member_id": member["member_id"], "amount": 1,
                                       "bank_account": bank, "payment_password": PASSWORD})
    m.call("POST", "/v1/sub-merchants", {"out_sub_merchant_id": "S1", "name": "Seller",
                                         "kyc": {"type": "individual", "legal_name": "Li", "id_number": ID_NUMBER},
                                         "bank_account": bank, "settle_after_days": 0})
    m.call("POST", "/v1/split-receivers", {"out_receiver_id": "R1", "name": "Ref",
                                           "bank_account": dict(bank, number=OTHER_BANK_NUMBER)})
    m.call("POST", "/v1/payouts", {"out_request_no": "P1", "amount": 1, "bank_account": bank})
    topup = m.call("POST", "/v1/topups", {"out_request_no": "TU1", "member_id": member["member_id"],
                                          "amount": 500, "notify_url": receiver.url}).json()
    trade = m.call("POST", "/v1/trades", {"out_trade_no": "A1", "amount": 300, "subject": "x",
                                          "order_timeout_s": 600, "notify_url": receiver.url,
                                          "member_id": member["member_id"]}).json()
    for t in (topup, trade):
        r = patient.post(t["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30)
        if r.status_code == 200:
            patient.post(r.json()["redirect_url"] + "/succeed", timeout=30)
    wait_until(lambda: receiver.events("trade.succeeded"), timeout_s=120)
    m.call("POST", "/v1/refunds", {"trade_no": trade["trade_no"], "out_request_no": "R1", "amount": 100})
    m.call("POST", "/v1/withdrawals", {"out_request_no": "W2", "member_id": member["member_id"], "amount": 100,
                                       "bank_account": bank, "payment_password": PASSWORD})
    pay = patient.post(trade["pay_url"] + "/pay", json={"components": [{"method": "balance", "amount": 300}],
                                                      "payment_password": "wrong-pw-2"}, timeout=30)
    assert pay.status_code < 500
    wait_until(lambda: False, timeout_s=2)  # let the workers log what they do


def _up(url: str) -> bool:
    try:
        return patient.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def test_third_party_lines_are_json_like_ours_and_scrubbed(tmp_path):
    # Alembic and httpx log through the standard library: their lines must parse as JSON too, so a
    # log pipeline reads one format (issue 17), and pass the same scrubber.
    script = textwrap.dedent(f"""
        import logging, structlog
        from piaohao.kernel.logs import configure
        from piaohao.db.database import Database
        from piaohao.db.migrate import upgrade
        configure("INFO")
        upgrade(Database("sqlite:///{tmp_path}/m.db"))
        logging.getLogger("httpx").info("HTTP Request: POST https://x/%s", "{BANK_NUMBER}")
        structlog.get_logger("ours").info("ours.line", n=1)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    loggers = {line.get("logger") for line in lines}
    assert any(str(name).startswith("alembic") for name in loggers), lines
    assert "httpx" in loggers and any(line.get("event") == "ours.line" for line in lines)
    assert BANK_NUMBER not in done.stderr and "****0001" in done.stderr
