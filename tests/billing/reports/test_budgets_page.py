"""The budgets page: each budget's limit, this period's spend, share used and state, for budget readers."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from billing.models import Budget
from billing.permissions import FINANCE
from billing.reports import selectors
from billing.reports.compute import LedgerRow
from tests.billing.reports.test_build import store
from tests.billing.reports.test_views import AUTH_QUERIES

pytestmark = pytest.mark.django_db
PASSWORD = "ledger-and-ink-42"


def reader(client: Client, *, group: str | None = FINANCE) -> Client:
    """A signed-in user who is not staff, in `group`."""
    user = User.objects.create_user("fiona", password=PASSWORD)
    if group:
        user.groups.add(Group.objects.get(name=group))
    assert client.login(username="fiona", password=PASSWORD)
    return client


@pytest.fixture
def growth_spent_a_third() -> Budget:
    """Growth's monthly budget of $30, with $10.50 spent today."""
    today = selectors.billing_today()
    store([LedgerRow(today, "growth", "support-bot", "default", "mixtral", requests=3, cost=Decimal("10.5"))])
    Budget.objects.create(name="search", scope="team", scope_value="search", limit=Decimal("5"), enabled=False)
    return Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=Decimal("30"))


def test_it_shows_each_budgets_spend_share_and_state(client: Client, growth_spent_a_third: Budget) -> None:
    html = reader(client).get(reverse("billing:budgets")).content.decode()

    assert "<h1>Budgets</h1>" in html and 'class="purpose"' in html
    growth = re.search(r"<tr>\s*<td>growth</td>.*?</tr>", html, re.S)
    assert growth is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", growth.group(0), re.S)
    assert cells[1] == "A team: growth" and cells[2].startswith("Month from ")
    assert cells[3:6] == ["$30.00", "$10.50", "35.0 %"]
    assert "within" in cells[6]
    assert re.search(r"<td>search</td>.*?disabled", html, re.S)


def test_it_says_so_when_there_are_no_budgets(client: Client) -> None:
    assert "No budgets" in reader(client).get(reverse("billing:budgets")).content.decode()


def test_it_needs_the_view_budget_permission(client: Client) -> None:
    assert reader(client, group=None).get(reverse("billing:budgets")).status_code == 403
    client.logout()
    assert client.get(reverse("billing:budgets"))["Location"].startswith("/login/")


@pytest.mark.parametrize("budgets", [1, 20])
def test_its_queries_do_not_grow_with_the_budgets(
    client: Client, django_assert_num_queries: object, budgets: int
) -> None:
    for i in range(budgets):
        Budget.objects.create(name=f"team-{i}", scope="team", scope_value=f"team-{i}", limit=Decimal("10"))
    reader(client)
    # the budgets, then every budget's spend in one aggregate
    with django_assert_num_queries(AUTH_QUERIES + 2):  # type: ignore[operator]
        assert client.get(reverse("billing:budgets")).status_code == 200
