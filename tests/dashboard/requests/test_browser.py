"""Every page through the navigation only, as an operator and as a finance reader, in a real browser.

Debian's chromium, headless, driven by Playwright (as tests/dashboard/live/test_browser.py).
Each page is saved at 1440 px and at 390 px under var/screenshots/ of CASCADEOPS_VAR_DIR, and
at 390 px no product page may scroll sideways.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from cascadeops.local_state import var_dir
from routing.demo import DemoCredentials
from tests.dashboard.conftest import BackgroundFlusher, LiveDashboard
from tests.dashboard.live.test_browser import route, wait_until

pytestmark = pytest.mark.live

FINANCE = ("finley", "correct-horse-battery")
WIDE, PHONE = 1440, 390
# The admin is Django's own; its wide change lists may scroll on a phone.
SCROLL_EXEMPT = ("/admin/",)
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
# The tier chart's first bar of the cheap tier with requests in it, as Plotly reports a clicked point.
CHEAP_TIER_POINT = (
    "(() => { const t = document.getElementById('chart-tiers').data.find(d => String(d.meta).startsWith('tier:0:'));"
    " const i = t ? t.y.findIndex(v => v > 0) : -1; return i < 0 ? null : {x: t.x[i], data: t}; })()"
)


@pytest.fixture
def finance_reader(demo: DemoCredentials) -> tuple[str, str]:
    # Not staff: budgets and the audit trail are the product's own pages, not the admin's.
    user = get_user_model().objects.create_user(FINANCE[0], password=FINANCE[1])
    user.groups.add(Group.objects.get(name="finance"))
    return FINANCE


@pytest.fixture
def screens() -> Path:
    directory = var_dir() / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def site(browser: Any, demo: DemoCredentials) -> Iterator[str]:
    with LiveDashboard() as server, BackgroundFlusher(interval=0.1):
        route(server.url, demo, count=6)
        yield server.url


def sign_in(browser: Any, url: str, username: str, password: str) -> Any:
    page = browser.new_page(viewport={"width": WIDE, "height": 900})
    page.goto(f"{url}/login/")  # no page asked for: each role lands on its own
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def nav_labels(page: Any) -> list[str]:
    return [a.strip() for a in page.locator("nav[aria-label=Main] a").all_inner_texts()]


def visit_by_nav(page: Any, label: str) -> None:
    assert label in nav_labels(page), f"no {label!r} in the navigation of {page.url}: {nav_labels(page)}"
    page.locator("nav[aria-label=Main] a", has_text=label).first.click()
    page.wait_for_load_state("networkidle")


def check_page(page: Any, name: str, screens: Path) -> None:
    """A title and a purpose line (outside the admin); pictures at both widths; no sideways scroll on a phone."""
    admin = any(part in page.url for part in SCROLL_EXEMPT)
    if not admin:
        assert page.locator("h1").first.is_visible(), page.url
        assert page.locator(".purpose").first.is_visible(), page.url
    page.set_viewport_size({"width": WIDE, "height": 900})
    page.wait_for_timeout(300)  # charts redraw at the new width
    page.screenshot(path=str(screens / f"{name}-{WIDE}.png"), full_page=True)
    page.set_viewport_size({"width": PHONE, "height": 844})
    page.wait_for_timeout(300)
    page.screenshot(path=str(screens / f"{name}-{PHONE}.png"), full_page=True)
    if not admin:
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{page.url} scrolls sideways at {PHONE} px"
    page.set_viewport_size({"width": WIDE, "height": 900})


def test_a_signed_out_visitor_is_sent_to_our_sign_in_page(browser, site):
    page = browser.new_page()
    page.goto(f"{site}/requests/")

    assert "/login/?next=/requests/" in page.url
    assert page.locator("h1").inner_text() == "CascadeOps"


def test_an_operator_reaches_every_page_through_the_navigation(browser, demo, site, screens):
    page = sign_in(browser, site, demo.username, demo.password)
    assert page.url == f"{site}/"  # operators land on the dashboard
    wait_until(page, "document.getElementById('live-status').dataset.state === 'live'", timeout=10_000)
    labels = nav_labels(page)
    assert labels[:8] == ["Dashboard", "Requests", "Policies", "Experiments", "Tuning", "What-if", "Alerts", "Budgets"]

    for label in labels:
        if label == "API":
            continue  # Swagger UI, not a page of ours: checked last
        visit_by_nav(page, label)
        check_page(page, f"operator-{label.lower()}", screens)
        if label == "Requests":
            assert page.locator("#request-log tbody tr").count() == 6
            page.locator("#request-log tbody tr a").first.click()
            page.wait_for_load_state("networkidle")
            assert page.locator("#request-attempts tbody tr").count() >= 1
            check_page(page, "operator-request", screens)
        if label == "What-if":
            page.locator(".link-list a", has_text="demo").click()
            page.wait_for_load_state("networkidle")
            check_page(page, "operator-what-if-demo", screens)

    visit_by_nav(page, "Dashboard")
    visit_by_nav(page, "API")  # Swagger UI from this server's static files, no internet
    page.locator(".swagger-ui .info").wait_for(timeout=10_000)
    page.go_back()
    page.locator("button", has_text="Log out").click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/login/")


def test_the_dashboard_links_to_the_requests_it_shows(browser, demo, site):
    page = sign_in(browser, site, demo.username, demo.password)
    wait_until(page, "document.getElementById('live-status').dataset.state === 'live'", timeout=10_000)

    page.locator("#top a", has_text="reader-7").click()
    page.wait_for_load_state("networkidle")

    assert "end_user=reader-7" in page.url
    assert page.locator("#request-log tbody tr").count() == 6

    # A click on the tier chart's bar opens that minute's requests answered by that tier's model.
    page.go_back()
    wait_until(page, "document.getElementById('live-status').dataset.state === 'live'", timeout=10_000)
    wait_until(page, f"({CHEAP_TIER_POINT}) !== null")
    page.evaluate(f"document.getElementById('chart-tiers').emit('plotly_click', {{points: [{CHEAP_TIER_POINT}]}})")
    page.wait_for_url("**/requests/?**")
    page.wait_for_load_state("networkidle")

    assert "model=replay-mixtral" in page.url and "since=" in page.url and "until=" in page.url
    answered_by = page.locator("#request-log tbody td:nth-child(5)").all_inner_texts()
    assert answered_by and all("replay-mixtral" in text for text in answered_by)


def test_finance_lands_on_its_reports_and_reaches_its_pages(finance_reader, browser, site, screens):
    page = sign_in(browser, site, *finance_reader)  # a database row made before the browser started
    assert page.url == f"{site}/finance/"
    labels = nav_labels(page)
    assert labels == ["Reports", "Budgets", "Audit", "API"]

    for label in [label for label in labels if label != "API"]:
        visit_by_nav(page, label)
        check_page(page, f"finance-{label.lower()}", screens)
