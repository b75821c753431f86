"""Payouts of the merchant's own settled money, and GET /v1/balance."""

from __future__ import annotations

from piaohao.services import payouts as payout_svc
from tests.members.conftest import BANK_OK, BANK_REFUSED, fund_settled, key, wait_status
from tests.support.merchant import wait_until


def _payout(m, amount, bank=BANK_OK, out_request_no=None, **extra):
    body = {"out_request_no": out_request_no or key("P"), "amount": amount, **extra}
    if bank is not None:
        body["bank_account"] = bank
    return m.call("POST", "/v1/payouts", body)


def _settled(m) -> int:
    return m.call("GET", "/v1/balance").json()["balances"]["settled"]


def test_payout_leaves_settled_at_once_and_is_paid(make_platform, receiver):
    running = make_platform(workers=False)
    m = running.merchant()
    fund_settled(running, m.merchant_id, 9000)
    assert m.call("GET", "/v1/balance").json() == {"currency": "CNY",
                                                   "balances": {"pending_settlement": 0, "settled": 9000}}
    r = _payout(m, 9000, out_request_no="P1", notify_url=receiver.url)
    assert r.status_code == 201, r.text
    payout = r.json()
    assert payout["status"] == "processing" and payout["payout_no"].startswith("po_")
    assert payout["sub_merchant_id"] is None and payout["bank_account"]["number"].endswith("0001")
    assert BANK_OK["number"] not in r.text
    assert _settled(m) == 0  # left at once
    again = _payout(m, 9000, out_request_no="P1", notify_url=receiver.url)
    assert again.status_code == 200 and again.json() == payout
    assert _payout(m, 8999, out_request_no="P1").status_code == 422
    more = _payout(m, 1)
    assert more.status_code == 409 and more.json()["code"] == "INSUFFICIENT_BALANCE"

    running.assembly.start_workers()
    done = wait_status(m, f"/v1/payouts/{payout['payout_no']}", "succeeded")
    assert m.call("GET", "/v1/payouts?out_request_no=P1").json() == done
    assert _settled(m) == 0
    assert wait_until(lambda: receiver.events("payout.succeeded"))


def test_refused_payout_comes_back_to_settled(running, receiver):
    m = running.merchant()
    fund_settled(running, m.merchant_id, 500)
    r = _payout(m, 300, bank=BANK_REFUSED, notify_url=receiver.url)
    assert r.status_code == 201, r.text
    failed = wait_status(m, f"/v1/payouts/{r.json()['payout_no']}", "failed")
    assert failed["fail_reason"]
    assert _settled(m) == 500
    assert wait_until(lambda: receiver.events("payout.failed"))


def test_payout_refusals(running):
    mine, theirs = running.merchant("Mine"), running.merchant("Theirs")
    fund_settled(running, theirs.merchant_id, 1000)
    r = _payout(mine, 1)
    assert r.status_code == 409 and r.json()["code"] == "INSUFFICIENT_BALANCE"  # another merchant's money
    r = _payout(mine, 1, sub_merchant_id="sm_nope")
    assert r.status_code == 404 and r.json()["code"] == "SUB_MERCHANT_NOT_FOUND"
    r = _payout(mine, 1, bank=None)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST"
    for amount in (0, -1, 2.5, "1", True, 10**15 + 1):
        assert _payout(mine, amount).status_code == 400
    for path in ("/v1/payouts/po_nope", "/v1/payouts?out_request_no=nope"):
        r = mine.call("GET", path)
        assert r.status_code == 404 and r.json()["code"] == "PAYOUT_NOT_FOUND"
    theirs_payout = _payout(theirs, 10).json()
    assert mine.call("GET", f"/v1/payouts/{theirs_payout['payout_no']}").status_code == 404
    assert _settled(theirs) == 990 and _settled(mine) == 0


def test_retry_intervals_grow_and_are_bounded(make_platform):
    running = make_platform(workers=False, active_query_after_s=2, active_query_interval_max_s=30)
    delays = [payout_svc.retry_delay_s(running.platform, k) for k in range(1, 8)]
    assert delays == [2, 4, 8, 16, 30, 30, 30]
