"""The cashier page over HTTP (no browser): what a buyer's browser receives for each state of a trade,
and the form path that works without JavaScript. SQLite and PostgreSQL."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

import httpx
import pytest

from piaohao.kernel.clock import FakeClock
from piaohao.web.cashier import qr_svg
from tests.api.test_gateway import trade_body
from tests.e2e.test_member_payments import fund_balance, grant_coins, new_member
from tests.e2e.test_payments import succeed, wait_status
from tests.e2e.test_real_channels import connect_wechatpay
from tests.support import patient

PASSWORD = "246810"
RETURN_URL = "https://shop.example/orders/42/done"


def _trade(m, amount: int = 1999, **extra) -> dict:
    r = m.call("POST", "/v1/trades", trade_body("T" + secrets.token_hex(5), amount, return_url=RETURN_URL, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def _page(trade: dict) -> httpx.Response:
    r = patient.get(trade["pay_url"], timeout=30)
    assert r.headers["content-type"].startswith("text/html"), r.headers
    return r


def _form(trade: dict, **fields) -> httpx.Response:
    return patient.post(trade["pay_url"] + "/form", data=fields, timeout=30, follow_redirects=False)


def _pay_buttons(html: str) -> list[str]:
    return re.findall(r'<button type="submit" class="pay">', html)


def test_the_page_shows_money_subject_time_left_and_a_form_per_method(running):
    m = running.merchant()
    trade = _trade(m)
    r = _page(trade)
    assert r.status_code == 200
    page = r.text
    assert '<html lang="en">' in page and 'name="viewport"' in page
    assert "¥19.99" in page and "1999" not in page.replace(trade["trade_no"], "")
    assert "2 pairs of socks" in page
    left = int(re.search(r'data-seconds-left="(\d+)"', page).group(1))
    assert 800 < left <= 900  # the trade was created with 900 s to pay
    assert re.search(r'role="timer"[^>]*>1[45]:\d\d<', page)
    assert 'action="/cashier/' in page and "/form" in page
    assert 'id="form-sandbox"' in page and 'id="form-netbank"' in page and 'name="bank"' in page
    assert len(_pay_buttons(page)) == 2  # sandbox, netbank (no member: no member methods, no cards)
    assert '/static/cashier.js' in page and "/static/piaohao.css" in page
    # A page that takes passwords: not framed by other sites, not kept by the browser.
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"


def test_a_succeeded_trade_shows_paid_and_no_pay_button(running):
    m = running.merchant()
    trade = _trade(m)
    redirect = patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30).json()["redirect_url"]
    succeed(redirect)
    assert wait_status(m, trade, "succeeded")
    page = _page(trade).text
    assert 'data-state="paid"' in page and "<h2 id=\"state-heading\">Paid</h2>" in page
    assert _pay_buttons(page) == [] and "<form" not in page and "<button" not in page


def test_a_closed_trade_shows_closed_and_no_pay_button(running):
    m = running.merchant()
    trade = _trade(m)
    assert m.call("POST", f"/v1/trades/{trade['trade_no']}/close").json()["status"] == "closed"
    page = _page(trade).text
    assert 'data-state="closed"' in page and "can no longer be paid" in page
    assert _pay_buttons(page) == [] and "<form" not in page
    # Posting the form anyway is refused with the reason, still without a pay button.
    r = _form(trade, form="sandbox", method="sandbox")
    assert r.status_code == 409 and "<form" not in r.text and 'data-state="closed"' in r.text


def test_the_form_without_javascript_answers_303_to_the_channel_page(running):
    m = running.merchant()
    trade = _trade(m)
    r = _form(trade, form="sandbox", method="sandbox")
    assert r.status_code == 303, r.text
    twin = patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30).json()
    assert r.headers["location"] == twin["redirect_url"]  # the same attempt as the JSON twin's
    netbank = _form(trade, form="netbank", method="netbank", bank="CMB")
    assert netbank.status_code == 303 and netbank.headers["location"] != r.headers["location"]
    sandbox_page = patient.get(netbank.headers["location"], timeout=30).text
    assert "CMB" in sandbox_page


def test_the_channel_sends_the_buyer_back_to_the_result_page_not_to_the_shop(running):
    m = running.merchant()
    trade = _trade(m)
    location = _form(trade, form="sandbox", method="sandbox").headers["location"]
    back = patient.post(location + "/succeed", data={"notify": "normal"}, timeout=30)
    assert back.status_code == 200, back.text
    assert f'href="{trade["pay_url"]}/result"' in back.text


def test_the_result_page_waits_for_the_real_status_then_follows_return_url(running):
    m = running.merchant()
    trade = _trade(m)
    waiting = patient.get(trade["pay_url"] + "/result", timeout=30)
    assert waiting.status_code == 200 and "Waiting for confirmation" in waiting.text
    assert RETURN_URL not in waiting.text  # a return proves nothing: no way on to the shop yet
    assert '<noscript><meta http-equiv="refresh"' in waiting.text and "data-poll-url" in waiting.text
    succeed(patient.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30).json()["redirect_url"])
    assert wait_status(m, trade, "succeeded")
    done = patient.get(trade["pay_url"] + "/result", timeout=30).text
    assert "Payment received" in done and f'content="2;url={RETURN_URL}"' in done
    assert f'href="{RETURN_URL}"' in done


def test_a_wrong_password_is_shown_next_to_its_form_as_an_alert(running):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 5000)
    trade = _trade(m, member_id=member)
    r = _form(trade, form="balance", method="balance", payment_password="000000")
    assert r.status_code == 403
    form = re.search(r'<form[^>]*id="form-balance".*?</form>', r.text, re.S).group(0)
    assert 'role="alert"' in form and "payment password is wrong" in form
    assert 'aria-describedby="pw-help-balance error-balance"' in form
    assert "payment password is wrong" not in re.sub(r'<form[^>]*id="form-balance".*?</form>', "", r.text, flags=re.S)


def test_balance_by_form_pays_at_once_and_goes_to_the_result(running):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 5000)
    trade = _trade(m, member_id=member)
    page = _page(trade).text
    assert {"form-balance", "form-credit", "form-combo"} <= set(re.findall(r'id="(form-[a-z]+)"', page))
    assert 'id="form-coins"' not in page  # coins alone would be over the 50 % cap
    assert 'max="999"' in page  # coins may pay at most 50 % of 1999, rounded down
    r = _form(trade, form="balance", method="balance", payment_password=PASSWORD)
    assert r.status_code == 303 and r.headers["location"].endswith("/result")
    assert wait_status(m, trade, "succeeded")
    assert "Payment received" in patient.get(trade["pay_url"] + "/result", timeout=30).text


def test_coins_over_the_cap_are_explained_and_under_it_combine(running):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 5000)
    grant_coins(m, member, 2000)
    trade = _trade(m, member_id=member)
    over = _form(trade, form="combo", coins_amount="1500", rest_method="balance", payment_password=PASSWORD)
    assert over.status_code == 409 and "Coins can pay at most ¥9.99 of this order." in over.text
    ok = _form(trade, form="combo", coins_amount="999", rest_method="balance", payment_password=PASSWORD)
    assert ok.status_code == 303, ok.text
    assert wait_status(m, trade, "succeeded")
    paid = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["components"]
    assert {c["method"]: c["amount"] for c in paid} == {"coins": 999, "balance": 1000}


def test_an_unknown_payment_page_says_so_in_words(running):
    r = patient.get(running.url + "/cashier/no-such-token", timeout=30)
    assert r.status_code == 404 and "There is no payment at this address" in r.text
    assert patient.get(running.url + "/cashier/no-such-token", headers={"Accept": "application/json"},
                     timeout=30).json()["code"] == "TRADE_NOT_FOUND"


@pytest.fixture
def wechatpay(make_platform):
    """A platform whose merchant has a WeChat Pay account at the protocol-faithful fake."""
    clock = FakeClock(datetime.now(UTC))
    running = make_platform(clock=clock)
    m = running.merchant()
    connected = connect_wechatpay(running, m.merchant_id, clock)
    yield running, m, connected
    for close in connected.closers:
        close()


def test_wechatpay_native_shows_the_code_url_as_an_inline_svg_qr_code(wechatpay):
    running, m, ch = wechatpay
    trade = _trade(m)
    assert 'id="form-wechatpay-native"' in _page(trade).text
    assert 'id="form-wechatpay-jsapi"' not in _page(trade).text  # runs inside WeChat only, not in this page
    r = _form(trade, form="wechatpay-native", method="wechatpay.native")
    assert r.status_code == 200, r.text
    code_url = patient.post(trade["pay_url"] + "/pay", json={"method": "wechatpay.native"},
                          timeout=30).json()["next_action"]["code_url"]
    assert code_url.startswith("weixin://")
    assert f'data-code-url="{code_url}"' in r.text
    assert qr_svg(code_url) in r.text and "<img" not in r.text  # drawn here, inline: no image service
    assert qr_svg(code_url) != qr_svg(code_url + "x")
