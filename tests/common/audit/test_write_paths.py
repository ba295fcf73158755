"""Every way configuration is written leaves one audit entry with the values before and after.

One test per path: the admin (a form, the policy with its inline tiers, the key revocation
action), the management API (policies, endpoints, budgets, price book, keys, alert rules,
SLA targets), auto-tuning (an operator's click and beat's apply mode), experiment actions
and management commands.
"""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client

from common.audit.models import AuditEntry
from dashboard.models import TuningProposal
from dashboard.tuning.proposals import tuning_run
from dashboard.tuning.tasks import tuning_propose
from routing.choices import ExperimentStatus
from routing.experiments.services import experiment_end
from routing.models import ApiKey, Experiment, ExperimentArm, ModelEndpoint, Policy
from testing.factories import make_key, make_policy, replay_endpoints
from tests.dashboard.test_tuning import click, quality_breach_at_080, tuning
from tests.routing.test_admin import PASSWORD, endpoint_form, policy_form

pytestmark = pytest.mark.django_db


def entry_for(obj: object, action: str) -> AuditEntry:
    label = obj._meta.label_lower  # type: ignore[attr-defined]
    return AuditEntry.objects.filter(object_type=label, object_id=str(obj.pk), action=action).latest("id")  # type: ignore[attr-defined]


@pytest.fixture
def policy() -> Policy:
    mixtral, gpt4 = replay_endpoints()
    return make_policy("support", [(mixtral, 0.80), (gpt4, 1.0)], with_default_rules=False)


@pytest.fixture
def operator_client(client: Client, operator: object) -> Client:
    assert client.login(username="operator", password=PASSWORD)
    return client


# --- the admin -------------------------------------------------------------------------------


def test_an_admin_form_save(operator_client):
    mixtral, _ = replay_endpoints()

    response = operator_client.post(
        f"/admin/routing/modelendpoint/{mixtral.pk}/change/", endpoint_form(mixtral, max_retries="4")
    )

    assert response.status_code == 302
    entry = entry_for(mixtral, "update")
    assert (entry.actor, entry.source, entry.address) == ("operator", "admin", "127.0.0.1")
    assert entry.changes() == {"max_retries": (mixtral.max_retries, 4)}


def test_an_admin_policy_save_with_its_tiers(operator_client, policy):
    mixtral, gpt4 = replay_endpoints()
    tiers = list(policy.tiers.order_by("position"))
    data = {"text_retention_days": "30"} | policy_form([(mixtral, "0.75"), (gpt4, "1")])
    data |= {"tiers-INITIAL_FORMS": "2", "tiers-0-id": str(tiers[0].pk), "tiers-1-id": str(tiers[1].pk)}
    data |= {"tiers-0-policy": str(policy.pk), "tiers-1-policy": str(policy.pk)}

    assert operator_client.post(f"/admin/routing/policy/{policy.pk}/change/", data).status_code == 302

    entry = entry_for(policy, "update")
    assert (entry.actor, entry.source) == ("operator", "admin")
    assert (entry.before["tiers"][0]["threshold"], entry.after["tiers"][0]["threshold"]) == (0.8, 0.75)


def test_an_admin_budget_added(operator_client):
    form = {"name": "growth", "enabled": "on", "scope": "team", "scope_value": "growth", "period": "month"}
    form |= {"limit": "100", "soft_limit_percent": "80", "soft_action": "alert", "degraded_threshold": "0.5"}

    assert operator_client.post("/admin/billing/budget/add/", form | {"hard_action": "reject"}).status_code == 302

    entry = AuditEntry.objects.get(object_type="billing.budget")
    assert (entry.action, entry.source, entry.before, entry.after["limit"]) == ("create", "admin", None, "100.0000")


