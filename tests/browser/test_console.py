"""The operator console in a real browser (Chromium): an operator signs in, finds a trade and reads
it, resends a parked notification and resolves an alert; a viewer sees the same queue with no
action. Desktop and phone viewports. Screenshots go to artifacts/screenshots/ (and, with
PIAOHAO_UPDATE_DOC_IMAGES=1, to docs/img/ for docs/console.md)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from piaohao.alerts import raise_alert_now
from piaohao.db.schema import audit_log
from piaohao.services import notifications
from tests.console.helpers import add
from tests.refunds.helpers import paid_trade
from tests.support.merchant import Receiver, wait_until

DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"
WAIT_S = 30.0  # bounds for a busy 2-core machine, not measures of speed
expect.set_options(timeout=WAIT_S * 1000)


def _keep(screenshot, page, name: str) -> None:
    path = screenshot(page, name)
    if os.environ.get("PIAOHAO_UPDATE_DOC_IMAGES") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / f"{name}.png")


def _sign_in(page, base: str, name: str, password: str) -> None:
    page.goto(base + "/console/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Operator name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("nav.top .who")).to_contain_text(name)


@pytest.fixture
def failing_receiver():
    r = Receiver(always_fail=True)
    yield r
    r.close()


def _parked_trade(running, receiver) -> dict:
    """A paid trade whose trade.succeeded notification was parked (the merchant kept answering 500)."""
    m = running.merchant("Sock Shop")
    trade = paid_trade(m, receiver, "SOCKS-1001", 1999)
    db = running.platform.db
    assert wait_until(lambda: [e for e in notifications.list_parked(db) if e["subject_id"] == trade["trade_no"]],
                      timeout_s=WAIT_S), "the notification was never parked"
    return trade


def test_an_operator_finds_a_trade_resends_its_parked_notification_and_resolves_an_alert(
        running, failing_receiver, desktop_page, screenshot):
    p, page, base = running.platform, desktop_page, running.url
    trade = _parked_trade(running, failing_receiver)
    raise_alert_now(p.db, now=p.clock.now(), kind="refund_stuck", message="refund rf_demo: the channel never answered",
                    subject_type="refund", subject_id="rf_demo")
    _sign_in(page, base, "olga", add(running, "olga", "operator"))
    expect(page.locator("svg.chart")).to_have_count(4)  # the overview's charts, drawn by the server
    screenshot(page, "console-overview")

    page.get_by_role("link", name="Trades", exact=True).click()
    page.get_by_label("Number").fill("SOCKS-1001")
    page.get_by_role("button", name="Search").click()
    link = page.get_by_role("link", name=trade["trade_no"])
    expect(link).to_be_visible()
    expect(page.locator("table")).to_contain_text("¥19.99")
    _keep(screenshot, page, "console-trades")
    link.click()
    expect(page.get_by_role("heading", name=f"Trade {trade['trade_no']}")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("¥19.99")
    expect(page.locator("#payments")).to_contain_text("succeeded")
    expect(page.locator("#notifications")).to_contain_text("parked")
    expect(page.locator("#journal")).to_contain_text("¥19.99")
    _keep(screenshot, page, "console-trade-detail")

    page.get_by_role("link", name="Queue", exact=True).click()
    event_row = page.locator("#notifications tr[data-event-id]").filter(has_text=trade["trade_no"])
    alert_row = page.locator("#alerts tr[data-alert-id]").filter(has_text="rf_demo")
    expect(event_row).to_be_visible()
    expect(alert_row).to_be_visible()
    _keep(screenshot, page, "console-queue")

    failing_receiver.always_fail = False  # the merchant fixed its endpoint
    delivered_before = len(failing_receiver.events("trade.succeeded"))
    event_row.get_by_role("button", name="Resend").click()
    expect(page.get_by_role("status")).to_have_text("Notification queued for delivery again.")
    assert wait_until(lambda: len(failing_receiver.events("trade.succeeded")) > delivered_before, timeout_s=WAIT_S)
    assert wait_until(lambda: not notifications.list_parked(p.db), timeout_s=WAIT_S)

    alert_row.get_by_label("Note for alert").fill("confirmed with the channel: refund paid")
    alert_row.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("status")).to_have_text("Alert resolved.")
    expect(page.locator("#alerts")).to_contain_text("No open alerts.")

    with p.db.read() as conn:
        done = {(r.operator, r.action) for r in conn.execute(select(audit_log.c.operator, audit_log.c.action))}
    assert {("olga", "notification.resend"), ("olga", "alert.resolve")} <= done


def test_a_viewer_on_a_phone_sees_the_queue_but_no_action(running, failing_receiver, mobile_page, screenshot):
    p, page = running.platform, mobile_page
    trade = _parked_trade(running, failing_receiver)
    raise_alert_now(p.db, now=p.clock.now(), kind="refund_stuck", message="refund rf_demo: the channel never answered",
                    subject_type="refund", subject_id="rf_demo")
    _sign_in(page, running.url, "vera", add(running, "vera", "viewer"))
    expect(page.locator(".role")).to_have_text("viewer")
    page.goto(running.url + "/console/queue")
    expect(page.locator("#alerts")).to_contain_text("rf_demo")
    expect(page.locator("#notifications")).to_contain_text(trade["trade_no"])
    for name in ("Resolve", "Resend", "Retry"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    screenshot(page, "console-viewer-phone")
    page.goto(running.url + f"/console/trades/{trade['trade_no']}")
    expect(page.locator("dl.facts")).to_contain_text("¥19.99")
    expect(page.get_by_role("button", name="Resend")).to_have_count(0)
    page.goto(running.url + "/console/ledger")
    expect(page.get_by_role("button", name="Run the ledger check")).to_have_count(0)
