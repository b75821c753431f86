"""SSRF: PIAOHAO_OUTBOUND_PRIVATE=deny refuses private targets at creation (400 INVALID_URL) and
again after name resolution at delivery (DNS rebinding), with an alert."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from piaohao.db.schema import alerts
from piaohao.kernel.errors import InvalidUrl
from piaohao.kernel.outbound import GuardedTransport, OutboundRefused, check_url, guarded_client
from piaohao.kernel.settings import Settings
from tests.api.test_gateway import trade_body

PRIVATE_URLS = [
    "http://127.0.0.1:5432/", "http://127.1/notify", "http://2130706433/", "http://0x7f000001/", "http://0177.1/",
    "http://[::1]/n", "http://[::ffff:127.0.0.1]/n", "http://localhost/n", "http://LOCALHOST./n",
    "http://api.localhost/n", "http://10.1.2.3/n", "http://172.16.0.1/n", "http://192.168.1.1/n",
    "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/n", "http://100.64.0.1/n", "http://0.0.0.0/n",
    "http://0/n", "http://intranet/n", "http://db.internal/n", "ftp://merchant.example/n", "file:///etc/passwd",
    "gopher://merchant.example/", "http://user:pw@merchant.example/n", "merchant.example/n", "http:///n",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_and_odd_targets_are_refused_when_denied(url):
    with pytest.raises(InvalidUrl):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["https://merchant.example/notify?a=1", "http://8.8.8.8:8080/n",
                                 "https://[2001:4860:4860::8888]/n"])
def test_public_targets_pass(url):
    assert check_url(url, allow_private=False) == url


def test_allow_still_requires_http():
    assert check_url("http://127.0.0.1:9/n", allow_private=True)
    with pytest.raises(InvalidUrl):
        check_url("ftp://127.0.0.1/n", allow_private=True)


def test_default_is_allow_only_on_the_embedded_default():
    assert Settings.from_env({}).outbound_private_allowed
    pg = Settings.from_env({"PIAOHAO_DATABASE_URL": "postgresql+psycopg://x@h/db"})
    assert not pg.outbound_private_allowed
    assert Settings.from_env({"PIAOHAO_DATABASE_URL": "postgresql+psycopg://x@h/db",
                              "PIAOHAO_OUTBOUND_PRIVATE": "allow"}).outbound_private_allowed
    assert not Settings.from_env({"PIAOHAO_OUTBOUND_PRIVATE": "deny"}).outbound_private_allowed


def test_a_name_that_resolves_to_a_private_address_is_refused_before_any_connection():
    asked = []

    def rebinding(host, port):
        asked.append(host)
        return ["93.184.216.34", "127.0.0.1"]  # one public, one loopback: refused as a whole

    client = guarded_client(allow_private=False, timeout_s=1.0, resolver=rebinding)
    with pytest.raises(OutboundRefused):
        client.post("http://merchant.example/notify", content=b"{}")
    assert asked == ["merchant.example"]
    client.close()


def test_the_connection_goes_to_the_address_that_was_checked():
    transport = GuardedTransport(allow_private=False, resolver=lambda h, p: ["93.184.216.34"])
    assert transport.pinned_address("merchant.example", 443) == "93.184.216.34"
    with pytest.raises(OutboundRefused):
        GuardedTransport(allow_private=False, resolver=lambda h, p: ["10.0.0.7"]).pinned_address("x.example", 80)


def test_trade_with_a_private_notify_url_is_refused_with_invalid_url(make_platform):
    running = make_platform(workers=False, outbound_private="deny")
    m = running.merchant()
    for field in ("notify_url", "return_url"):
        for url in ("http://127.1/", "http://2130706433/", "http://[::1]/", "http://localhost/", "ftp://a.example/"):
            r = m.call("POST", "/v1/trades", trade_body("A1", 100, **{field: url}))
            assert r.status_code == 400 and r.json()["code"] == "INVALID_URL", (field, url, r.text)
    r = m.call("POST", "/v1/trades", trade_body("A1", 100, notify_url="https://merchant.example/n"))
    assert r.status_code == 201


def test_delivery_to_a_rebound_name_is_refused_and_alerted(make_platform):
    from piaohao.workers.dispatcher import OutboxDispatcher

    running = make_platform(workers=False, outbound_private="deny")
    m = running.merchant()
    r = m.call("POST", "/v1/trades", trade_body("A1", 100, notify_url="https://merchant.example/n"))
    assert r.status_code == 201  # a public name when it was given
    assert m.call("POST", f"/v1/trades/{r.json()['trade_no']}/close").status_code == 200  # trade.closed is due
    # ... which resolves to loopback when the notification is delivered (DNS rebinding).
    client = guarded_client(allow_private=False, timeout_s=1.0, resolver=lambda host, port: ["127.0.0.1"])
    with OutboxDispatcher(running.platform.db, running.settings, running.platform.clock, http=client) as d:
        assert d.run_once() == 1
    with running.platform.db.read() as conn:
        found = conn.execute(select(alerts.c.kind, alerts.c.message)).all()
    assert any(k == "outbound_refused" and "merchant.example" in msg for k, msg in found), found
    client.close()


def test_guarded_client_reaches_loopback_only_when_allowed(receiver):
    with guarded_client(allow_private=True, timeout_s=2.0) as c:
        assert c.post(receiver.url, content=b"{}").status_code == 200
    with guarded_client(allow_private=False, timeout_s=2.0) as c, pytest.raises(OutboundRefused):
        c.post(receiver.url, content=b"{}")
