"""`/v1/members`: create, read, idempotency, isolation, validation, coins grants and credit lines."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from piaohao.books import chart
from piaohao.db.schema_members import members
from piaohao.ledger import write as ledger
from tests.members.conftest import PASSWORD, accounts, new_member
from tests.support import patient

ZERO = {"balance": {"available": 0, "frozen": 0}, "coins": {"available": 0, "held": 0},
        "credit": {"limit": 0, "used": 0, "available": 0}}


def test_create_read_and_replay_a_member(running):
    m = running.merchant()
    body = {"out_member_id": "u-42", "name": "Li Lei", "payment_password": PASSWORD}
    r = m.call("POST", "/v1/members", body)
    assert r.status_code == 201, r.text
    member = r.json()
    assert member["member_id"].startswith("mbr_") and member["out_member_id"] == "u-42"
    assert member["name"] == "Li Lei" and member["currency"] == "CNY" and member["accounts"] == ZERO
    assert "+08:00" in member["created_at"]
    assert "payment_password" not in r.text and PASSWORD not in r.text

    again = m.call("POST", "/v1/members", dict(body, payment_password="another-one"))
    assert again.status_code == 200 and again.json() == member
    other_name = m.call("POST", "/v1/members", dict(body, name="Han Meimei"))
    assert other_name.status_code == 422 and other_name.json()["code"] == "IDEMPOTENCY_CONFLICT"

    assert m.call("GET", f"/v1/members/{member['member_id']}").json() == member
    assert m.call("GET", "/v1/members?out_member_id=u-42").json() == member
    for path in ("/v1/members/mbr_nope", "/v1/members?out_member_id=u-43"):
        missing = m.call("GET", path)
        assert missing.status_code == 404 and missing.json()["code"] == "MEMBER_NOT_FOUND"


def test_the_password_is_stored_only_as_a_salted_hash_and_a_replay_keeps_it(running):
    m = running.merchant()
    a = new_member(m)
    b = new_member(m, "Han Meimei")
    with running.platform.db.read() as conn:
        stored = dict(conn.execute(select(members.c.member_id, members.c.password_hash)).all())
    assert PASSWORD not in stored[a["member_id"]]
    assert stored[a["member_id"]].startswith("scrypt$") and stored[a["member_id"]] != stored[b["member_id"]]


def test_another_merchants_member_does_not_exist_for_me(running):
    mine, theirs = running.merchant("Mine"), running.merchant("Theirs")
    member = new_member(theirs)
    for method, path, body in (
            ("GET", f"/v1/members/{member['member_id']}", None),
            ("GET", f"/v1/members?out_member_id={member['out_member_id']}", None),
            ("POST", f"/v1/members/{member['member_id']}/coins", {"out_request_no": "C1", "amount": 5}),
            ("POST", f"/v1/members/{member['member_id']}/credit", {"limit": 5})):
        r = mine.call(method, path, body)
        assert r.status_code == 404 and r.json()["code"] == "MEMBER_NOT_FOUND", (path, r.text)
    # The same out_member_id is a different member for another merchant.
    same_key = mine.call("POST", "/v1/members", {"out_member_id": member["out_member_id"], "name": "Other",
                                                "payment_password": PASSWORD})
    assert same_key.status_code == 201 and same_key.json()["member_id"] != member["member_id"]
    assert accounts(theirs, member["member_id"]) == ZERO


@pytest.mark.parametrize("body", [
    {"out_member_id": "u 1", "name": "x", "payment_password": PASSWORD},
    {"out_member_id": "u" * 65, "name": "x", "payment_password": PASSWORD},
    {"out_member_id": "u1", "name": "", "payment_password": PASSWORD},
    {"out_member_id": "u1", "name": "x", "payment_password": "12345"},
    {"out_member_id": "u1", "name": "x", "payment_password": "1" * 33},
    {"out_member_id": "u1", "name": "x", "payment_password": 246810},
    {"out_member_id": "u1", "name": "x", "payment_password": PASSWORD, "currency": "XXX"},
    {"out_member_id": "u1", "name": "x", "payment_password": PASSWORD, "vip": True},
    {"out_member_id": "u1", "name": "x"},
])
def test_bad_member_bodies_are_400(running, body):
    m = running.merchant()
    r = m.call("POST", "/v1/members", body)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", r.text
    assert m.call("GET", "/v1/members?out_member_id=u1").status_code == 404


def test_coins_grant_is_funded_by_marketing_and_idempotent(running):
    m = running.merchant()
    member = new_member(m)
    path = f"/v1/members/{member['member_id']}/coins"
    body = {"out_request_no": "C1", "amount": 800, "reason": "welcome"}
    r = m.call("POST", path, body)
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["grant_no"].startswith("cg_") and grant["amount"] == 800 and grant["reason"] == "welcome"
    assert grant["member_id"] == member["member_id"] and grant["currency"] == "CNY"
    assert m.call("POST", path, body).json() == grant and m.call("POST", path, body).status_code == 200
    for conflicting in (dict(body, amount=801), dict(body, reason="other")):
        c = m.call("POST", path, conflicting)
        assert c.status_code == 422 and c.json()["code"] == "IDEMPOTENCY_CONFLICT"
    other = new_member(m, "Han Meimei")
    c = m.call("POST", f"/v1/members/{other['member_id']}/coins", body)  # same key, another member
    assert c.status_code == 422
    assert accounts(m, member["member_id"])["coins"] == {"available": 800, "held": 0}
    assert accounts(m, other["member_id"])["coins"] == {"available": 0, "held": 0}
    with running.platform.db.read() as conn:
        expense = chart.lookup(conn, "platform_marketing_expense", chart.PLATFORM_OWNER_ID, "CNY")
        assert ledger.balance(conn, expense.account_id).posted == 800


@pytest.mark.parametrize("amount", [0, -1, 1.5, "800", True, 10**15 + 1, None])
def test_bad_amounts_are_400_and_grant_nothing(running, amount):
    m = running.merchant()
    member = new_member(m)
    r = m.call("POST", f"/v1/members/{member['member_id']}/coins", {"out_request_no": "C1", "amount": amount})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", r.text
    assert accounts(m, member["member_id"]) == ZERO


def test_credit_line_cannot_go_below_what_is_used(running):
    m = running.merchant()
    member = new_member(m)
    path = f"/v1/members/{member['member_id']}/credit"
    r = m.call("POST", path, {"limit": 50000})
    assert r.status_code == 200 and r.json()["accounts"]["credit"] == {"limit": 50000, "used": 0, "available": 50000}
    # Draw 300 on the line (what a credit payment does) directly in the ledger.
    def draw(conn):
        line = chart.member_credit(conn, member["member_id"], "CNY")
        suspense = chart.platform_suspense(conn, "CNY")
        ledger.transfer(conn, ("test_draw", member["member_id"], "1"), line.account_id, suspense.account_id, 300)
    running.platform.db.write(draw)
    assert accounts(m, member["member_id"])["credit"] == {"limit": 50000, "used": 300, "available": 49700}
    below = m.call("POST", path, {"limit": 299})
    assert below.status_code == 409 and below.json()["code"] == "CREDIT_LIMIT_BELOW_USED"
    assert accounts(m, member["member_id"])["credit"]["limit"] == 50000
    exact = m.call("POST", path, {"limit": 300})
    assert exact.status_code == 200 and exact.json()["accounts"]["credit"] == {"limit": 300, "used": 300,
                                                                               "available": 0}
    for bad in (-1, 1.0, "300", None):
        assert m.call("POST", path, {"limit": bad}).status_code == 400


def test_openapi_lists_the_member_and_business_endpoints(running):

    spec = patient.get(running.url + "/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/members", "/v1/members/{member_id}", "/v1/members/{member_id}/coins",
                 "/v1/members/{member_id}/credit", "/v1/topups", "/v1/topups/{topup_no}", "/v1/transfers",
                 "/v1/transfers/{transfer_no}", "/v1/withdrawals", "/v1/withdrawals/{withdrawal_no}",
                 "/v1/payouts", "/v1/payouts/{payout_no}", "/v1/balance"):
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    for name in ("MemberOut", "CreateMemberBody", "TopupOut", "TransferOut", "WithdrawalOut", "PayoutOut",
                 "MerchantBalanceOut"):
        assert name in schemas, name
    assert "payment_password" not in str(schemas["MemberOut"])


def test_merchant_balance_starts_at_zero(running):
    m = running.merchant()
    r = m.call("GET", "/v1/balance")
    assert r.status_code == 200
    assert r.json() == {"currency": "CNY", "balances": {"pending_settlement": 0, "settled": 0}}


def test_identical_creates_racing_make_one_member(running):
    from concurrent.futures import ThreadPoolExecutor

    m = running.merchant()
    body = {"out_member_id": "u-race", "name": "Li Lei", "payment_password": PASSWORD}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: m.call("POST", "/v1/members", body), range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["member_id"] for a in answers}) == 1
    with running.platform.db.read() as conn:
        assert len(conn.execute(select(members.c.member_id)).all()) == 1
