"""A buyer pays in Chromium, on a phone-sized and a desktop viewport: every way the cashier offers,
end to end through the page, the channel's page (sandbox, fake Alipay) or its QR code (fake WeChat
Pay), back to the result page, which shows the real outcome and then follows return_url.

Waits are Playwright's own (expect(...) with the context's 30 s bound) or `wait_until`: never sleeps,
never a timing assertion."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from piaohao.kernel.clock import FakeClock
from piaohao.services import payinfo
from piaohao.web.cashier import qr_svg
from tests.api.test_gateway import trade_body
from tests.e2e.test_member_payments import fund_balance, grant_coins, new_member
from tests.e2e.test_payments import wait_status
from tests.e2e.test_real_channels import CONNECT
from tests.payways.helpers import active_card
from tests.payways.order_system import OrderSystem
from tests.support import patient
from tests.support.merchant import wait_until

PASSWORD = "246810"
SHOP = "https://shop.example"
RETURN_URL = SHOP + "/orders/42/done"
PAY_BUTTON = re.compile(r"^Pay ")


def _trade(m, amount: int = 1999, return_url: str | None = RETURN_URL, **extra) -> dict:
    if return_url:
        extra["return_url"] = return_url
    r = m.call("POST", "/v1/trades", trade_body("T" + secrets.token_hex(5), amount, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def _shop(page) -> None:
    """The merchant's return page, served by the browser itself (no shop runs in these tests)."""
    page.context.route(SHOP + "/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<!doctype html><html lang=en><title>Shop</title><h1>Thanks</h1>"))


# The result page waits for the channel's asynchronous notification (or our active query), which a
# busy 2-core machine running several browsers can delay well past the usual 30 s bound.
CONFIRMATION_TIMEOUT_MS = 90_000


def _sees_success_then_the_shop(page) -> None:
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible(timeout=CONFIRMATION_TIMEOUT_MS)
    expect(page).to_have_url(RETURN_URL)


@pytest.mark.parametrize("viewport", ["mobile", "desktop"])
def test_a_buyer_pays_through_the_sandbox_page_and_lands_back_at_the_shop(running, request, viewport, screenshot):
    page = request.getfixturevalue(f"{viewport}_page")
    _shop(page)
    m = running.merchant()
    trade = _trade(m)
    page.goto(trade["pay_url"])
    expect(page.get_by_role("heading", level=1)).to_have_text("2 pairs of socks")
    expect(page.get_by_test_id("amount")).to_have_text("¥19.99")
    expect(page.get_by_role("timer")).to_have_text(re.compile(r"^1[45]:\d\d$"))
    screenshot(page, "methods")
    page.locator("#form-sandbox").get_by_role("button", name=PAY_BUTTON).click()

    expect(page).to_have_url(re.compile(r"/sandbox/pay/"))  # the channel's own page
    screenshot(page, "sandbox-page")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_role("link", name="Back to the merchant").click()

    expect(page).to_have_url(trade["pay_url"] + "/result")
    _sees_success_then_the_shop(page)
    assert wait_status(m, trade, "succeeded")


def test_the_page_of_a_paid_or_closed_trade_has_no_pay_button(running, mobile_page, screenshot):
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 5000)
    paid = _trade(m, member_id=member, return_url=None)  # nowhere to move on to: the result page stays
    assert patient.post(paid["pay_url"] + "/pay", json={"method": "balance", "payment_password": PASSWORD},
                      timeout=30).json()["status"] == "succeeded"
    mobile_page.goto(paid["pay_url"])
    expect(mobile_page.get_by_role("heading", name="Paid", exact=True)).to_be_visible()
    expect(mobile_page.get_by_role("button")).to_have_count(0)
    screenshot(mobile_page, "paid")
    mobile_page.get_by_role("link", name="See the payment result").click()
    expect(mobile_page.get_by_role("heading", name="Payment received")).to_be_visible()
    screenshot(mobile_page, "result")

    closed = _trade(m)
    assert m.call("POST", f"/v1/trades/{closed['trade_no']}/close").status_code == 200
    mobile_page.goto(closed["pay_url"])
    expect(mobile_page.get_by_role("heading", name="Closed", exact=True)).to_be_visible()
    expect(mobile_page.get_by_role("button")).to_have_count(0)


