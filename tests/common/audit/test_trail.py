"""The audit trail itself: append-only, who and from where, readable by operators and finance, exportable."""

from __future__ import annotations

import csv
import io
import sys
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from billing.models import Budget
from billing.permissions import FINANCE
from common.audit.context import Actor, acting_as, audit_action, audit_untracked, process_actor
from common.audit.models import AuditEntry, AuditEntryImmutable
from common.audit.services import audit_record

pytestmark = pytest.mark.django_db


def budget_entry() -> AuditEntry:
    with acting_as(Actor(name="alice", source="admin", address="10.0.0.7")):
        Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=Decimal("100"))
    return AuditEntry.objects.get(object_type="billing.budget", action="create")


def test_an_entry_says_who_from_where_what_and_the_values():
    entry = budget_entry()

    assert (entry.actor, entry.source, entry.address) == ("alice", "admin", "10.0.0.7")
    assert entry.before is None
    assert entry.after["name"] == "growth" and entry.after["limit"] == "100.0000"  # money as exact text


def test_an_update_keeps_the_values_before_and_after_and_names_what_changed():
    budget_entry()
    budget = Budget.objects.get(name="growth")
    budget.limit = Decimal("250.5")
    budget.save()

    entry = AuditEntry.objects.get(object_type="billing.budget", action="update")
    assert entry.changes() == {"limit": ("100.0000", "250.5000")}
    assert entry.before["limit"] == "100.0000" and entry.after["limit"] == "250.5000"


def test_a_save_that_changes_nothing_leaves_no_entry():
    budget_entry()
    Budget.objects.get(name="growth").save()

    assert AuditEntry.objects.filter(object_type="billing.budget").count() == 1


def test_a_delete_keeps_the_values_it_had():
    budget_entry()
    Budget.objects.get(name="growth").delete()

    entry = AuditEntry.objects.get(object_type="billing.budget", action="delete")
    assert entry.after is None and entry.before["scope_value"] == "growth"


def test_a_service_names_its_action():
    with audit_action("pause"):
        Budget.objects.create(name="paused", limit=Decimal("1"))

    assert AuditEntry.objects.get(object_type="billing.budget").action == "pause"


def test_a_service_that_writes_its_own_entry_silences_the_rows_it_saves():
    with audit_untracked():
        budget = Budget.objects.create(name="quiet", limit=Decimal("1"))
        audit_record(action="bulk-import", obj=budget, before=None, after={"name": "quiet"})

    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["bulk-import"]


def test_entries_cannot_be_changed_or_deleted_through_the_models():
    entry = budget_entry()
    entry.actor = "mallory"

    with pytest.raises(AuditEntryImmutable):
        entry.save()
    with pytest.raises(AuditEntryImmutable):
        entry.delete()
    with pytest.raises(AuditEntryImmutable):
        AuditEntry.objects.filter(pk=entry.pk).update(actor="mallory")
    with pytest.raises(AuditEntryImmutable):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).actor == "alice"


def test_the_database_refuses_an_update_by_hand():
    entry = budget_entry()

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET actor = 'mallory' WHERE id = %s", [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).actor == "alice"


def test_outside_a_request_or_a_job_manage_py_is_the_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/srv/cascadeops/manage.py", "seed_demo"])
    assert process_actor().source == "command" and process_actor().name.startswith("seed_demo (")

    monkeypatch.setattr(sys, "argv", ["python"])
    assert process_actor().source == "system"


# --- reading it ----------------------------------------------------------------------------


@pytest.fixture
def finance_api(django_user_model) -> APIClient:
    user = django_user_model.objects.create_user("fin")
    user.groups.add(Group.objects.get(name=FINANCE))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_finance_reads_the_trail_through_the_api_with_filters(finance_api):
    budget_entry()
    with acting_as(Actor(name="bob", source="api", address="10.0.0.8")):
        Budget.objects.create(name="other", limit=Decimal("5"))

    body = finance_api.get("/api/audit/entries/", {"actor": "alice", "object_type": "billing.budget"}).json()

    assert [(e["actor"], e["action"], e["object_repr"][:6]) for e in body["results"]] == [("alice", "create", "growth")]
    assert finance_api.get("/api/audit/entries/", {"source": "nowhere"}).status_code == 400


def test_nobody_writes_to_the_trail_through_the_api(api):
    entry = budget_entry()

    assert api.post("/api/audit/entries/", {"actor": "x"}, format="json").status_code == 405
    assert api.patch(f"/api/audit/entries/{entry.pk}/", {"actor": "x"}, format="json").status_code == 405
    assert api.delete(f"/api/audit/entries/{entry.pk}/").status_code == 405


def test_a_user_without_the_view_permission_reads_nothing(django_user_model):
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("nobody"))

    assert client.get("/api/audit/entries/").status_code == 403


def test_the_export_is_csv_of_the_filtered_entries_with_formulas_escaped(finance_api):
    with acting_as(Actor(name="=HYPERLINK(1)", source="admin")):
        Budget.objects.create(name="growth", limit=Decimal("100"))
    Budget.objects.create(name="not-this-one", limit=Decimal("1"))

    response = finance_api.get("/api/audit/entries/export/", {"source": "admin"})

    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["actor"], r["action"], r["object_type"]) for r in rows] == [
        ("'=HYPERLINK(1)", "create", "billing.budget")
    ]
    assert '"limit": "100.0000"' in rows[0]["after"]


def test_the_admin_shows_entries_and_allows_no_edit(admin_client):
    entry = budget_entry()

    assert admin_client.get("/admin/audit/auditentry/").status_code == 200
    page = admin_client.get(f"/admin/audit/auditentry/{entry.pk}/change/")
    assert page.status_code == 200 and b"alice" in page.content
    assert admin_client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"actor": "x"}).status_code == 403
    assert admin_client.get(f"/admin/audit/auditentry/{entry.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/audit/auditentry/add/").status_code == 403
