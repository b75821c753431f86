"""The browser stack itself: chromium starts and draws a page served with the shipped assets."""

from __future__ import annotations

from tests.support import patient


def test_static_assets_are_served_from_the_package(running):
    r = patient.get(running.platform.settings.base_url + "/static/piaohao.css", timeout=30)
    assert r.status_code == 200 and "--brand" in r.text and r.headers["content-type"].startswith("text/css")


def test_chromium_draws_a_page_of_the_platform(running, mobile_page):
    mobile_page.goto(running.platform.settings.base_url + "/static/piaohao.css")
    assert "--brand" in mobile_page.content()
