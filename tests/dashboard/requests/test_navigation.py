"""One navigation by role, the branded sign-in page, where each role lands, and signing out."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.urls import reverse

from billing.models import Budget
from billing.reports.compute import LedgerRow
from billing.reports.selectors import billing_today
from common.audit.context import Actor, acting_as
from dashboard.navigation import links_for, role_of
from tests.billing.reports.test_build import store

OPERATOR_LABELS = ["Dashboard", "Requests", "Policies", "Experiments", "Tuning", "What-if", "Alerts", "Budgets"]


def labels(user: Any, path: str = "/") -> list[str]:
    return [link.label for link in links_for(user, path)]


def test_an_operator_sees_the_operator_pages(ops_user, operator):
    assert role_of(ops_user) == "operator"
    assert labels(ops_user) == [*OPERATOR_LABELS, "Admin"]
    assert labels(operator) == labels(ops_user)  # a superuser sees the same


def test_an_operator_who_is_not_staff_gets_only_the_products_own_pages(ops_user):
    ops_user.is_staff = False

    assert labels(ops_user) == ["Dashboard", "Requests", "Tuning", "What-if", "Budgets"]


def test_finance_sees_reports_and_nothing_it_may_not_open(finance_user):
    assert role_of(finance_user) == "finance"
    shown = labels(finance_user)
    assert shown[0] == "Reports"
    assert "Dashboard" not in shown and "Admin" not in shown


def test_admin_pages_are_linked_for_staff_only(ops_user):
    as_staff = {link.label: link.url for link in links_for(ops_user, "/")}
    ops_user.is_staff = False

    assert as_staff["Policies"].startswith("/admin/")
    assert all(not link.url.startswith("/admin/") for link in links_for(ops_user, "/"))


def test_finance_who_is_not_staff_reaches_budgets_and_audit_through_the_navigation(client, finance_user):
    today = billing_today()
    store([LedgerRow(today, "growth", "support-bot", "default", "mixtral", requests=3, cost=Decimal("10.5"))])
    with acting_as(Actor(name="alice", source="admin")):
        Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=Decimal("30"))
    landing = client.post(reverse("login"), {"username": "fred", "password": "correct-horse-battery"}, follow=True)
    nav = nav_links(landing.content.decode())
    assert list(nav) == ["Reports", "Budgets", "Audit"] and not finance_user.is_staff

    budgets = client.get(nav["Budgets"])
    trail = client.get(nav["Audit"])

    assert budgets.status_code == 200 and trail.status_code == 200
    assert all(figure in budgets.content.decode() for figure in ("$30.00", "$10.50", "35.0 %"))
    assert "alice" in trail.content.decode() and "billing.budget" in trail.content.decode()
    assert 'aria-current="page">Audit<' in trail.content.decode()


def nav_links(html: str) -> dict[str, str]:
    """The main navigation's links by label."""
    nav = html.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    return {label: url for url, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav) if label != "API"}


def test_the_page_being_shown_is_marked_current(ops_user):
    current = [link.label for link in links_for(ops_user, "/requests/?team=x") if link.current]

    assert current == ["Requests"]
    assert [link.label for link in links_for(ops_user, "/tuning/policies/3/what-if/") if link.current] == ["What-if"]
    assert [link.label for link in links_for(ops_user, "/tuning/") if link.current] == ["Tuning"]


def test_the_sign_in_page_is_ours(client, db):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert b"CascadeOps" in response.content and b'class="purpose"' in response.content


def test_signing_in_lands_finance_on_its_reports(client, finance_user):
    response = client.post(reverse("login"), {"username": "fred", "password": "correct-horse-battery"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("billing:index")
    assert b"Log out" in response.content


def test_signing_in_lands_an_operator_on_the_dashboard(client, ops_user):
    response = client.post(reverse("login"), {"username": "olga", "password": "correct-horse-battery"})

    assert client.get(response["Location"])["Location"] == reverse("dashboard:home")


def test_a_page_asked_for_wins_over_the_landing(client, finance_user):
    response = client.post(
        reverse("login") + "?next=/requests/",
        {"username": "fred", "password": "correct-horse-battery", "next": "/requests/"},
    )

    assert response["Location"] == "/requests/"


def test_a_wrong_password_is_said_on_the_page(client, finance_user):
    response = client.post(reverse("login"), {"username": "fred", "password": "nope"})

    assert response.status_code == 200 and b'role="alert"' in response.content


def test_logging_out_is_a_post_that_ends_the_session(client, ops_user):
    client.force_login(ops_user)

    response = client.post(reverse("logout"))

    assert response["Location"] == reverse("login")
    assert client.get(reverse("dashboard:requests"))["Location"].startswith("/login/")


def test_every_page_shows_the_navigation_and_a_purpose(client, ops_user, log_traffic):
    client.force_login(ops_user)
    pages = [
        reverse("dashboard:home"),
        reverse("dashboard:requests"),
        reverse("dashboard:tuning"),
        reverse("dashboard:what-if-index"),
        reverse("dashboard:what-if", args=[log_traffic.policy.id]),
        reverse("billing:index"),
        reverse("billing:budgets"),
        reverse("audit:list"),
    ]
    for url in pages:
        html = client.get(url).content.decode()
        assert 'aria-label="Main"' in html, url
        assert 'class="purpose"' in html, url
        assert 'action="/logout/"' in html, url


def test_the_admin_index_links_the_product_pages(client, operator):
    client.force_login(operator)

    html = client.get(reverse("admin:index")).content.decode()

    assert 'id="cascadeops-pages"' in html
    assert f'href="{reverse("dashboard:requests")}"' in html


def test_the_api_docs_load_swagger_from_this_server(client, operator):
    client.force_login(operator)

    html = client.get(reverse("api-docs")).content.decode()

    assert "swagger-ui" in html and "cdn" not in html.lower() and "https://" not in html
