"""Transfers: atomic, refused when the balance is not enough, idempotent and re-entrant, and
correct under concurrency (PostgreSQL)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from piaohao.db.schema import outbox_events
from tests.members.conftest import PASSWORD, accounts, fund_member, key, new_member
from tests.support.merchant import wait_until


def _body(a, b, amount, out_request_no=None, **extra):
    return {"out_request_no": out_request_no or key("X"), "from_member_id": a, "to_member_id": b, "amount": amount,
            "payment_password": PASSWORD, **extra}


def test_transfer_moves_the_balance_at_once_and_notifies(running, receiver):
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei")["member_id"]
    fund_member(running, a, 7500)
    body = _body(a, b, 1500, "X1", notify_url=receiver.url)
    r = m.call("POST", "/v1/transfers", body)
    assert r.status_code == 201, r.text
    transfer = r.json()
    assert transfer["status"] == "succeeded" and transfer["transfer_no"].startswith("tf_")
    assert transfer["from_member_id"] == a and transfer["to_member_id"] == b and transfer["amount"] == 1500
    assert accounts(m, a)["balance"]["available"] == 6000 and accounts(m, b)["balance"]["available"] == 1500
    assert m.call("GET", f"/v1/transfers/{transfer['transfer_no']}").json() == transfer
    assert m.call("GET", "/v1/transfers?out_request_no=X1").json() == transfer
    assert wait_until(lambda: receiver.events("transfer.succeeded"))
    assert receiver.events("transfer.succeeded")[0]["data"] == transfer


def test_replay_answers_the_same_transfer_even_when_the_money_is_gone(running):
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei")["member_id"]
    fund_member(running, a, 1000)
    body = _body(a, b, 1000, "X1")
    first = m.call("POST", "/v1/transfers", body)
    assert first.status_code == 201
    again = m.call("POST", "/v1/transfers", body)
    assert again.status_code == 200 and again.json() == first.json()
    wrong_password_replay = m.call("POST", "/v1/transfers", dict(body, payment_password="000000"))
    assert wrong_password_replay.status_code == 200  # nothing is spent by a replay
    conflict = m.call("POST", "/v1/transfers", dict(body, amount=999))
    assert conflict.status_code == 422 and conflict.json()["code"] == "IDEMPOTENCY_CONFLICT"
    assert accounts(m, a)["balance"]["available"] == 0 and accounts(m, b)["balance"]["available"] == 1000
    with running.platform.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(outbox_events).where(
            outbox_events.c.type == "transfer.succeeded")).scalar_one() == 1


def test_not_enough_balance_is_409_moves_nothing_and_can_be_retried(running):
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei")["member_id"]
    fund_member(running, a, 100)
    body = _body(a, b, 101, "X1")
    r = m.call("POST", "/v1/transfers", body)
    assert r.status_code == 409 and r.json()["code"] == "INSUFFICIENT_BALANCE", r.text
    assert accounts(m, a)["balance"]["available"] == 100 and accounts(m, b)["balance"]["available"] == 0
    assert m.call("GET", "/v1/transfers?out_request_no=X1").status_code == 404
    fund_member(running, a, 1)
    assert m.call("POST", "/v1/transfers", body).status_code == 201  # re-entrant: the refusal left nothing
    assert accounts(m, a)["balance"]["available"] == 0 and accounts(m, b)["balance"]["available"] == 101


def test_transfer_refusals(running):
    mine, theirs = running.merchant("Mine"), running.merchant("Theirs")
    a, b = new_member(mine)["member_id"], new_member(mine, "Han Meimei")["member_id"]
    other = new_member(theirs)["member_id"]
    fund_member(running, a, 100)
    same = mine.call("POST", "/v1/transfers", _body(a, a, 1))
    assert same.status_code == 400 and same.json()["code"] == "INVALID_REQUEST"
    for x, y in ((a, other), (other, a)):
        r = mine.call("POST", "/v1/transfers", _body(x, y, 1))
        assert r.status_code == 404 and r.json()["code"] == "MEMBER_NOT_FOUND"
    usd = new_member(mine, "Dollar", currency="USD")["member_id"]
    assert mine.call("POST", "/v1/transfers", _body(a, usd, 1)).status_code == 400
    for amount in (0, -1, 1.5, "1", True, 10**15 + 1):
        assert mine.call("POST", "/v1/transfers", _body(a, b, amount)).status_code == 400
    missing_password = _body(a, b, 1)
    del missing_password["payment_password"]
    assert mine.call("POST", "/v1/transfers", missing_password).status_code == 400
    assert mine.call("POST", "/v1/transfers", dict(_body(a, b, 1), extra=1)).status_code == 400
    for path in ("/v1/transfers/tf_nope", "/v1/transfers?out_request_no=nope"):
        r = mine.call("GET", path)
        assert r.status_code == 404 and r.json()["code"] == "TRANSFER_NOT_FOUND"
    assert accounts(mine, a)["balance"]["available"] == 100


def test_many_threads_transferring_among_four_members_conserve_money(make_platform, backend):
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has one writer, so nothing races")
    running = make_platform()
    m = running.merchant()
    ids = [new_member(m, f"M{i}")["member_id"] for i in range(4)]
    start = {ids[0]: 400, ids[1]: 300, ids[2]: 200, ids[3]: 100}
    for member_id, amount in start.items():
        fund_member(running, member_id, amount)
    rng = random.Random(7)
    plan = []
    for _ in range(96):
        a, b = rng.sample(ids, 2)
        plan.append((a, b, rng.choice([1, 5, 20, 60, 150, 450])))  # 450: always an overdraft

    def go(step):
        a, b, amount = step
        return m.call("POST", "/v1/transfers", _body(a, b, amount)).status_code

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(go, plan))
    assert set(answers) <= {201, 409}, answers
    assert answers.count(201) > 10 and answers.count(409) > 5
    balances = {i: accounts(m, i)["balance"]["available"] for i in ids}
    assert sum(balances.values()) == 1000 and min(balances.values()) >= 0, balances
    # The ledger agrees with the transfers that answered 201.
    ok = [s for s, code in zip(plan, answers, strict=True) if code == 201]
    expected = dict(start)
    for a, b, amount in ok:
        expected[a] -= amount
        expected[b] += amount
    assert balances == expected


def test_identical_transfers_racing_move_the_money_once(running):
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei")["member_id"]
    fund_member(running, a, 1000)
    body = _body(a, b, 400, "X-race")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: m.call("POST", "/v1/transfers", body), range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201], [r.text for r in answers]
    assert len({r.json()["transfer_no"] for r in answers}) == 1
    assert accounts(m, a)["balance"]["available"] == 600 and accounts(m, b)["balance"]["available"] == 400
