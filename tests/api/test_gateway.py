"""The signing gateway: every auth error code in API.md, merchant scoping, request ids."""

from __future__ import annotations

import json
import time

from tests.support import patient
from tests.support.merchant import MerchantClient, wait_until


def trade_body(out_trade_no: str = "A1", amount: int = 1999, **extra) -> dict:
    return {"out_trade_no": out_trade_no, "amount": amount, "currency": "CNY", "subject": "2 pairs of socks",
            "order_timeout_s": 900, **extra}


def test_signed_request_is_accepted_and_carries_a_request_id(running):
    m = running.merchant()
    r = m.call("POST", "/v1/trades", trade_body())
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"]


def test_unknown_app_is_refused(running):
    m = running.merchant()
    stranger = MerchantClient(running.url, "app_nope", m.secret)
    r = stranger.call("GET", "/v1/trades?out_trade_no=A1")
    assert r.status_code == 401 and r.json()["code"] == "UNKNOWN_APP"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_missing_app_header_is_unknown_app(running):
    r = running.merchant().raw("GET", "/v1/trades/x", b"", {})
    assert r.status_code == 401 and r.json()["code"] == "UNKNOWN_APP"


def test_wrong_secret_is_invalid_signature(running):
    m = running.merchant()
    r = m.call("GET", "/v1/trades?out_trade_no=A1", secret="not-the-secret")
    assert r.status_code == 401 and r.json()["code"] == "INVALID_SIGNATURE"


def test_missing_signature_is_invalid_signature(running):
    m = running.merchant()
    headers = m.headers("GET", "/v1/trades/x", b"")
    del headers["X-Signature"]
    r = m.raw("GET", "/v1/trades/x", b"", headers)
    assert r.status_code == 401 and r.json()["code"] == "INVALID_SIGNATURE"


def test_body_changed_after_signing_is_refused_and_creates_nothing(running):
    m = running.merchant()
    signed = json.dumps(trade_body(amount=100)).encode()
    headers = m.headers("POST", "/v1/trades", signed)
    tampered = json.dumps(trade_body(amount=1)).encode()
    r = m.raw("POST", "/v1/trades", tampered, headers)
    assert r.status_code == 401 and r.json()["code"] == "INVALID_SIGNATURE"
    assert m.call("GET", "/v1/trades?out_trade_no=A1").status_code == 404


def test_query_string_is_part_of_the_signature(running):
    m = running.merchant()
    m.call("POST", "/v1/trades", trade_body("A1"))
    headers = m.headers("GET", "/v1/trades?out_trade_no=A1", b"")
    r = m.raw("GET", "/v1/trades?out_trade_no=A2", b"", headers)
    assert r.status_code == 401 and r.json()["code"] == "INVALID_SIGNATURE"


def test_stale_timestamp_is_refused(running):
    m = running.merchant()
    for skew in (-301, 301):
        r = m.call("GET", "/v1/trades?out_trade_no=A1", ts=str(int(time.time()) + skew))
        assert r.status_code == 401 and r.json()["code"] == "TIMESTAMP_EXPIRED"


def test_replayed_nonce_is_refused(running):
    m = running.merchant()
    body = json.dumps(trade_body()).encode()
    headers = m.headers("POST", "/v1/trades", body)
    first = m.raw("POST", "/v1/trades", body, headers)
    replay = m.raw("POST", "/v1/trades", body, headers)
    assert first.status_code == 201
    assert replay.status_code == 401 and replay.json()["code"] == "NONCE_REUSED"


def test_nonce_of_bad_length_is_refused(running):
    m = running.merchant()
    r = m.call("GET", "/v1/trades?out_trade_no=A1", nonce="short")
    assert r.status_code == 401 and r.json()["code"] == "INVALID_SIGNATURE"


def test_disabled_app_is_unknown(running):
    from piaohao.services.merchants import set_app_status

    m = running.merchant()
    set_app_status(running.platform.db, m.app_id, "disabled")
    # The gateway caches app lookups for a second: refused once the cached answer is gone.
    assert wait_until(lambda: m.call("GET", "/v1/trades?out_trade_no=A1").status_code == 401, timeout_s=30)
    r = m.call("GET", "/v1/trades?out_trade_no=A1")
    assert r.status_code == 401 and r.json()["code"] == "UNKNOWN_APP"


def test_rotated_secret_works_and_old_one_keeps_working_in_grace(running):
    from piaohao.services.merchants import rotate_secret

    m = running.merchant()
    creds = rotate_secret(running.platform, m.app_id, grace_s=3600)
    new = MerchantClient(running.url, m.app_id, creds.app_secret)
    # Taken once the gateway's one-second cache of the app has been refreshed.
    assert wait_until(lambda: new.call("GET", "/v1/trades?out_trade_no=A1").status_code == 404, timeout_s=30)
    assert m.call("GET", "/v1/trades?out_trade_no=A1").status_code == 404  # old secret: authenticated


