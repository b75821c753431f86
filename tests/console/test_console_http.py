"""The operator console over HTTP (docs/console.md): sign-in, sessions, CSRF, roles, audit, and
what its pages show and never show. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from sqlalchemy import select, update

from piaohao.alerts import raise_alert_now
from piaohao.db.schema import alerts, apps, audit_log, trades
from piaohao.db.schema_console import operator_sessions, operators
from piaohao.domain.bank_accounts import BankAccount
from piaohao.services import operators as ops
from piaohao.services.sub_merchants import NewSubMerchant, create_sub_merchant
from piaohao.web.console_charts import console_charts
from tests.api.test_gateway import trade_body
from tests.console.helpers import ConsoleUser, add, signed_in
from tests.support import patient


def _alert(running, subject_id: str = "rf_1") -> str:
    p = running.platform
    raise_alert_now(p.db, now=p.clock.now(), kind="refund_stuck", message="the channel never answered",
                    subject_type="refund", subject_id=subject_id)
    with p.db.read() as conn:
        return str(conn.execute(select(alerts.c.id).where(alerts.c.subject_id == subject_id)).scalar_one())


def _alert_row(running, alert_id: str) -> dict:
    with running.platform.db.read() as conn:
        return dict(conn.execute(select(alerts).where(alerts.c.id == int(alert_id))).mappings().one())


def _audit(running, action: str) -> list[dict]:
    with running.platform.db.read() as conn:
        return [dict(r) for r in conn.execute(select(audit_log).where(audit_log.c.action == action)
                                              .order_by(audit_log.c.id)).mappings()]


def test_a_wrong_password_is_refused_and_opens_no_session(console):
    add(console, "olga", "operator")
    user = ConsoleUser(console)
    r = user.sign_in("olga", "not-the-password")
    assert r.status_code == 401 and "wrong name or password" in r.text
    assert "piaohao_console=" not in r.headers.get("set-cookie", "")
    assert user.sign_in("nobody", "whatever").status_code == 401  # an unknown name reads the same
    home = user.get("/console/")
    assert home.status_code == 303 and home.headers["location"].startswith("/console/login")
    assert [a["object_id"] for a in _audit(console, "operator.sign_in_refused")] == ["olga"]


def test_five_wrong_passwords_lock_sign_in_until_the_lock_runs_out(console, clock):
    password = add(console, "olga", "operator")
    user = ConsoleUser(console)
    for _ in range(ops.SIGNIN_FAILURES_MAX):
        assert user.sign_in("olga", "wrong-password").status_code == 401
    locked = user.sign_in("olga", password)
    assert locked.status_code == 423 and "locked" in locked.text
    clock.advance(ops.SIGNIN_LOCK_S + 1)
    assert user.sign_in("olga", password).status_code == 303


def test_the_session_cookie_is_http_only_strict_and_hashed_at_rest(console):
    user = ConsoleUser(console)
    r = user.sign_in("olga", add(console, "olga", "operator"))
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = [c for c in r.headers.get_list("set-cookie") if c.startswith("piaohao_console=")][0]
    token = cookie.split(";")[0].split("=", 1)[1]
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert "secure" not in flags  # http base URL: a Secure cookie would never come back
    with console.platform.db.read() as conn:
        stored = conn.execute(select(operator_sessions.c.session_hash)).scalars().all()
    assert len(stored) == 1 and stored[0] != token and token not in stored[0]
    page = user.get("/console/")
    assert page.status_code == 200 and "olga" in page.text
    assert page.headers["cache-control"] == "no-store" and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]


def test_the_session_cookie_is_secure_when_the_base_url_is_https(make_platform, clock):
    running = make_platform(workers=False, clock=clock, base_url="https://console.example")
    password = add(running, "olga", "operator")
    http = patient.client(base_url=running.url, timeout=30)  # plain http here: the browser's TLS is a proxy's job
    form = http.get("/console/login")
    pre = form.headers["set-cookie"]
    assert pre.startswith("piaohao_console_login=") and "secure" in pre.lower()
    token = pre.split(";")[0].split("=", 1)[1]
    r = http.post("/console/login", data={"name": "olga", "password": password, "login_token": token},
                  headers={"Cookie": f"piaohao_console_login={token}"})
    cookie = [c for c in r.headers.get_list("set-cookie") if c.startswith("piaohao_console=")][0]
    assert r.status_code == 303 and "secure" in cookie.lower()


def test_an_operator_resolves_an_alert_and_the_audit_log_names_them(console):
    alert_id = _alert(console)
    user = signed_in(console, "olga", "operator")
    queue = user.get("/console/queue").text
    assert f'action="/console/alerts/{alert_id}/resolve"' in queue
    r = user.post(f"/console/alerts/{alert_id}/resolve", {"note": "refund confirmed at the bank",
                                                         "back": "/console/queue"})
    assert r.status_code == 303 and r.headers["location"] == "/console/queue?done=alert.resolve"
    row = _alert_row(console, alert_id)
    assert row["status"] == "resolved" and row["resolved_by"] == "olga"
    [entry] = _audit(console, "alert.resolve")
    assert entry["operator"] == "olga" and entry["object_id"] == alert_id
    assert entry["note"] == "refund confirmed at the bank"
    assert "Alert resolved." in user.get(r.headers["location"]).text


def test_resolving_needs_a_note(console):
    alert_id = _alert(console)
    user = signed_in(console, "olga", "operator")
    r = user.post(f"/console/alerts/{alert_id}/resolve", {"note": "  "})
    assert r.status_code == 400 and _alert_row(console, alert_id)["status"] == "open"


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(console):
    alert_id = _alert(console)
    user = signed_in(console, "olga", "operator")
    other = signed_in(console, "oscar", "operator")
    for csrf in (None, "", "0" * 64, other.csrf()):  # another session's token is wrong too
        r = user.post(f"/console/alerts/{alert_id}/resolve", {"note": "forged"}, csrf=csrf)
        assert r.status_code == 403, csrf
    assert _alert_row(console, alert_id)["status"] == "open"
    assert _audit(console, "alert.resolve") == []


def test_a_viewer_sees_everything_but_no_action_and_its_posts_are_refused(console):
    alert_id = _alert(console)
    viewer = signed_in(console, "vera", "viewer")
    queue = viewer.get("/console/queue")
    assert queue.status_code == 200 and "the channel never answered" in queue.text
    assert "/resolve" not in queue.text and "/resend" not in queue.text and "/retry" not in queue.text
    assert "Run the ledger check" not in viewer.get("/console/ledger").text
    for path in (f"/console/alerts/{alert_id}/resolve", "/console/ledger/check",
                 "/console/notifications/evt_x/resend", "/console/refunds/rf_x/retry"):
        r = viewer.post(path, {"note": "I should not"})
        assert r.status_code == 403 and "viewer" in r.text, path
    assert _alert_row(console, alert_id)["status"] == "open"
    assert _audit(console, "alert.resolve") == [] and _audit(console, "ledger.check") == []
    assert viewer.get("/console/operators").status_code == 403  # admins only


def test_a_session_ends_after_its_idle_time_and_after_its_absolute_time(console, clock):
    alert_id = _alert(console)
    user = signed_in(console, "olga", "operator")
    csrf = user.csrf()
    clock.advance(ops.SESSION_IDLE_S + 1)
    page = user.get("/console/queue")
    assert page.status_code == 303 and "/console/login?next=%2Fconsole%2Fqueue" in page.headers["location"]
    assert user.post(f"/console/alerts/{alert_id}/resolve", {"note": "late"}, csrf=csrf).status_code == 403
    assert _alert_row(console, alert_id)["status"] == "open"

    busy = signed_in(console, "oscar", "operator")
    steps = ops.SESSION_ABSOLUTE_S // (ops.SESSION_IDLE_S // 2)
    for _ in range(steps - 1):  # active all day: the session lives on...
        clock.advance(ops.SESSION_IDLE_S // 2)
        assert busy.get("/console/").status_code == 200
    clock.advance(ops.SESSION_IDLE_S // 2 + 1)  # ...until its absolute end
    assert busy.get("/console/").status_code == 303


def test_signing_out_ends_the_session(console):
    user = signed_in(console, "olga", "operator")
    cookie = user.http.cookies.get("piaohao_console")
    r = user.post("/console/logout", {})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    again = ConsoleUser(console)
    again.http.cookies.set("piaohao_console", cookie, path="/console")
    assert again.get("/console/").status_code == 303  # the old token is dead server-side
    assert [a["operator"] for a in _audit(console, "operator.sign_out")] == ["olga"]


def test_sign_in_never_redirects_to_another_site(console):
    user = ConsoleUser(console)
    r = user.sign_in("olga", add(console, "olga", "operator"), next_path="https://evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    other = ConsoleUser(console)
    r = other.sign_in("oscar", add(console, "oscar", "viewer"), next_path="/console/trades?q=A1")
    assert r.headers["location"] == "/console/trades?q=A1"


def test_a_trade_is_found_by_either_number_and_its_detail_shows_money_as_money(console):
    m = console.merchant()
    r = m.call("POST", "/v1/trades", trade_body("ORDER-7", 1999, notify_url="http://127.0.0.1:9/n"))
    assert r.status_code == 201, r.text
    trade = r.json()
    user = signed_in(console, "vera", "viewer")
    for q in ("ORDER-7", trade["trade_no"]):
        page = user.get(f"/console/trades?q={q}").text
        assert f'href="/console/trades/{trade["trade_no"]}"' in page and "¥19.99" in page
    assert "ORDER-7" not in user.get("/console/trades?q=ORDER-8").text
    assert "ORDER-7" in user.get(f"/console/trades?merchant_id={m.merchant_id}").text
    detail = user.get(f"/console/trades/{trade['trade_no']}")
    assert detail.status_code == 200 and "¥19.99" in detail.text and "1999" not in detail.text
    assert "2 pairs of socks" in detail.text
    assert user.get("/console/trades/tr_nope").status_code == 404


def test_lists_are_paginated(console):
    m = console.merchant()
    for i in range(3):
        assert m.call("POST", "/v1/trades", trade_body(f"P{i}", 100 + i)).status_code == 201
    user = signed_in(console, "vera", "viewer")
    first = user.get("/console/trades?limit=2").text
    assert first.count('href="/console/trades/tr') == 2 and "offset=2" in first
    second = user.get("/console/trades?limit=2&offset=2").text
    assert second.count('href="/console/trades/tr') == 1 and "Older" not in second


def test_no_page_shows_a_secret_a_password_hash_or_a_full_bank_number(console):
    p = console.platform
    m = console.merchant()
    assert m.call("POST", "/v1/trades", trade_body("S1", 500)).status_code == 201
    create_sub_merchant(p, m.merchant_id, NewSubMerchant(
        out_sub_merchant_id="seller-1", name="Sock Stall", kyc_type="individual", legal_name="Li Lei",
        id_number="110101199003070011", bank_account=BankAccount(bank="ICBC", number="6222020200112233445",
                                                                 name="Li Lei")))
    user = signed_in(console, "ada", "admin")
    with p.db.read() as conn:
        sealed_secrets = conn.execute(select(apps.c.secret_sealed)).scalars().all()
        hashes = conn.execute(select(operators.c.password_hash)).scalars().all()
        sessions = conn.execute(select(operator_sessions.c.session_hash)).scalars().all()
    pages = "".join(user.get(path).text for path in (
        "/console/", "/console/queue", "/console/trades", "/console/members", "/console/sub-merchants",
        "/console/payouts", "/console/refunds", "/console/settlement", "/console/audit", "/console/operators"))
    secrets = [m.secret, *sealed_secrets, *hashes, *sessions, user.http.cookies.get("piaohao_console"),
               console.settings.secret_key,
               "6222020200112233445", "110101199003070011"]
    for secret in secrets:
        assert secret and secret not in pages
    assert "***************3445" in pages and "Sock Stall" in pages
    assert re.search(r"110\*+0011", pages)


def test_the_console_keeps_the_body_limit_and_its_bare_path_leads_to_it(console):
    user = ConsoleUser(console)
    r = user.http.post("/console/login", data={"name": "x" * (70 * 1024), "password": "y"})
    assert r.status_code == 413  # the limits middleware runs before the console, as for every unsigned door
    bare = user.get("/console")
    assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/console/")


def test_the_overview_charts_the_money_paid_per_day(console):
    p = console.platform
    m = console.merchant()
    trade = m.call("POST", "/v1/trades", trade_body("C1", 1999)).json()
    p.db.write(lambda conn: conn.execute(update(trades).where(trades.c.trade_no == trade["trade_no"]).values(
        status="succeeded", paid_at=p.clock.now())))
    page = signed_in(console, "vera", "viewer").get("/console/").text
    assert page.count("<svg") == 4
    assert "¥19.99</title>" in page  # the bar of today, labelled with its amount
    assert ": 100%</title>" in page  # one decided trade, succeeded


def test_the_charts_count_days_from_local_midnight(console):
    p = console.platform
    m = console.merchant()
    midnight = datetime.combine(p.clock.now().astimezone(p.settings.tz).date(), time(), p.settings.tz)
    for out_trade_no, amount, paid_at in (("D1", 100, midnight + timedelta(seconds=1)),
                                          ("D2", 200, midnight - timedelta(seconds=1))):
        trade = m.call("POST", "/v1/trades", trade_body(out_trade_no, amount)).json()
        p.db.write(lambda conn, no=trade["trade_no"], at=paid_at: conn.execute(
            update(trades).where(trades.c.trade_no == no).values(status="succeeded", paid_at=at)))
    volume = console_charts(p)[0].svg
    assert f"{midnight.date().isoformat()}: ¥1.00</title>" in volume
    assert f"{(midnight - timedelta(days=1)).date().isoformat()}: ¥2.00</title>" in volume
