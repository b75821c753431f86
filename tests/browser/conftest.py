"""Real-browser tests: Playwright driving Debian's chromium by its executable path.

Playwright's own browser download is not reachable here, so we launch the system chromium
(`apt-get install chromium`, which `.ci/run` does). Without it the browser tests are skipped, unless
PIAOHAO_REQUIRE_BROWSER=1 (CI sets it), which turns a missing browser into a failure.
Screenshots land in `artifacts/screenshots/` (kept by CI, ignored by git).

They run on SQLite only: what they prove is the page in a browser; every database path behind
those pages is proven on SQLite and PostgreSQL by the HTTP tests (tests/api/test_cashier_page.py,
tests/console/), and a browser per database would double the slowest part of CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
MOBILE = {"width": 390, "height": 844}  # a common phone
DESKTOP = {"width": 1366, "height": 900}


def chromium_path() -> str | None:
    for name in (os.environ.get("PIAOHAO_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


@pytest.fixture
def database_url(tmp_path, migrated_templates) -> str:
    return migrated_templates.sqlite_copy(tmp_path / "piaohao.db")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        if os.environ.get("PIAOHAO_REQUIRE_BROWSER") == "1":
            pytest.fail("PIAOHAO_REQUIRE_BROWSER=1 but no chromium found (apt-get install chromium)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def mobile_page(browser):
    context = browser.new_context(viewport=MOBILE, is_mobile=True, has_touch=True, locale="zh-CN")
    context.set_default_timeout(30_000)  # a bound for a busy machine, not a measure of speed
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def desktop_page(browser):
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(request):
    """screenshot(page, "name"): keep a picture of what the test saw, named after the test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        safe = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        path = ARTIFACTS / f"{safe}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
