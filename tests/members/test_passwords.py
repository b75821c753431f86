"""Payment passwords: wrong -> 403, the fifth wrong in a row locks (423, right or wrong), a right
one resets the count; the count is committed although the request fails, and races keep it."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from piaohao.db.schema_members import members
from piaohao.kernel.clock import FakeClock
from piaohao.services import passwords
from tests.members.conftest import PASSWORD, accounts, fund_member, key, new_member


def test_hash_is_salted_slow_and_compared_in_constant_time():
    a, b = passwords.hash_password(PASSWORD), passwords.hash_password(PASSWORD)
    assert a != b and a.startswith(f"scrypt${2**14}$8$1$")
    assert passwords.password_matches(PASSWORD, a) and passwords.password_matches(PASSWORD, b)
    for wrong in ("246811", "", "x" * 500, PASSWORD + " "):
        assert not passwords.password_matches(wrong, a)
    assert not passwords.password_matches(PASSWORD, "md5$whatever")
    assert not passwords.password_matches(PASSWORD, "garbage")


def _transfer(m, a, b, password, amount=1):
    return m.call("POST", "/v1/transfers", {"out_request_no": key("X"), "from_member_id": a, "to_member_id": b,
                                            "amount": amount, "payment_password": password})


def _failures(running, member_id):
    with running.platform.db.read() as conn:
        return conn.execute(select(members.c.password_failures, members.c.password_locked_until)
                            .where(members.c.member_id == member_id)).one()


def test_wrong_password_counts_five_locks_and_the_lock_runs_out(make_platform):
    # The lock runs out on the platform's clock, moved by the test (close to the wall clock, so the
    # merchant's signed timestamps stay inside the gateway's window).
    clock = FakeClock(dt.datetime.now(dt.UTC))
    running = make_platform(password_lock_s=60, clock=clock)
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei")["member_id"]
    fund_member(running, a, 100)
    for i in range(1, 5):
        r = _transfer(m, a, b, "000000")
        assert r.status_code == 403 and r.json()["code"] == "INVALID_PAYMENT_PASSWORD", r.text
        assert _failures(running, a).password_failures == i  # committed although the request failed
    fifth = _transfer(m, a, b, "000000")
    assert fifth.status_code == 403 and fifth.json()["code"] == "INVALID_PAYMENT_PASSWORD"
    assert _failures(running, a).password_locked_until is not None
    for password in (PASSWORD, "000000"):
        locked = _transfer(m, a, b, password)
        assert locked.status_code == 423 and locked.json()["code"] == "PAYMENT_PASSWORD_LOCKED", locked.text
    assert accounts(m, a)["balance"]["available"] == 100
    clock.advance(59)
    assert _transfer(m, a, b, PASSWORD).status_code == 423  # not yet
    clock.advance(2)
    ok = _transfer(m, a, b, PASSWORD)
    assert ok.status_code == 201, ok.text
    assert tuple(_failures(running, a)) == (0, None)
    assert accounts(m, b)["balance"]["available"] == 1


def test_a_right_password_resets_the_count(running):
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei")["member_id"]
    fund_member(running, a, 100)
    for _ in range(4):
        assert _transfer(m, a, b, "000000").status_code == 403
    assert _transfer(m, a, b, PASSWORD).status_code == 201
    assert _failures(running, a).password_failures == 0
    for _ in range(4):
        assert _transfer(m, a, b, "000000").status_code == 403
    assert _transfer(m, a, b, PASSWORD).status_code == 201  # not locked: the count started again


def test_the_password_is_the_senders_and_each_member_counts_alone(running):
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei", payment_password="135790")["member_id"]
    fund_member(running, a, 100)
    assert _transfer(m, a, b, "135790").status_code == 403  # b's password does not spend a's money
    assert _failures(running, b).password_failures == 0


def test_concurrent_wrong_tries_lock_exactly_once_and_lose_no_count(make_platform):
    running = make_platform(password_lock_s=60)
    m = running.merchant()
    a, b = new_member(m)["member_id"], new_member(m, "Han Meimei")["member_id"]
    fund_member(running, a, 100)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _transfer(m, a, b, "000000").status_code, range(12)))
    # Every try either counted (403) or met the lock (423); exactly five counted.
    assert sorted(set(answers)) <= [403, 423] and answers.count(403) == 5, answers
    assert _failures(running, a).password_failures == 5
    assert _transfer(m, a, b, PASSWORD).status_code == 423
    assert accounts(m, a)["balance"]["available"] == 100


def test_verify_is_callable_with_the_platform_or_its_database(make_platform):
    running = make_platform(password_lock_s=1)
    p = running.platform
    m = running.merchant()
    a = new_member(m)["member_id"]
    passwords.verify_payment_password(p, a, PASSWORD, p.clock.now())
    passwords.verify_payment_password(p.db, a, PASSWORD, p.clock.now(), lock_s=1)
