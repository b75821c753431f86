"""Pull mode (PayInfo SPI): the cashier by order number asks the merchant's order system, verifies
its signed answer and creates the trade exactly once, with every error of API.md."""

from __future__ import annotations

import threading

import httpx
import pytest
from sqlalchemy import func, select

from piaohao.db.schema import alerts, trades
from piaohao.services import payinfo
from tests.payways.order_system import OrderSystem
from tests.support import patient
from tests.support.merchant import wait_until

JSON = {"Accept": "application/json"}


def order(amount=1200, **extra) -> dict:
    return {"amount": amount, "subject": "a pair of shoes", "order_timeout_s": 900, **extra}


@pytest.fixture
def shop(running):
    m = running.merchant()
    system = OrderSystem(m.app_id, m.secret)
    payinfo.set_payinfo_url(running.platform, m.merchant_id, system.url)
    yield m, system
    system.close()


def open_order(running, m, out_trade_no: str, json: bool = True) -> httpx.Response:
    return patient.get(f"{running.url}/cashier/orders/{m.app_id}/{out_trade_no}", headers=JSON if json else {},
                     timeout=30)


def trades_for(running, m, out_trade_no: str) -> int:
    with running.platform.db.read() as conn:
        return conn.execute(select(func.count()).select_from(trades).where(
            trades.c.merchant_id == m.merchant_id, trades.c.out_trade_no == out_trade_no)).scalar_one()


def test_first_open_asks_the_order_system_and_later_opens_do_not(running, shop, receiver):
    m, system = shop
    system.orders["O1"] = order(notify_url=receiver.url)
    r = open_order(running, m, "O1")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["amount"] == 1200 and view["subject"] == "a pair of shoes" and view["status"] == "pending"
    assert "sandbox" in {x["method"] for x in view["methods"]}
    assert open_order(running, m, "O1").json()["trade_no"] == view["trade_no"]
    assert system.calls == ["O1"] and system.bad_requests == 0
    html = open_order(running, m, "O1", json=False)
    assert html.status_code == 200 and "a pair of shoes" in html.text
    # The trade is an ordinary one: readable through the API and paid through the cashier.
    t = m.call("GET", "/v1/trades?out_trade_no=O1").json()
    assert t["trade_no"] == view["trade_no"]
    r = patient.post(f"{running.url}/cashier/orders/{m.app_id}/O1/pay", json={"method": "sandbox"}, timeout=30)
    assert r.status_code == 200, r.text
    patient.post(r.json()["redirect_url"] + "/succeed", timeout=30)
    assert wait_until(lambda: m.call("GET", "/v1/trades?out_trade_no=O1").json()["status"] == "succeeded")
    assert wait_until(lambda: receiver.events("trade.succeeded"))


def test_concurrent_first_opens_make_exactly_one_trade(running, shop):
    m, system = shop
    system.orders["O2"] = order()
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(8)

    def go():
        barrier.wait()
        answers.append(open_order(running, m, "O2"))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["trade_no"] for a in answers}) == 1
    assert trades_for(running, m, "O2") == 1


@pytest.mark.parametrize("mode", ["unsigned", "forged", "tampered"])
def test_an_unsigned_or_forged_answer_is_payinfo_invalid_and_makes_no_trade(running, shop, mode):
    m, system = shop
    system.orders["O3"] = (mode, order())
    r = open_order(running, m, "O3")
    assert r.status_code == 502 and r.json()["code"] == "PAYINFO_INVALID", r.text
    page = open_order(running, m, "O3", json=False)
    assert page.status_code == 502 and "text/html" in page.headers["content-type"]
    assert trades_for(running, m, "O3") == 0
    with running.platform.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(alerts).where(alerts.c.kind == "payinfo_invalid")
                            ).scalar_one() >= 1


