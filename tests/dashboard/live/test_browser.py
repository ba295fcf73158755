"""The live dashboard in a real headless browser (Debian's chromium, driven by Playwright).

Requests go through the routing API with the official openai client; the charts must move
without a reload, within 2 seconds. Each run saves a screenshot under var/screenshots/.
Without chromium the tests are skipped, except under CI (the `CI` variable), where a
missing browser is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from routing.demo import DemoCredentials, demo_seed
from routing.providers.local import replay_prompts
from tests.dashboard.conftest import BackgroundFlusher, LiveDashboard

pytestmark = pytest.mark.live

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_WITHIN_S = 2.0
COST_SHOWN = "document.getElementById('chart-cost').data[0].y.reduce((a, b) => a + (b || 0), 0)"


def chromium_path() -> str:
    """Debian's chromium; skipped when absent, a failure when absent under CI."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path and importlib.util.find_spec("playwright"):
        return path
    problem = "chromium is not installed (apt-get install chromium)" if not path else "playwright is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{problem}: under CI the browser tests must run")
    pytest.skip(f"{problem}; CI runs these tests")


@pytest.fixture
def demo(transactional_db: None, settings: Any, tmp_path: Path) -> DemoCredentials:
    settings.VAR_DIR = tmp_path
    settings.CASCADEOPS_DASHBOARD_TICK_SECONDS = 0.25
    return demo_seed()


@pytest.fixture
def browser(demo: DemoCredentials) -> Iterator[Any]:
    # After the demo data and gone before the database is flushed: Playwright's sync API
    # runs an event loop in this thread, where Django refuses to touch the database.
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def wait_until(page: Any, expression: str, timeout: float = 30_000) -> None:
    """Poll `expression` until it is true. Not `page.wait_for_function`: Playwright evaluates
    its string with `eval` in the page, which the Content-Security-Policy rightly forbids."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} ms: {expression}")
        page.wait_for_timeout(25)


def signed_in_page(browser: Any, url: str, credentials: DemoCredentials) -> Any:
    page = browser.new_page(viewport={"width": 1440, "height": 1800})
    # Anything the Content-Security-Policy blocks is reported on the console: there must be none.
    page.csp_violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
    page.goto(f"{url}/admin/login/?next=/")
    page.fill("#id_username", credentials.username)
    page.fill("#id_password", credentials.password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/")
    wait_until(page, "document.getElementById('live-status').dataset.state === 'live'", timeout=10_000)
    page.evaluate("window.notReloaded = true")
    return page


def route(url: str, credentials: DemoCredentials, count: int) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=credentials.api_key, max_retries=0)
    for prompt in replay_prompts()[:count]:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": prompt}], user="reader-7")


def save_screenshot(page: Any, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = Path(django_settings.BASE_DIR) / "var" / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{timezone.now():%Y%m%d-%H%M%S}.png"
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot: {path}")
    return path


def test_the_charts_move_within_two_seconds_of_routed_requests(browser, demo, capsys):
    with LiveDashboard() as server, BackgroundFlusher(interval=0.1):
        page = signed_in_page(browser, server.url, demo)
        assert page.evaluate(COST_SHOWN) == 0

        route(server.url, demo, count=8)
        answered = time.monotonic()
        wait_until(page, f"{COST_SHOWN} > 0", timeout=LIVE_WITHIN_S * 1000)
        took = time.monotonic() - answered
        wait_until(page, "document.querySelector('[data-tile=requests]').textContent === '8'", timeout=3000)

        assert took < LIVE_WITHIN_S
        assert page.evaluate("window.notReloaded") is True
        tiers = page.evaluate("document.getElementById('chart-tiers').data.map(t => t.meta)")
        assert "tier:0:replay-mixtral" in tiers
        assert page.evaluate("document.getElementById('chart-latency').data[1].y.length") >= 1
        assert "demo-team/demo-app" in page.text_content("#top")
        assert "reader-7" in page.text_content("#top")
        # The compliance panel is over the page's window: re-read within 10 s of the traffic.
        wait_until(page, "!document.getElementById('compliance').textContent.includes('no data')", timeout=15_000)
        assert "✔ yes" in page.text_content("#compliance")
        page.wait_for_timeout(500)  # let Plotly finish drawing before the picture
        assert save_screenshot(page, "dashboard", capsys).stat().st_size > 10_000
        assert page.csp_violations == []


def test_the_page_reconnects_after_the_server_restarts(browser, demo, capsys):
    with BackgroundFlusher(interval=0.1):
        first = LiveDashboard().__enter__()
        port = first.port
        try:
            page = signed_in_page(browser, first.url, demo)
        finally:
            first.__exit__(None, None, None)
        wait_until(page, "document.getElementById('live-status').dataset.state === 'reconnecting'")

        with LiveDashboard(port=port) as second:
            wait_until(page, "window.cascadeops.connects >= 2", timeout=15_000)
            route(second.url, demo, count=3)
            wait_until(page, f"{COST_SHOWN} > 0", timeout=LIVE_WITHIN_S * 1000)

            assert page.evaluate("window.notReloaded") is True
            assert page.text_content("#live-status") == "live"
