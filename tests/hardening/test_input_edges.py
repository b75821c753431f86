"""What strangers send: NUL characters, odd digits, huge bodies, wrong methods. Always a clean 4xx,
never a 500, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import secrets

from piaohao.services import passwords
from tests.api.test_gateway import trade_body
from tests.support import patient


def test_nul_in_path_query_or_body_is_a_clean_400(running):
    m = running.merchant()
    cases = [
        ("GET", "/v1/trades/tr%00x", None),
        ("GET", "/v1/trades?out_trade_no=A%001", None),
        ("POST", "/v1/trades", trade_body("A\u00001")),
        ("POST", "/v1/trades", trade_body("A1", subject="socks\u0000")),
        ("POST", "/v1/members", {"out_member_id": "u-1", "name": "Li\u0000", "payment_password": "246810"}),
    ]
    for method, path, payload in cases:
        r = m.call(method, path, payload)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", (path, r.status_code, r.text)
    # Unsigned doors too.
    trade = m.call("POST", "/v1/trades", trade_body("A2")).json()
    for url, kwargs in ((trade["pay_url"] + "/pay", {"content": b'{"method": "sand\\u0000box"}',
                                                      "headers": {"Content-Type": "application/json"}}),
                        (running.url + "/channels/sandbox/notify", {"content": b"a=\x00"}),
                        (running.url + "/channels/alipay/notify", {"content": b"out_trade_no=%00",
                                                                   "headers": {"Content-Type":
                                                                               "application/x-www-form-urlencoded"}}),
                        (running.url + "/cashier/x%00y", {})):
        r = patient.post(url, **kwargs) if "content" in kwargs else patient.get(url)
        assert r.status_code == 400, (url, r.status_code, r.text)
    r = m.call("POST", "/v1/trades", trade_body("A3", subject="\ud800"[:0] + "ok"))
    assert r.status_code == 201


def test_unpaired_surrogates_in_json_are_refused_and_emoji_pass(running):
    m = running.merchant()
    body = json.dumps(trade_body("A1")).replace('"subject": "', '"subject": "\\ud800').encode()
    r = m.raw("POST", "/v1/trades", body, m.headers("POST", "/v1/trades", body))
    assert r.status_code == 400, r.text
    body = json.dumps(trade_body("A2", subject="socks \U0001F9E6")).encode()  # \ud83e\uddE6 escaped
    r = m.raw("POST", "/v1/trades", body, m.headers("POST", "/v1/trades", body))
    assert r.status_code == 201, r.text


def test_non_ascii_digits_in_x_timestamp_are_a_401_not_a_500(running):
    m = running.merchant()
    for ts in (b"\xb9\xb2\xb3", "\u0661\u0662".encode(), b"1" * 40):  # Latin-1 superscripts, Arabic-Indic
        headers = {k: v.encode() for k, v in m.headers("GET", "/v1/trades/tr_x", b"").items()}
        headers["X-Timestamp"] = ts
        r = m.http.get("/v1/trades/tr_x", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "INVALID_SIGNATURE", (ts, r.text)


def test_unsigned_endpoints_refuse_large_bodies(running):
    m = running.merchant()
    trade = m.call("POST", "/v1/trades", trade_body("A1")).json()
    big = b"x" * (64 * 1024 + 1)
    for url in (running.url + "/channels/sandbox/notify", trade["pay_url"] + "/pay", running.url + "/sandbox/api/pay"):
        r = patient.post(url, content=big)
        assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE", (url, r.status_code)

    def chunks():
        for _ in range(100):
            yield b"y" * 4096

    r = patient.post(running.url + "/channels/sandbox/notify", content=chunks())  # no Content-Length
    assert r.status_code == 413


def test_405_carries_allow(running):
    r = patient.delete(running.url + "/healthz")
    assert r.status_code == 405 and "GET" in r.headers.get("allow", "")
    m = running.merchant()
    r = m.call("PUT", "/v1/trades")
    assert r.status_code == 405 and "POST" in r.headers.get("allow", "")


def test_empty_components_are_invalid_components(running):
    m = running.merchant()
    trade = m.call("POST", "/v1/trades", trade_body("A1")).json()
    for components in ([], [{"method": "balance", "amount": 1}] * 5):
        r = patient.post(trade["pay_url"] + "/pay", json={"components": components})
        assert r.status_code == 400 and r.json()["code"] == "INVALID_COMPONENTS", r.text


def test_a_password_and_the_same_with_a_nul_are_not_equal():
    stored = passwords.hash_password("246810")
    assert passwords.password_matches("246810", stored)
    assert not passwords.password_matches("246810\x00", stored)
    assert not passwords.password_matches("246810\x00\x00", stored)


def test_metrics_are_not_public(make_platform):
    running = make_platform(workers=False)
    assert patient.get(running.url + "/metrics").status_code == 404
    token = secrets.token_urlsafe(24)
    running = make_platform(workers=False, metrics_token=token)
    assert patient.get(running.url + "/metrics").status_code == 404
    assert patient.get(running.url + "/metrics", headers={"Authorization": "Bearer nope"}).status_code == 404
    r = patient.get(running.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and b"piaohao_http_requests_total" in r.content
