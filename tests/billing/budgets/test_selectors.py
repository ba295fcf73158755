"""Where each budget stands this period, as finance reads it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from billing.budgets.selectors import budget_states
from billing.models import Budget, LedgerEntry

pytestmark = pytest.mark.django_db


def spend(team: str, cost: str, **fields: object) -> None:
    LedgerEntry.objects.create(
        day=timezone.localdate(), team=team, app="a", policy="demo", model="m", cost=Decimal(cost), **fields
    )


def test_each_budget_shows_its_scopes_spend_and_state(django_assert_num_queries) -> None:
    Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=Decimal("10"), soft_limit_percent=80)
    Budget.objects.create(name="search", scope="team", scope_value="search", limit=Decimal("1"))
    Budget.objects.create(name="all", limit=Decimal("100"), period="day")
    Budget.objects.create(name="old", scope="end_user", scope_value="u1", limit=Decimal("5"), enabled=False)
    spend("growth", "8.5")
    spend("search", "1.25", end_user="u1")

    with django_assert_num_queries(2):
        states = {s.budget.name: s for s in budget_states()}

    assert (states["growth"].spent, states["growth"].state, states["growth"].used_text) == (
        Decimal("8.5"),
        "past its soft limit",
        "85.0 %",
    )
    assert (states["search"].state, states["search"].spent_text) == ("at its limit", "$1.25")
    assert (states["all"].spent, states["all"].state) == (Decimal("9.75"), "within")
    assert (states["old"].spent, states["old"].state) == (Decimal("1.25"), "disabled")


def test_no_budgets_is_one_query(django_assert_num_queries) -> None:
    with django_assert_num_queries(1):
        assert budget_states() == []
