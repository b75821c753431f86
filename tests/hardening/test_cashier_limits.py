"""Whoever holds a member trade's pay_url: cannot lock the member's payment password by guessing,
and does not see the member's balances."""

from __future__ import annotations

from sqlalchemy import select

from piaohao.db.schema_members import members
from piaohao.services.funding import TRADE_PASSWORD_TRIES_MAX
from piaohao.services.passwords import WRONG_TRIES_MAX
from tests.members.conftest import PASSWORD, fund_member, new_member
from tests.support import patient


def test_a_pay_url_holder_cannot_lock_the_members_password(running, receiver):
    assert TRADE_PASSWORD_TRIES_MAX < WRONG_TRIES_MAX
    m = running.merchant()
    member = new_member(m)
    fund_member(running, member["member_id"], 5000)
    trade = m.call("POST", "/v1/trades", {"out_trade_no": "A1", "amount": 100, "subject": "x",
                                          "member_id": member["member_id"], "notify_url": receiver.url}).json()
    view = patient.get(trade["pay_url"], headers={"Accept": "application/json"}).json()
    assert {x["method"] for x in view["methods"]} >= {"balance"}
    assert all("available" not in x for x in view["methods"])  # no balances for whoever holds the link
    codes = [patient.post(trade["pay_url"] + "/pay", json={"method": "balance", "payment_password": f"00000{i}"}
                        ).status_code for i in range(WRONG_TRIES_MAX + 2)]
    assert codes == [403] * TRADE_PASSWORD_TRIES_MAX + [423] * (WRONG_TRIES_MAX + 2 - TRADE_PASSWORD_TRIES_MAX)
    with running.platform.db.read() as conn:
        row = conn.execute(select(members.c.password_failures, members.c.password_locked_until).where(
            members.c.member_id == member["member_id"])).one()
    assert row.password_failures == TRADE_PASSWORD_TRIES_MAX and row.password_locked_until is None
    # The member's own password still works elsewhere, and a right password resets the count.
    other = m.call("POST", "/v1/trades", {"out_trade_no": "A2", "amount": 100, "subject": "x",
                                          "member_id": member["member_id"], "notify_url": receiver.url}).json()
    r = patient.post(other["pay_url"] + "/pay", json={"method": "balance", "payment_password": PASSWORD})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
