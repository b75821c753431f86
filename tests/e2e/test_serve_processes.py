"""`piaohao serve --processes 2`: several API processes on one port, one database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import pytest

from tests.support import patient
from tests.support.merchant import MerchantClient, Receiver, wait_until
from tests.support.servers import free_port


@pytest.mark.timeout(600)  # two processes start and import everything: minutes on a loaded machine
def test_two_api_processes_take_payments_end_to_end(database_url, tmp_path):
    exe = shutil.which("piaohao") or os.path.join(os.path.dirname(sys.executable), "piaohao")
    port = free_port()
    env = dict(os.environ, PIAOHAO_DATABASE_URL=database_url, PIAOHAO_RATE_LIMIT_PER_S="0",
               PIAOHAO_SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path}/sandbox.db", PIAOHAO_NOTIFY_RETRY_S="0.2,0.2",
               PIAOHAO_WORKER_POLL_S="0.05", PIAOHAO_LOG_LEVEL="WARNING", PIAOHAO_SANDBOX="on",
               PIAOHAO_SECRET_KEY="serve-processes-test-secret-key-0123456789", PIAOHAO_OUTBOUND_PRIVATE="allow")
    env.pop("PIAOHAO_BASE_URL", None)
    subprocess.run([exe, "db", "upgrade"], env=env, cwd=tmp_path, check=True, capture_output=True)
    creds = json.loads(subprocess.run([exe, "merchants", "create", "--name", "Multi", "--json"], env=env,
                                      cwd=tmp_path, check=True, capture_output=True, text=True).stdout)
    server = subprocess.Popen([exe, "serve", "--port", str(port), "--processes", "2"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    receiver = Receiver()
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _up(base + "/healthz"), timeout_s=300)
        m = MerchantClient(base, creds["app_id"], creds["app_secret"])
        trades = [m.call("POST", "/v1/trades", {"out_trade_no": f"P{i}", "amount": 100 + i, "subject": "x",
                                                "order_timeout_s": 600, "notify_url": receiver.url}).json()
                  for i in range(6)]
        for t in trades:
            redirect = patient.post(t["pay_url"] + "/pay", json={"method": "sandbox"}).json()["redirect_url"]
            assert patient.post(redirect + "/succeed", timeout=30).status_code < 300
        assert wait_until(lambda: len({e["data"]["trade_no"] for e in receiver.events("trade.succeeded")}) == 6,
                          timeout_s=120)
        wait_until(lambda: False, timeout_s=1)
        assert len(receiver.events("trade.succeeded")) == 6  # two processes' workers, still one event each
        check = subprocess.run([exe, "ledger", "check"], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        stop(server)
        receiver.close()


def stop(server: subprocess.Popen) -> None:
    """Ctrl-C, as an operator would; a bounded wait (two processes shut down slowly on a loaded
    machine), then the whole process group is killed so no child outlives the test."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return patient.get(url).status_code == 200
    except httpx.HTTPError:
        return False
