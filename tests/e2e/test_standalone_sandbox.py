"""The platform talking to a standalone sandbox (`piaohao sandbox serve`) over real HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.e2e.test_payments import assert_books_balance, create, start, succeed, wait_status
from tests.support import patient
from tests.support.merchant import wait_until
from tests.support.servers import free_port


@pytest.fixture
def standalone_sandbox(tmp_path):
    port = free_port()
    exe = shutil.which("piaohao") or os.path.join(os.path.dirname(sys.executable), "piaohao")
    proc = subprocess.Popen([exe, "sandbox", "serve", "--port", str(port), "--database-url",
                             f"sqlite:///{tmp_path}/standalone-sandbox.db"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _up(url + "/health"), timeout_s=30), "sandbox did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _up(url: str) -> bool:
    try:
        return patient.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_payment_through_a_standalone_sandbox(make_platform, standalone_sandbox, receiver):
    running = make_platform(sandbox_url=standalone_sandbox)
    m = running.merchant()
    trade = create(m, receiver)
    redirect = start(trade)
    assert redirect.startswith(standalone_sandbox + "/pay/")
    succeed(redirect)
    assert wait_status(m, trade, "succeeded", timeout_s=30)
    assert wait_until(lambda: receiver.events("trade.succeeded"))
    assert_books_balance(running)