def test_a_member_pays_with_balance_after_a_wrong_password(running, desktop_page, screenshot):
    page = desktop_page
    _shop(page)
    m = running.merchant()
    member = new_member(m)
    fund_balance(running, member, 5000)
    trade = _trade(m, member_id=member)
    page.goto(trade["pay_url"])
    form = page.locator("#form-balance")
    form.get_by_label("Payment password").fill("000000")
    form.get_by_role("button", name=PAY_BUTTON).click()
    alert = page.locator("#form-balance").get_by_role("alert")
    expect(alert).to_have_text("The payment password is wrong. Check it and try again.")
    screenshot(page, "wrong-password")

    page.locator("#form-balance").get_by_label("Payment password").fill(PASSWORD)
    page.locator("#form-balance").get_by_role("button", name=PAY_BUTTON).click()
    _sees_success_then_the_shop(page)
    assert wait_status(m, trade, "succeeded")


def test_coins_under_the_cap_combine_with_the_sandbox(running, mobile_page, screenshot):
    page = mobile_page
    _shop(page)
    m = running.merchant()
    member = new_member(m)
    grant_coins(m, member, 800)
    trade = _trade(m, member_id=member)
    page.goto(trade["pay_url"])
    expect(page.locator("form.method")).to_have_count(5)  # sandbox, netbank, balance, credit, coins + another
    screenshot(page, "methods")
    combo = page.locator("#form-combo")
    combo.get_by_label(re.compile("^Coins to use")).fill("500")
    combo.get_by_label("Pay the rest with").select_option("sandbox")
    combo.get_by_label("Payment password").fill(PASSWORD)
    combo.get_by_role("button", name=PAY_BUTTON).click()
    expect(page).to_have_url(re.compile(r"/sandbox/pay/"))
    expect(page.get_by_text("1499")).to_be_visible()  # the channel collects the rest only
    page.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_role("link", name="Back to the merchant").click()
    _sees_success_then_the_shop(page)
    components = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["components"]
    assert {c["method"]: c["amount"] for c in components} == {"coins": 500, "sandbox": 1499}


def test_online_banking_goes_to_the_chosen_bank(running, desktop_page):
    page = desktop_page
    _shop(page)
    m = running.merchant()
    trade = _trade(m)
    page.goto(trade["pay_url"])
    netbank = page.locator("#form-netbank")
    netbank.get_by_label("Your bank").select_option("CCB")
    netbank.get_by_role("button", name=PAY_BUTTON).click()
    expect(page.get_by_role("heading", name="CCB online banking")).to_be_visible()
    page.get_by_role("button", name="Pay", exact=True).click()
    page.get_by_role("link", name="Back to the merchant").click()
    _sees_success_then_the_shop(page)


def test_without_javascript_the_redirect_path_still_pays(running, browser):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        _shop(page)
        m = running.merchant()
        trade = _trade(m)
        page.goto(trade["pay_url"])
        expect(page.get_by_role("timer")).to_have_text(re.compile(r"^1[45]:\d\d$"))  # drawn by the server
        page.locator("#form-sandbox").get_by_role("button", name=PAY_BUTTON).click()
        expect(page).to_have_url(re.compile(r"/sandbox/pay/"))
        page.get_by_role("button", name="Pay", exact=True).click()
        page.get_by_role("link", name="Back to the merchant").click()
        # The result page refreshes itself (a <noscript> meta refresh) until the channel confirms.
        _sees_success_then_the_shop(page)
    finally:
        context.close()


def test_the_keyboard_reaches_the_pay_button(running, desktop_page):
    m = running.merchant()
    trade = _trade(m)
    desktop_page.goto(trade["pay_url"])
    expect(desktop_page.get_by_test_id("amount")).to_be_visible()
    for _ in range(20):  # a bound: the first pay button is a few stops down the page
        desktop_page.keyboard.press("Tab")
        if desktop_page.evaluate("document.activeElement.matches('button.pay')"):
            break
    assert desktop_page.evaluate("document.activeElement.matches('button.pay')")
    desktop_page.keyboard.press("Enter")
    expect(desktop_page).to_have_url(re.compile(r"/sandbox/pay/"))
    assert wait_until(lambda: m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["status"] == "pending")


@pytest.fixture
def channel_world(make_platform):
    """make(kind) -> (running, merchant, connected): a merchant with a real channel account at the
    protocol-faithful fake (simulators/), on one clock that starts at the real time."""
    clock = FakeClock(datetime.now(UTC))
    made = []

    def make(kind: str):
        running = make_platform(clock=clock)
        m = running.merchant()
        connected = CONNECT[kind](running, m.merchant_id, clock)
        made.append(connected)
        return running, m, connected

    yield make
    for connected in made:
        for close in connected.closers:
            close()


