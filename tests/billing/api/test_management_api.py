"""Budgets and price-book entries through the management API, with the admin's permissions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import Budget, PriceBookEntry
from billing.permissions import FINANCE, OPERATOR
from testing.factories import replay_endpoints

pytestmark = pytest.mark.django_db

BUDGET = {"name": "growth monthly", "scope": "team", "scope_value": "growth", "period": "month", "limit": "250.50"}


def member_of(django_user_model, group: str) -> APIClient:
    user = django_user_model.objects.create_user(f"{group}-user")
    user.groups.add(Group.objects.get(name=group))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_an_operator_creates_changes_and_deletes_a_budget(django_user_model):
    operator = member_of(django_user_model, OPERATOR)

    created = operator.post("/api/billing/budgets/", BUDGET, format="json")
    assert created.status_code == 201, created.json()
    url = created.json()["url"]
    assert operator.patch(url, {"limit": "300", "hard_action": "cheap_only"}, format="json").status_code == 200
    budget = Budget.objects.get(name="growth monthly")
    assert (budget.limit, budget.hard_action) == (Decimal("300"), "cheap_only")
    assert operator.get(url).json()["limit"] == "300.0000"  # money as a decimal string
    assert operator.delete(url).status_code == 204
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"limit": "-1"}, "limit"),
        ({"scope_value": ""}, "scope_value"),
        ({"soft_limit_percent": 0}, "soft_limit_percent"),
    ],
)
def test_a_bad_budget_is_a_400_naming_the_field(api, change, field):
    response = api.post("/api/billing/budgets/", {**BUDGET, **change}, format="json")

    assert response.status_code == 400 and field in response.json()


def test_finance_reads_budgets_but_cannot_write_them(django_user_model):
    finance = member_of(django_user_model, FINANCE)

    assert finance.get("/api/billing/budgets/").status_code == 200  # as in the admin: view_budget
    assert finance.post("/api/billing/budgets/", BUDGET, format="json").status_code == 403


def test_a_price_change_is_scheduled_as_a_new_entry_and_entries_are_never_changed(api):
    mixtral, _ = replay_endpoints()
    start = timezone.now() + timedelta(days=7)
    body = {"endpoint": mixtral.pk, "effective_from": start.isoformat(), "input_price_per_m": "0.5"}
    body |= {"output_price_per_m": "0.7", "note": "new contract"}

    created = api.post("/api/billing/price-book-entries/", body, format="json")

    assert created.status_code == 201, created.json()
    entry = PriceBookEntry.objects.get(pk=created.json()["id"])
    assert (entry.input_price_per_m, entry.effective_from) == (Decimal("0.5"), start)
    assert api.patch(created.json()["url"], {"note": "x"}, format="json").status_code == 405
    assert api.get("/api/billing/price-book-entries/", {"endpoint": mixtral.pk}).json()["count"] == 2
    assert api.post("/api/billing/price-book-entries/", body, format="json").status_code == 400  # same start


def test_an_entry_without_a_start_takes_effect_now(api):
    mixtral, _ = replay_endpoints()
    before = timezone.now()

    created = api.post(
        "/api/billing/price-book-entries/",
        {"endpoint": mixtral.pk, "input_price_per_m": "0.4", "output_price_per_m": "0.4"},
        format="json",
    )

    assert created.status_code == 201
    assert PriceBookEntry.objects.get(pk=created.json()["id"]).effective_from >= before


def test_the_schema_documents_budgets_and_the_price_book(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    assert {"/api/billing/budgets/", "/api/billing/price-book-entries/"} <= set(schema["paths"])
    assert "patch" not in schema["paths"]["/api/billing/price-book-entries/{id}/"]
