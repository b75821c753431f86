"""What a newcomer meets first: the quickstart with its notification receiver, the merchant SDK,
the self-describing API (OpenAPI with the signing scheme, docs served offline) and the home page."""

from __future__ import annotations

import io
import json
import threading

from examples import notify_receiver, quickstart
from piaohao import client as sdk
from piaohao.kernel import signing
from tests.support import patient
from tests.support.merchant import wait_until


def test_the_quickstart_pays_a_trade_and_the_sample_receiver_verifies_its_notification(running):
    m = running.merchant()
    out = io.StringIO()
    server = notify_receiver.make_server(m.app_id, m.secret, 0, out=out)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        notify_url = f"http://127.0.0.1:{server.server_address[1]}/notify"
        trade = quickstart.run(running.url, m.app_id, m.secret, notify_url)
        assert trade["status"] == "succeeded"
        assert wait_until(lambda: server.events)
        [event] = server.events
        assert event["type"] == "trade.succeeded" and event["data"]["trade_no"] == trade["trade_no"]
        assert f"verified trade.succeeded {event['id']} {trade['trade_no']}" in out.getvalue()
        forged = patient.post(notify_url, content=json.dumps(event).encode(),
                            headers={"X-App-Id": m.app_id, "X-Timestamp": "1", "X-Nonce": "n" * 16,
                                     "X-Signature": "AAAA"})
        assert forged.status_code == 401 and len(server.events) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_sdk_signs_as_the_platform_verifies_and_raises_api_errors(running):
    m = running.merchant()
    assert sdk.sign("s", "post", "/v1/x?a=1", "1", "n", b"{}") == signing.sign("s", "POST", "/v1/x?a=1", "1", "n",
                                                                                 b"{}")
    c = sdk.PiaohaoClient(running.url, m.app_id, m.secret)
    created = c.post("/v1/trades", {"out_trade_no": "S1", "amount": 5, "subject": "x", "currency": "CNY"})
    assert c.get("/v1/trades?out_trade_no=S1")["trade_no"] == created["trade_no"]
    try:
        c.get("/v1/trades/nope")
        raise AssertionError("expected ApiError")
    except sdk.ApiError as e:
        assert (e.status, e.code) == (404, "TRADE_NOT_FOUND") and e.request_id


def test_verify_notification_refuses_stale_foreign_and_tampered_bodies():
    h = sdk.signed_headers("app_1", "secret", "POST", "/notify", b'{"id": "evt_1"}', timestamp=1000)
    assert sdk.verify_notification("secret", h, b'{"id": "evt_1"}', "/notify", now_s=1000) == {"id": "evt_1"}
    for kwargs in ({"now_s": 2000}, {"now_s": 1000, "app_id": "app_2"}):
        try:
            sdk.verify_notification("secret", h, b'{"id": "evt_1"}', "/notify", **kwargs)
            raise AssertionError(kwargs)
        except sdk.InvalidNotification:
            pass
    try:
        sdk.verify_notification("secret", h, b'{"id": "evt_2"}', "/notify", now_s=1000)
        raise AssertionError("tampered")
    except sdk.InvalidNotification:
        pass


def test_openapi_declares_the_signing_scheme_on_every_v1_operation(running):
    doc = patient.get(running.url + "/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"X-App-Id", "X-Timestamp", "X-Nonce", "X-Signature"}
    assert all(s["type"] == "apiKey" and s["in"] == "header" for s in schemes.values())
    v1 = [op for path, ops in doc["paths"].items() if path.startswith("/v1/") for op in ops.values()]
    assert v1 and all(op["security"] == [{name: [] for name in schemes}] for op in v1)
    cashier = [op for path, ops in doc["paths"].items() if path.startswith("/cashier") for op in ops.values()]
    assert all("security" not in op for op in cashier)


def test_docs_and_home_page_are_served_without_any_cdn(running):
    for page in ("/docs", "/redoc"):
        html = patient.get(running.url + page).text
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html
        for asset in [x.split('"')[0] for x in html.split('src="')[1:]]:
            assert asset.startswith("/_docs/"), asset
            assert patient.get(running.url + asset).status_code == 200
    home = patient.get(running.url + "/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in home.text