def test_wechatpay_native_shows_the_qr_code_and_moves_on_once_paid(channel_world, mobile_page, screenshot):
    page = mobile_page
    _shop(page)
    running, m, ch = channel_world("wechatpay")
    trade = _trade(m)
    page.goto(trade["pay_url"])
    page.locator("#form-wechatpay-native").get_by_role("button", name=PAY_BUTTON).click()

    expect(page.get_by_role("heading", name="WeChat Pay (scan a QR code)")).to_be_visible()
    qr = page.locator("figure.qr svg")
    expect(qr).to_be_visible()
    answer = patient.post(trade["pay_url"] + "/pay", json={"method": "wechatpay.native"}, timeout=30).json()
    code_url = answer["next_action"]["code_url"]  # the same attempt: what the buyer's phone must scan
    assert page.locator("figure.qr").get_attribute("data-code-url") == code_url
    # The modules the browser draws are exactly those of the channel's code_url.
    drawn = qr.locator("path.qrline").get_attribute("d")
    assert drawn == re.search(r'class="qrline"[^>]*\sd="([^"]+)"', qr_svg(code_url)).group(1)
    screenshot(page, "qr")

    ch.pay(answer["payment_no"])  # the buyer scans and pays in WeChat
    assert wait_until(lambda: ch.drain() or wait_status(m, trade, "succeeded", timeout_s=0.5), timeout_s=30)
    _sees_success_then_the_shop(page)  # the QR page polls the status, then the result page moves on


def test_alipay_page_pays_through_the_alipay_cashier(channel_world, desktop_page):
    page = desktop_page
    _shop(page)
    running, m, ch = channel_world("alipay")
    trade = _trade(m)
    page.goto(trade["pay_url"])
    page.locator("#form-alipay-page").get_by_role("button", name=PAY_BUTTON).click()

    expect(page.locator("#amount")).to_have_text("19.99")  # Alipay's own cashier, in yuan
    page.get_by_role("button").click()  # 确认付款: the buyer pays at Alipay
    assert wait_until(lambda: ch.drain() or wait_status(m, trade, "succeeded", timeout_s=0.5), timeout_s=30)
    page.goto(trade["pay_url"] + "/result")  # where Alipay sends the buyer back (the fake stops at its answer)
    _sees_success_then_the_shop(page)


def test_a_member_pays_with_a_bound_card(running, mobile_page):
    page = mobile_page
    _shop(page)
    m = running.merchant()
    member = new_member(m)
    card_id = active_card(m, member)
    trade = _trade(m, member_id=member)
    page.goto(trade["pay_url"])
    form = page.locator("#form-quick")
    expect(form.get_by_label("ICBC card ending in 8888")).to_be_checked()
    form.get_by_label("Payment password").fill(PASSWORD)
    form.get_by_role("button", name=PAY_BUTTON).click()
    _sees_success_then_the_shop(page)
    paid = m.call("GET", f"/v1/trades/{trade['trade_no']}").json()
    assert paid["status"] == "succeeded" and card_id not in page.content()


def test_the_countdown_reaches_zero_and_takes_the_pay_buttons_away(make_platform, mobile_page):
    clock = FakeClock(datetime.now(UTC))
    running = make_platform(clock=clock)
    m = running.merchant()
    r = m.call("POST", "/v1/trades", trade_body("T" + secrets.token_hex(5), 1999, order_timeout_s=60))
    assert r.status_code == 201, r.text
    clock.advance(58)  # the platform's clock: the page is drawn with 2 s left
    mobile_page.goto(r.json()["pay_url"])
    expect(mobile_page.get_by_role("heading", name="Expired", exact=True)).to_be_visible()
    expect(mobile_page.get_by_role("timer")).to_have_text("expired")
    expect(mobile_page.get_by_role("button")).to_have_count(0)


def test_pull_mode_shows_the_same_cashier_by_order_number(running, desktop_page):
    page = desktop_page
    _shop(page)
    m = running.merchant()
    system = OrderSystem(m.app_id, m.secret)
    try:
        payinfo.set_payinfo_url(running.platform, m.merchant_id, system.url)
        system.orders["O1"] = {"amount": 1200, "subject": "a pair of shoes", "order_timeout_s": 900,
                               "return_url": RETURN_URL}
        page.goto(f"{running.url}/cashier/orders/{m.app_id}/O1")
        expect(page.get_by_test_id("amount")).to_have_text("¥12.00")
        page.locator("#form-sandbox").get_by_role("button", name=PAY_BUTTON).click()
        page.get_by_role("button", name="Pay", exact=True).click()
        page.get_by_role("link", name="Back to the merchant").click()
        _sees_success_then_the_shop(page)
        assert m.call("GET", "/v1/trades?out_trade_no=O1").json()["status"] == "succeeded"

        page.goto(f"{running.url}/cashier/orders/{m.app_id}/NO-SUCH-ORDER")
        expect(page.get_by_role("alert")).to_have_text("The shop does not know this order. Check the link you "
                                                       "were given.")
    finally:
        system.close()