def test_another_merchants_trade_is_not_found(running):
    a, b = running.merchant("A"), running.merchant("B")
    trade = a.call("POST", "/v1/trades", trade_body("SAME")).json()
    r = b.call("GET", f"/v1/trades/{trade['trade_no']}")
    assert r.status_code == 404 and r.json()["code"] == "TRADE_NOT_FOUND"
    r = b.call("POST", f"/v1/trades/{trade['trade_no']}/close")
    assert r.status_code == 404 and r.json()["code"] == "TRADE_NOT_FOUND"
    assert b.call("GET", "/v1/trades?out_trade_no=SAME").status_code == 404
    # The same out_trade_no is free for another merchant.
    assert b.call("POST", "/v1/trades", trade_body("SAME")).status_code == 201
    assert a.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"] == "pending"


def test_rate_limit_answers_429_with_retry_after(make_platform):
    running = make_platform(rate_limit_per_s=2)
    m = running.merchant()
    codes = [m.call("GET", "/v1/trades?out_trade_no=A1") for _ in range(8)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    assert limited[0].json()["code"] == "RATE_LIMITED"
    assert int(limited[0].headers["retry-after"]) >= 1


def test_health_metrics_and_openapi_need_no_signature(make_platform):

    running = make_platform(workers=False, metrics_token="metrics-token-for-tests")
    # Generous timeouts: the first /openapi.json builds the schema, slow on a loaded machine.
    assert patient.get(running.url + "/healthz", timeout=30).status_code == 200
    metrics = patient.get(running.url + "/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"},
                        timeout=30)
    assert "piaohao_http_requests_total" in metrics.text  # the token, not the request signature
    spec = patient.get(running.url + "/openapi.json", timeout=60).json()
    assert "/v1/trades" in spec["paths"]


def test_request_log_line_carries_request_id_merchant_and_trade(running):
    from structlog.testing import capture_logs

    m = running.merchant()
    with capture_logs() as logs:
        r = m.call("POST", "/v1/trades", trade_body())
    line = next(e for e in logs if e["event"] == "http.request" and e.get("path") == "/v1/trades")
    assert line["status"] == 201 and line["merchant_id"] == m.merchant_id
    assert line["trade_no"] == r.json()["trade_no"] and line["request_id"] == r.headers["x-request-id"]
    assert "app_secret" not in str(logs) and m.secret not in str(logs)


def test_a_nonce_reused_on_a_different_trade_creates_nothing(running):
    # The create-trade's nonce commits inside the trade's own transaction: a reused one must
    # still refuse the request before any trade exists.
    m = running.merchant()
    nonce = "n" * 24
    assert m.call("POST", "/v1/trades", trade_body("A1"), nonce=nonce).status_code == 201
    r = m.call("POST", "/v1/trades", trade_body("A2"), nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "NONCE_REUSED"
    assert m.call("GET", "/v1/trades?out_trade_no=A2").status_code == 404


def test_a_nonce_is_spent_by_a_create_trade_that_was_refused(running):
    m = running.merchant()
    nonce = "z" * 24
    first = m.call("POST", "/v1/trades", trade_body("A1", amount=0), nonce=nonce)
    assert first.status_code == 400 and first.json()["code"] == "ZERO_AMOUNT"
    again = m.call("POST", "/v1/trades", trade_body("A1", amount=0), nonce=nonce)
    assert again.status_code == 401 and again.json()["code"] == "NONCE_REUSED"
    valid_now = m.call("POST", "/v1/trades", trade_body("A1"), nonce=nonce)
    assert valid_now.status_code == 401 and valid_now.json()["code"] == "NONCE_REUSED"
    assert m.call("GET", "/v1/trades?out_trade_no=A1").status_code == 404


def test_a_create_trade_nonce_cannot_be_replayed_on_another_route(running):
    m = running.merchant()
    nonce = "q" * 24
    assert m.call("POST", "/v1/trades", trade_body("A1"), nonce=nonce).status_code == 201
    r = m.call("GET", "/v1/trades?out_trade_no=A1", nonce=nonce)
    assert r.status_code == 401 and r.json()["code"] == "NONCE_REUSED"


def test_racing_requests_with_one_nonce_create_one_trade(running):
    from concurrent.futures import ThreadPoolExecutor

    m = running.merchant()
    nonce = "r" * 24
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: m.call("POST", "/v1/trades", trade_body(f"R{i}"), nonce=nonce),
                                range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [401] * 7, [a.text for a in answers]
    assert all(a.json()["code"] == "NONCE_REUSED" for a in answers if a.status_code == 401)
    created = [i for i in range(8) if m.call("GET", f"/v1/trades?out_trade_no=R{i}").status_code == 200]
    assert len(created) == 1
