"""Top-ups: paid on the cashier with the sandbox -> the member's balance; unpaid -> failed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from piaohao import ledger
from piaohao.books import chart
from piaohao.db.schema import outbox_events, trades
from piaohao.kernel.clock import FakeClock
from tests.members.conftest import accounts, new_member, pay_on_sandbox, wait_status
from tests.support import patient
from tests.support.merchant import wait_until


def _topup(m, member_id, amount=10000, out_request_no="T1", **extra):
    return m.call("POST", "/v1/topups", {"out_request_no": out_request_no, "member_id": member_id, "amount": amount,
                                         "currency": "CNY", **extra})


def test_a_paid_top_up_lands_on_the_balance_once_and_notifies(running, receiver):
    m = running.merchant()
    member = new_member(m)
    r = _topup(m, member["member_id"], notify_url=receiver.url)
    assert r.status_code == 201, r.text
    topup = r.json()
    assert topup["status"] == "pending" and topup["topup_no"].startswith("tu_") and topup["amount"] == 10000
    assert topup["pay_url"].startswith(running.url + "/cashier/") and topup["finished_at"] is None
    again = _topup(m, member["member_id"], notify_url=receiver.url)
    assert again.status_code == 200 and again.json() == topup
    conflict = _topup(m, member["member_id"], amount=9999, notify_url=receiver.url)
    assert conflict.status_code == 422 and conflict.json()["code"] == "IDEMPOTENCY_CONFLICT"

    cashier = patient.get(topup["pay_url"], headers={"Accept": "application/json"}).json()
    assert cashier["amount"] == 10000 and [x["method"] for x in cashier["methods"] if x["kind"] == "channel"]
    assert not [x for x in cashier["methods"] if x["kind"] != "channel"]  # a top-up is paid by a channel only
    pay_on_sandbox(topup["pay_url"])
    done = wait_status(m, f"/v1/topups/{topup['topup_no']}", "succeeded")
    assert done["finished_at"] is not None
    assert m.call("GET", "/v1/topups?out_request_no=T1").json() == done
    assert accounts(m, member["member_id"])["balance"] == {"available": 10000, "frozen": 0}
    assert wait_until(lambda: receiver.events("topup.succeeded"))
    event = receiver.events("topup.succeeded")[0]
    assert event["data"]["topup_no"] == topup["topup_no"] and event["data"]["status"] == "succeeded"
    # Replays after success answer the succeeded top-up, whatever happens.
    assert _topup(m, member["member_id"], notify_url=receiver.url).json()["status"] == "succeeded"
    # Not a sale: nothing for the merchant, no trade.* event, no trade visible through /v1/trades.
    p = running.platform
    with p.db.read() as conn:
        pending = chart.lookup(conn, "merchant_pending_settlement", m.merchant_id, "CNY")
        assert pending is None or ledger.balance(conn, pending.account_id).posted == 0
        trade_no = conn.execute(select(trades.c.trade_no).where(trades.c.purpose == "topup")).scalar_one()
        assert conn.execute(select(func.count()).select_from(outbox_events).where(
            outbox_events.c.type.like("trade.%"))).scalar_one() == 0
    assert m.call("GET", f"/v1/trades/{trade_no}").status_code == 404
    wait_until(lambda: False, timeout_s=1)
    assert len(receiver.events("topup.succeeded")) == 1
    assert accounts(m, member["member_id"])["balance"]["available"] == 10000


def test_a_top_up_nobody_pays_fails_when_it_expires(make_platform, receiver):
    clock = FakeClock(dt.datetime.now(dt.UTC))  # it expires when the test moves time, not on a busy machine's whim
    running = make_platform(clock=clock)
    m = running.merchant()
    member = new_member(m)
    expires = (clock.now() + dt.timedelta(seconds=60)).isoformat()
    r = _topup(m, member["member_id"], notify_url=receiver.url, expires_at=expires)
    assert r.status_code == 201, r.text
    assert m.call("GET", f"/v1/topups/{r.json()['topup_no']}").json()["status"] == "pending"
    clock.advance(61)
    failed = wait_status(m, f"/v1/topups/{r.json()['topup_no']}", "failed")
    assert failed["finished_at"] is not None
    assert wait_until(lambda: receiver.events("topup.failed"))
    assert receiver.events("topup.failed")[0]["data"]["topup_no"] == failed["topup_no"]
    assert patient.post(failed["pay_url"] + "/pay", json={"method": "sandbox"}).status_code == 409
    assert accounts(m, member["member_id"])["balance"]["available"] == 0


def test_a_failed_channel_attempt_leaves_the_top_up_payable(running):
    m = running.merchant()
    member = new_member(m)
    topup = _topup(m, member["member_id"], amount=500).json()
    pay_on_sandbox(topup["pay_url"], "fail")
    wait_until(lambda: False, timeout_s=0.5)
    assert m.call("GET", f"/v1/topups/{topup['topup_no']}").json()["status"] == "pending"
    pay_on_sandbox(topup["pay_url"])
    wait_status(m, f"/v1/topups/{topup['topup_no']}", "succeeded")
    assert accounts(m, member["member_id"])["balance"]["available"] == 500


def test_top_up_refusals(running):
    mine, theirs = running.merchant("Mine"), running.merchant("Theirs")
    member = new_member(mine)
    other = new_member(theirs)
    r = _topup(mine, other["member_id"])
    assert r.status_code == 404 and r.json()["code"] == "MEMBER_NOT_FOUND"
    r = _topup(mine, member["member_id"], currency="USD")
    assert r.status_code == 400
    for amount in (0, -5, 1.5, "10", True, 10**15 + 1):
        assert _topup(mine, member["member_id"], amount=amount).status_code == 400
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()
    assert _topup(mine, member["member_id"], expires_at=past).status_code == 400
    for path in ("/v1/topups/tu_nope", "/v1/topups?out_request_no=T1"):
        missing = mine.call("GET", path)
        assert missing.status_code == 404 and missing.json()["code"] == "TOPUP_NOT_FOUND"
    theirs_topup = _topup(theirs, other["member_id"]).json()
    assert mine.call("GET", f"/v1/topups/{theirs_topup['topup_no']}").status_code == 404