@pytest.mark.parametrize("body", [
    order(amount=-1), order(amount="12"), {"subject": "no amount"}, order(expires_at="2020-01-01T00:00:00Z"),
    order(out_trade_no="ANOTHER"), order(member_id="mem_nobody"), [1, 2],
])
def test_an_answer_that_breaks_a_trade_rule_is_payinfo_invalid(running, shop, body):
    m, system = shop
    system.orders["O4"] = body
    r = open_order(running, m, "O4")
    assert r.status_code == 502 and r.json()["code"] == "PAYINFO_INVALID", r.text
    assert trades_for(running, m, "O4") == 0


def test_zero_amount_unknown_order_and_server_errors(running, shop):
    m, system = shop
    system.orders["Z"] = order(amount=0)
    r = open_order(running, m, "Z")
    assert r.status_code == 400 and r.json()["code"] == "ZERO_AMOUNT"
    r = open_order(running, m, "NOPE")
    assert r.status_code == 404 and r.json()["code"] == "ORDER_NOT_FOUND"
    system.orders["E"] = "500"
    r = open_order(running, m, "E")
    assert r.status_code == 503 and r.json()["code"] == "PAYINFO_UNAVAILABLE"
    system.orders["E"] = order()
    assert open_order(running, m, "E").status_code == 200  # the buyer retried
    assert trades_for(running, m, "Z") == 0 and trades_for(running, m, "NOPE") == 0


def test_a_merchant_without_a_payinfo_url_or_an_unknown_app_is_404(running):
    m = running.merchant()
    assert open_order(running, m, "O1").status_code == 404
    r = patient.get(f"{running.url}/cashier/orders/app_unknown/O1", headers=JSON)
    assert r.status_code == 404
    with pytest.raises(Exception, match="http"):
        payinfo.set_payinfo_url(running.platform, m.merchant_id, "ftp://example.com/payinfo")


def test_an_order_system_that_times_out_then_answers(make_platform):
    running = make_platform(notify_timeout_s=0.3)
    m = running.merchant()
    system = OrderSystem(m.app_id, m.secret)
    try:
        payinfo.set_payinfo_url(running.platform, m.merchant_id, system.url)
        system.orders["SLOW"] = "hang"
        r = open_order(running, m, "SLOW")
        assert r.status_code == 503 and r.json()["code"] == "PAYINFO_UNAVAILABLE"
        assert trades_for(running, m, "SLOW") == 0
        system.orders["SLOW"] = order()
        system.release.set()  # the late answer to the first call arrives after we gave up: ignored
        r = open_order(running, m, "SLOW")
        assert r.status_code == 200 and r.json()["amount"] == 1200
        assert trades_for(running, m, "SLOW") == 1
    finally:
        system.close()


def test_the_command_turns_pull_mode_on_and_off(running, monkeypatch):
    from typer.testing import CliRunner

    from piaohao.cli import app

    monkeypatch.setenv("PIAOHAO_DATABASE_URL", running.settings.database_url)
    monkeypatch.setenv("PIAOHAO_SECRET_KEY", running.settings.secret_key)
    monkeypatch.setenv("PIAOHAO_SANDBOX", "on")
    m = running.merchant()
    result = CliRunner().invoke(app, ["merchants", "update", m.merchant_id, "--payinfo-url",
                                      "https://shop.example/payinfo", "--json"])
    assert result.exit_code == 0, result.output
    assert '"payinfo_url": "https://shop.example/payinfo"' in result.output
    assert payinfo.payinfo_url_of(running.platform, m.merchant_id) == "https://shop.example/payinfo"
    result = CliRunner().invoke(app, ["merchants", "update", m.merchant_id, "--payinfo-url", "file:///etc/passwd"])
    assert result.exit_code != 0 and "http(s)" in result.output
    assert payinfo.payinfo_url_of(running.platform, m.merchant_id) == "https://shop.example/payinfo"
    result = CliRunner().invoke(app, ["merchants", "update", m.merchant_id, "--payinfo-url", ""])
    assert result.exit_code == 0, result.output
    assert payinfo.payinfo_url_of(running.platform, m.merchant_id) is None
