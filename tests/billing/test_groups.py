"""The `finance` and `operator` groups, tried with real logins against the admin and the finance pages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.forms import BooleanField
from django.http import HttpResponse
from django.test import Client

from billing.choices import ReportStatus
from billing.models import Budget, MonthlyReport
from billing.permissions import FINANCE, OPERATOR, groups_sync
from routing.models import Policy
from testing.factories import make_policy, replay_endpoints
from tests.billing.reports.test_build import store
from tests.billing.reports.test_compute import FEB, february_rows

pytestmark = pytest.mark.django_db
PASSWORD = "ledger-and-ink-42"


def login(client: Client, username: str, group: str) -> Client:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    assert client.login(username=username, password=PASSWORD)
    return client


@pytest.fixture
def finance(client: Client) -> Client:
    return login(client, "fiona", FINANCE)


@pytest.fixture
def operator_client(client: Client) -> Client:
    return login(client, "otto", OPERATOR)


@pytest.fixture
def policy() -> Policy:
    mixtral, gpt4 = replay_endpoints()
    return make_policy("support", [(mixtral, 0.7), (gpt4, 0.0)])


@pytest.fixture
def budget() -> Budget:
    return Budget.objects.create(name="everything", limit=Decimal("100"))


def codenames(group: str) -> set[str]:
    perms = Group.objects.get(name=group).permissions.select_related("content_type")
    return {f"{p.content_type.app_label}.{p.codename}" for p in perms}


def change_form_data(response: HttpResponse) -> dict[str, Any]:
    """The POST an admin change form would send back unchanged (main form and inlines)."""
    context: Any = response.context  # type: ignore[attr-defined]
    forms = [context["adminform"].form]
    data: dict[str, Any] = {}
    for inline in context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
        forms += inline.formset.forms
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if isinstance(field, BooleanField):
                value = "on" if value else None
            if value is not None:
                data[form.add_prefix(name)] = value
    return data


def test_migrate_creates_both_groups() -> None:
    finance, operator = codenames(FINANCE), codenames(OPERATOR)
    assert {"billing.view_finance", "billing.view_ledgerentry", "billing.view_monthlyreport"} <= finance
    assert {"routing.view_requestrecord", "routing.view_requestattempt", "billing.view_ledgertagentry"} <= finance
    assert not any(p.split(".")[1].startswith(("add_", "change_", "delete_")) for p in finance)
    assert {"billing.view_budget", "billing.view_budgetalert"} <= finance and "routing.view_policy" not in finance
    assert finance <= operator
    for model in ("routing.modelendpoint", "routing.policy", "routing.policytier", "routing.taskrule"):
        app, name = model.split(".")
        assert {f"{app}.{action}_{name}" for action in ("add", "change", "delete", "view")} <= operator
    assert {"routing.change_apikey", "billing.change_budget", "billing.add_pricebookentry"} <= operator
    assert "billing.change_monthlyreport" not in operator and "billing.change_ledgerentry" not in operator


def test_syncing_again_changes_nothing_and_undoes_hand_edits() -> None:
    before = codenames(OPERATOR)
    Group.objects.get(name=OPERATOR).permissions.add(Permission.objects.get(codename="delete_user"))
    groups_sync(apps=apps)
    groups_sync(apps=apps)
    assert codenames(OPERATOR) == before
    assert Group.objects.filter(name__in=[FINANCE, OPERATOR]).count() == 2


def test_finance_sees_reports_and_spend(finance: Client) -> None:
    store(february_rows())
    MonthlyReport.objects.create(month=FEB, status=ReportStatus.FAILED)
    assert finance.get("/finance/").status_code == 200
    assert finance.get("/admin/billing/monthlyreport/").status_code == 200
    assert finance.get("/admin/billing/ledgerentry/").status_code == 200
    assert finance.get("/admin/routing/requestrecord/").status_code == 200


def test_finance_cannot_change_a_policy(finance: Client, policy: Policy) -> None:
    url = f"/admin/routing/policy/{policy.pk}/change/"
    assert finance.get(url).status_code == 403
    assert finance.post(url, {"name": "support", "description": "cheaper please"}).status_code == 403
    policy.refresh_from_db()
    assert policy.description == "" and policy.version == 1


def test_finance_reads_budgets_and_their_state_but_cannot_change_them(finance: Client, budget: Budget) -> None:
    assert finance.get("/admin/billing/budget/").status_code == 200
    assert finance.get(f"/admin/billing/budget/{budget.pk}/change/").status_code == 200  # read-only
    page = finance.get("/finance/").content.decode()
    assert budget.name in page and "within" in page and "$100.00" in page


def test_finance_cannot_change_budgets_endpoints_or_keys(finance: Client, budget: Budget, policy: Policy) -> None:
    assert finance.post(f"/admin/billing/budget/{budget.pk}/change/", {"limit": "1000000"}).status_code == 403
    assert finance.get("/admin/routing/modelendpoint/").status_code == 403
    assert finance.get("/admin/routing/apikey/add/").status_code == 403
    budget.refresh_from_db()
    assert budget.limit == Decimal("100")


def test_finance_cannot_build_or_edit_reports(finance: Client) -> None:
    report = MonthlyReport.objects.create(month=FEB, status=ReportStatus.FAILED)
    assert finance.get("/admin/billing/monthlyreport/add/").status_code == 403
    assert finance.post("/admin/billing/monthlyreport/add/", {"month": "2025-02"}).status_code == 403
    assert finance.post(f"/admin/billing/monthlyreport/{report.pk}/delete/").status_code == 403
    assert MonthlyReport.objects.get().status == ReportStatus.FAILED


def test_operator_changes_a_policy(operator_client: Client, policy: Policy) -> None:
    url = f"/admin/routing/policy/{policy.pk}/change/"
    form = operator_client.get(url)
    assert form.status_code == 200
    data = change_form_data(form)
    data["description"] = "escalate less"
    response = operator_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.description == "escalate less" and policy.version == 2


def test_operator_changes_a_budget(operator_client: Client, budget: Budget) -> None:
    url = f"/admin/billing/budget/{budget.pk}/change/"
    form = operator_client.get(url)
    assert form.status_code == 200
    data = change_form_data(form)
    data["limit"] = "250"
    assert operator_client.post(url, data).status_code == 302
    budget.refresh_from_db()
    assert budget.limit == Decimal("250")


def test_operator_sees_the_finance_pages(operator_client: Client) -> None:
    assert operator_client.get("/finance/").status_code == 200


def test_an_admin_builds_a_report_on_demand(client: Client) -> None:
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    assert client.login(username="root", password=PASSWORD)
    store(february_rows())
    assert client.get("/admin/billing/monthlyreport/add/").status_code == 200
    response = client.post("/admin/billing/monthlyreport/add/", {"month": "2025-02"}, follow=True)
    assert response.status_code == 200
    report = MonthlyReport.objects.get()
    assert (report.month, report.status, report.data["totals"]["cost"]) == (FEB, ReportStatus.READY, "84.000000")
    assert "February 2025: ready." in response.content.decode()
    # The snapshot is read-only in the admin.
    assert client.post(f"/admin/billing/monthlyreport/{report.pk}/change/", {}).status_code == 403


def test_the_admin_refuses_a_month_that_is_not_over(client: Client) -> None:
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    assert client.login(username="root", password=PASSWORD)
    response = client.post("/admin/billing/monthlyreport/add/", {"month": "2999-01"}, follow=True)
    assert "is not over yet" in response.content.decode()
    assert not MonthlyReport.objects.exists()


def test_operator_sees_the_live_dashboard_and_the_tuning_page(operator_client: Client) -> None:
    assert operator_client.get("/").status_code == 200
    assert operator_client.get("/tuning/").status_code == 200


def test_finance_cannot_edit_alert_rules(finance: Client) -> None:
    assert finance.get("/admin/dashboard/alertrule/add/").status_code == 403
