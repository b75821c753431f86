"""Withdrawals: frozen at once, then paid out by the executor (gone), refused (back), or lost in
a timeout and found paid by a query."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from piaohao import ledger
from piaohao.books import chart
from piaohao.db.schema_members import disbursements
from tests.members.conftest import (
    BANK_OK,
    BANK_REFUSED,
    BANK_TIMES_OUT,
    PASSWORD,
    accounts,
    fund_member,
    key,
    new_member,
    wait_status,
)
from tests.support.merchant import wait_until


def _withdraw(m, member_id, amount, bank=BANK_OK, out_request_no=None, **extra):
    return m.call("POST", "/v1/withdrawals", {
        "out_request_no": out_request_no or key("W"), "member_id": member_id, "amount": amount,
        "bank_account": bank, "payment_password": PASSWORD, **extra})


def _clearing_posted(running) -> int:
    with running.platform.db.read() as conn:
        account = chart.lookup(conn, "channel_clearing", "sandbox", "CNY")
        return ledger.balance(conn, account.account_id).posted if account else 0


def test_withdrawal_freezes_at_once_then_leaves_the_books(make_platform, receiver):
    running = make_platform(workers=False)  # the executor runs when we say so
    m = running.merchant()
    a = new_member(m)["member_id"]
    fund_member(running, a, 6000)
    r = _withdraw(m, a, 2000, out_request_no="W1", notify_url=receiver.url)
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["status"] == "processing" and w["withdrawal_no"].startswith("wd_") and w["member_id"] == a
    assert w["bank_account"] == {"bank": "ICBC", "number": "***************0001", "name": "Li Lei"}
    assert BANK_OK["number"] not in r.text
    assert accounts(m, a)["balance"] == {"available": 4000, "frozen": 2000}
    again = _withdraw(m, a, 2000, out_request_no="W1", notify_url=receiver.url)
    assert again.status_code == 200 and again.json() == w
    assert _withdraw(m, a, 2001, out_request_no="W1").status_code == 422

    running.assembly.start_workers()
    done = wait_status(m, f"/v1/withdrawals/{w['withdrawal_no']}", "succeeded")
    assert done["finished_at"] is not None and done["fail_reason"] is None
    assert m.call("GET", "/v1/withdrawals?out_request_no=W1").json() == done
    assert accounts(m, a)["balance"] == {"available": 4000, "frozen": 0}
    assert _clearing_posted(running) == -2000  # the money left through the channel
    assert wait_until(lambda: receiver.events("withdrawal.succeeded"))
    assert receiver.events("withdrawal.succeeded")[0]["data"]["withdrawal_no"] == w["withdrawal_no"]
    assert _withdraw(m, a, 2000, out_request_no="W1", notify_url=receiver.url).json()["status"] == "succeeded"


def test_refused_withdrawal_unfreezes(running, receiver):
    m = running.merchant()
    a = new_member(m)["member_id"]
    fund_member(running, a, 3000)
    r = _withdraw(m, a, 3000, bank=BANK_REFUSED, notify_url=receiver.url)
    assert r.status_code == 201, r.text
    failed = wait_status(m, f"/v1/withdrawals/{r.json()['withdrawal_no']}", "failed")
    assert failed["fail_reason"]
    assert accounts(m, a)["balance"] == {"available": 3000, "frozen": 0}
    assert _clearing_posted(running) == 0
    assert wait_until(lambda: receiver.events("withdrawal.failed"))


@pytest.mark.timeout(300)
def test_a_timed_out_payout_is_queried_and_found_paid(make_platform):
    # The default channel timeout (5 s): the sandbox's timing-out bank answers only after it + 1 s.
    running = make_platform()
    m = running.merchant()
    a = new_member(m)["member_id"]
    fund_member(running, a, 5000)
    r = _withdraw(m, a, 1234, bank=BANK_TIMES_OUT)
    assert r.status_code == 201, r.text
    number = r.json()["withdrawal_no"]
    done = wait_status(m, f"/v1/withdrawals/{number}", "succeeded", timeout_s=120)
    assert done["bank_account"]["number"].endswith("0003")
    assert accounts(m, a)["balance"] == {"available": 3766, "frozen": 0}
    with running.platform.db.read() as conn:
        attempts = conn.execute(select(disbursements.c.attempts).where(
            disbursements.c.disbursement_no == number)).scalar_one()
    assert attempts >= 2  # the first call timed out; a query found it paid
    sandbox = running.assembly.sandbox_store
    with sandbox.read() as conn:  # paid exactly once at the bank
        t = running.assembly.sandbox_service.t.payouts
        assert len(conn.execute(select(t).where(t.c.out_payout_no == number)).all()) == 1


def test_withdrawal_refusals_change_nothing(running):
    mine, theirs = running.merchant("Mine"), running.merchant("Theirs")
    a = new_member(mine)["member_id"]
    other = new_member(theirs)["member_id"]
    fund_member(running, a, 100)
    r = _withdraw(mine, a, 101)
    assert r.status_code == 409 and r.json()["code"] == "INSUFFICIENT_BALANCE"
    r = _withdraw(mine, other, 1)
    assert r.status_code == 404 and r.json()["code"] == "MEMBER_NOT_FOUND"
    r = _withdraw(mine, a, 1, payment_password="000000")
    assert r.status_code == 403 and r.json()["code"] == "INVALID_PAYMENT_PASSWORD"
    for bank in ({"bank": "ICBC", "number": "62220abc", "name": "x"}, {"bank": "ICBC", "number": "1"},
                 {"bank": "", "number": "6222020200112230001", "name": "x"}, None):
        assert _withdraw(mine, a, 1, bank=bank).status_code == 400
    for amount in (0, -1, 0.5, "1", False):
        assert _withdraw(mine, a, amount).status_code == 400
    for path in ("/v1/withdrawals/wd_nope", "/v1/withdrawals?out_request_no=nope"):
        r = mine.call("GET", path)
        assert r.status_code == 404 and r.json()["code"] == "WITHDRAWAL_NOT_FOUND"
    assert accounts(mine, a)["balance"] == {"available": 100, "frozen": 0}
    with running.platform.db.read() as conn:
        assert conn.execute(select(disbursements)).first() is None


def test_concurrent_withdrawals_never_overdraw(make_platform):
    from concurrent.futures import ThreadPoolExecutor

    running = make_platform(workers=False)
    m = running.merchant()
    a = new_member(m)["member_id"]
    fund_member(running, a, 1000)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _withdraw(m, a, 300).status_code, range(8)))
    assert sorted(answers) == [201] * 3 + [409] * 5, answers
    assert accounts(m, a)["balance"] == {"available": 100, "frozen": 900}
