"""Members and business types: every platform a test makes must end with consistent books."""

from __future__ import annotations

import secrets

import pytest

from piaohao.books import chart
from piaohao.ledger import write as ledger
from tests.support import patient
from tests.support.merchant import MerchantClient, wait_until

PASSWORD = "246810"
BANK_OK = {"bank": "ICBC", "number": "6222020200112230001", "name": "Li Lei"}
BANK_REFUSED = {"bank": "ICBC", "number": "6222020200112230002", "name": "Li Lei"}
BANK_TIMES_OUT = {"bank": "ICBC", "number": "6222020200112230003", "name": "Li Lei"}


@pytest.fixture
def make_platform(make_platform):
    """The shared factory, plus `piaohao.ledger.check` on every platform once the test is done."""
    made = []

    def make(*args, **kwargs):
        running = make_platform(*args, **kwargs)
        made.append(running)
        return running

    yield make
    for running in made:
        assert ledger.check(running.platform.db) == []


def key(prefix: str = "K") -> str:
    return prefix + secrets.token_hex(6)


def new_member(m: MerchantClient, name: str = "Li Lei", **extra) -> dict:
    body = {"out_member_id": key("u-"), "name": name, "payment_password": PASSWORD, **extra}
    r = m.call("POST", "/v1/members", body)
    assert r.status_code == 201, r.text
    return r.json()


def accounts(m: MerchantClient, member_id: str) -> dict:
    r = m.call("GET", f"/v1/members/{member_id}")
    assert r.status_code == 200, r.text
    return r.json()["accounts"]


def fund_member(running, member_id: str, amount: int, currency: str = "CNY") -> None:
    """Put money on a member's balance directly (from platform suspense): for tests that need a
    balance without going through a top-up."""
    def tx(conn):
        suspense = chart.platform_suspense(conn, currency)
        balance = chart.member_balance(conn, member_id, currency)
        ledger.transfer(conn, ("test_fund", member_id, key("op")), suspense.account_id, balance.account_id, amount)
    running.platform.db.write(tx)


def fund_settled(running, merchant_id: str, amount: int, currency: str = "CNY") -> None:
    """Credit the merchant's settled account directly (settlement is another issue)."""
    def tx(conn):
        suspense = chart.platform_suspense(conn, currency)
        settled = chart.merchant_settled(conn, merchant_id, currency)
        ledger.transfer(conn, ("test_fund", merchant_id, key("op")), suspense.account_id, settled.account_id, amount)
    running.platform.db.write(tx)


def pay_on_sandbox(pay_url: str, outcome: str = "succeed") -> str:
    r = patient.post(pay_url + "/pay", json={"method": "sandbox"}, timeout=30)
    assert r.status_code == 200, r.text
    redirect = r.json()["redirect_url"]
    done = patient.post(f"{redirect}/{outcome}", timeout=30)
    assert done.status_code < 300, done.text
    return redirect


def wait_status(m: MerchantClient, path: str, status: str, timeout_s: float = 30) -> dict:
    last: dict = {}

    def reached():
        nonlocal last
        last = m.call("GET", path).json()
        return last.get("status") == status

    assert wait_until(reached, timeout_s), f"{path} is not {status}: {last}"
    return last