def test_the_admin_key_revocation_action(operator_client, policy):
    key, _ = make_key(policy)

    operator_client.post("/admin/routing/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})

    entry = entry_for(key, "revoke")
    assert (entry.source, entry.before["revoked_at"]) == ("admin", None)
    assert entry.after["revoked_at"] is not None
    assert "key_hash" not in entry.after


# --- the management API ----------------------------------------------------------------------


def test_a_policy_changed_through_the_api(api, policy):
    tiers = [{"position": t.position, "endpoint": t.endpoint_id, "threshold": 0.9} for t in policy.tiers.all()]

    assert api.patch(f"/api/routing/policies/{policy.pk}/", {"tiers": tiers}, format="json").status_code == 200

    entry = entry_for(policy, "update")
    assert (entry.actor, entry.source, entry.address) == ("operator", "api", "127.0.0.1")
    assert [t["threshold"] for t in entry.before["tiers"]] == [0.8, 1.0]
    assert [t["threshold"] for t in entry.after["tiers"]] == [0.9, 0.9]


def test_an_endpoint_changed_through_the_api(api):
    mixtral, _ = replay_endpoints()

    assert (
        api.patch(f"/api/routing/model-endpoints/{mixtral.pk}/", {"context_window": 4096}, format="json").status_code
        == 200
    )

    assert entry_for(mixtral, "update").changes() == {"context_window": (mixtral.context_window, 4096)}


def test_a_budget_through_the_api(api):
    created = api.post("/api/billing/budgets/", {"name": "all", "limit": "10"}, format="json").json()
    api.patch(created["url"], {"limit": "12.5"}, format="json")
    api.delete(created["url"])

    entries = AuditEntry.objects.filter(object_type="billing.budget").order_by("id")
    assert [(e.action, e.source) for e in entries] == [("create", "api"), ("update", "api"), ("delete", "api")]
    assert entries[1].changes() == {"limit": ("10.0000", "12.5000")}
    assert entries[2].before["limit"] == "12.5000"


def test_a_price_book_entry_through_the_api(api):
    mixtral, _ = replay_endpoints()
    body = {"endpoint": mixtral.pk, "input_price_per_m": "0.5", "output_price_per_m": "0.7"}

    created = api.post("/api/billing/price-book-entries/", body, format="json").json()

    entry = AuditEntry.objects.get(object_type="billing.pricebookentry", object_id=str(created["id"]))
    assert (entry.action, entry.source, entry.after["input_price_per_m"]) == ("create", "api", "0.500000")


def test_a_key_created_and_revoked_through_the_api(api, policy):
    created = api.post(
        "/api/routing/api-keys/", {"name": "b", "policy": policy.pk, "team": "t", "app": "a"}, format="json"
    )
    key = ApiKey.objects.get(pk=created.json()["id"])
    api.post(f"/api/routing/api-keys/{key.pk}/revoke/")

    assert entry_for(key, "create").after["prefix"] == key.prefix
    assert "key_hash" not in entry_for(key, "create").after
    assert entry_for(key, "revoke").source == "api"


def test_an_alert_rule_and_an_sla_target_through_the_api(api, policy):
    rule = api.post(
        "/api/dashboard/alert-rules/", {"name": "costly", "metric": "hourly_cost", "threshold": 5}, format="json"
    ).json()
    api.patch(f"/api/dashboard/alert-rules/{rule['id']}/", {"threshold": 7}, format="json")
    target = api.post("/api/dashboard/sla-targets/", {"policy": policy.pk}, format="json").json()

    rule_entry = AuditEntry.objects.get(object_type="dashboard.alertrule", action="update")
    assert (rule_entry.source, rule_entry.changes()) == ("api", {"threshold": (5.0, 7.0)})
    target_entry = AuditEntry.objects.get(object_type="dashboard.slatarget", object_id=str(target["id"]))
    assert (target_entry.action, target_entry.after["policy"]) == ("create", policy.pk)


# --- auto-tuning -----------------------------------------------------------------------------


def test_an_operator_applies_a_tuning_proposal(django_user_model, policy):
    quality_breach_at_080(policy)
    proposal = tuning_run(config=tuning(policy, min_labels=200))
    user = django_user_model.objects.create_user("ops", "ops@example.com", PASSWORD, is_staff=True)
    codenames = ["view_tuningproposal", "decide_tuningproposal"]
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="dashboard", codename__in=codenames))
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username="ops", password=PASSWORD)

    click(browser, proposal, "apply")

    entry = entry_for(policy, "tuning-apply")
    assert (entry.actor, entry.source) == ("ops", "web")
    assert (entry.before["tiers"][0]["threshold"], entry.after["tiers"][0]["threshold"]) == (0.8, 0.83)


def test_beat_applies_a_tuning_change(policy):
    quality_breach_at_080(policy)
    tuning(policy, min_labels=200, mode="apply")

    tuning_propose.delay()  # eagerly, as a worker runs it from beat

    assert TuningProposal.objects.get(policy=policy).status == "applied"
    entry = entry_for(policy, "tuning-apply")
    assert (entry.actor, entry.source, entry.address) == (tuning_propose.name, "beat", None)
    assert entry.after["tiers"][0]["threshold"] == 0.83


# --- experiments and commands ----------------------------------------------------------------


def test_ending_an_experiment_and_promoting_its_winner(policy):
    mixtral, gpt4 = replay_endpoints()
    other = make_policy("challenger", [(mixtral, 0.6), (gpt4, 1.0)])
    key, _ = make_key(policy)
    experiment = Experiment.objects.create(name="cheaper", api_key=key)
    ExperimentArm.objects.create(experiment=experiment, name="control", policy=policy)
    winner = ExperimentArm.objects.create(experiment=experiment, name="challenger", policy=other)

    experiment_end(experiment=experiment, winner=winner)

    (entry,) = AuditEntry.objects.filter(object_type="routing.experiment", action="experiment_end")
    assert (entry.before["status"], entry.after["status"]) == (ExperimentStatus.RUNNING, ExperimentStatus.ENDED)
    assert (entry.after["promoted_policy"], entry.after["keys"]) == (other.pk, [key.pk])
    assert entry_for(key, "experiment_end").changes() == {"policy": (policy.pk, other.pk)}


def test_a_management_command(monkeypatch, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(sys, "argv", ["manage.py", "seed_demo"])

    call_command("seed_demo", stdout=sys.stderr)

    endpoint = ModelEndpoint.objects.get(name="replay-mixtral")
    entry = entry_for(endpoint, "create")
    assert entry.source == "command" and entry.actor.startswith("seed_demo (")
    assert entry.after["input_price_per_m"] == f"{Decimal('0.60'):.6f}"
    demo = Policy.objects.get(name="demo")
    assert entry_for(demo, "create").after["tiers"][0]["endpoint"] == endpoint.pk
