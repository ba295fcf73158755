"""Immutable policy versions: every change stores the whole policy; records name theirs; diff and restore."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from billing.permissions import FINANCE
from common.audit.models import AuditEntry
from routing.config.snapshots import policy_snapshot
from routing.models import Policy, PolicyVersion, TaskCategory
from routing.models.versions import PolicyVersionImmutable
from routing.policies import ladders, services
from routing.policies.versions import VERSION_PREFETCH, policy_at_version, policy_version_for_record, snapshot_diff
from testing.factories import RequestRecordFactory, make_policy, replay_endpoints
from tests.routing.test_admin import PASSWORD, policy_form


def tier_specs(policy: Policy, *thresholds: float) -> list[dict]:
    tiers = policy.tiers.order_by("position")
    return [
        {"position": t.position, "endpoint": t.endpoint, "threshold": x} for t, x in zip(tiers, thresholds, strict=True)
    ]


def thresholds(version: PolicyVersion) -> list[float]:
    return [tier["threshold"] for tier in version.snapshot["tiers"]]


@pytest.fixture
def policy(db) -> Policy:
    mixtral, gpt4 = replay_endpoints()
    return make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)], cache_ttl_s=60)


def test_every_write_stores_the_whole_policy_as_a_numbered_version(policy):
    services.policy_update(policy=policy, tiers=tier_specs(policy, 0.8, 1.0), semantic_cache=True)

    v1, v2 = PolicyVersion.objects.filter(policy=policy).order_by("number")
    assert (v1.number, v2.number, policy.version) == (1, 2, 2)
    assert thresholds(v1) == [0.7, 1.0] and thresholds(v2) == [0.8, 1.0]
    assert (v1.snapshot["policy"]["semantic_cache"], v2.snapshot["policy"]["semantic_cache"]) == (False, True)
    assert v2.snapshot["policy"]["cache_ttl_s"] == 60
    assert [rule["category"] for rule in v2.snapshot["task_rules"]] == [r["category"] for r in services.DEFAULT_RULES]
    assert v2.snapshot["endpoint_names"] == {str(e.pk): e.name for e in replay_endpoints()}


def test_a_stored_version_cannot_be_changed(policy):
    version = PolicyVersion.objects.get(policy=policy)
    version.snapshot = {"tiers": []}

    with pytest.raises(PolicyVersionImmutable):
        version.save()


def test_an_admin_save_stores_the_version_with_the_tiers_saved_alongside(client, operator):
    mixtral, gpt4 = replay_endpoints()
    assert client.login(username="operator", password=PASSWORD)

    form = policy_form([(mixtral, "0.65"), (gpt4, "1")])
    response = client.post("/admin/routing/policy/add/", {"text_retention_days": "30", **form})

    assert response.status_code == 302
    version = PolicyVersion.objects.get(policy__name="support")
    assert (version.number, thresholds(version), version.author, version.source) == (
        1,
        [0.65, 1.0],
        "operator",
        "admin",
    )


def test_a_policy_saved_outside_the_services_still_gets_its_version(policy, django_capture_on_commit_callbacks):
    policy.description = "edited in the shell"

    with django_capture_on_commit_callbacks(execute=True):
        policy.save()

    assert PolicyVersion.objects.get(policy=policy, number=2).snapshot["policy"]["description"] == "edited in the shell"


@pytest.mark.django_db(transaction=True)
def test_a_policy_saved_in_autocommit_gets_its_version_during_the_save():
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)])
    policy.description = "edited in the shell"

    policy.save()

    assert policy.version == 2
    assert PolicyVersion.objects.get(policy=policy, number=2).snapshot["policy"]["description"] == "edited in the shell"


# --- the version that routed a record (a live request: tests/routing/api/test_record_policy_version.py) ----


def test_a_record_of_a_deleted_policy_still_finds_its_version(policy):
    record = RequestRecordFactory(policy=policy, policy_name="support", policy_version=1)
    policy.api_keys.all().delete()
    policy.delete()
    record.refresh_from_db()

    version = policy_version_for_record(record)

    assert version is not None and (version.policy_name, version.number, version.policy) == ("support", 1, None)


def test_a_record_routed_before_versions_were_kept_has_none(policy, api):
    record = RequestRecordFactory(policy=policy, policy_name="support", policy_version=99)

    assert policy_version_for_record(record) is None
    assert api.get(f"/api/routing/request-records/{record.pk}/policy-version/").status_code == 404


# --- diff and restore ------------------------------------------------------------------------


def test_the_diff_names_each_changed_setting_by_its_path():
    before = {"policy": {"cache_ttl_s": 60, "name": "a"}, "tiers": [{"threshold": 0.7}, {"threshold": 1.0}]}
    after = {"policy": {"cache_ttl_s": 0, "name": "a"}, "tiers": [{"threshold": 0.8}]}

    assert snapshot_diff(before, after) == [
        ("policy.cache_ttl_s", 60, 0),
        ("tiers[0].threshold", 0.7, 0.8),
        ("tiers[1].threshold", 1.0, None),
    ]


def test_the_admin_compares_any_two_versions(policy, admin_client):
    services.policy_update(policy=policy, tiers=tier_specs(policy, 0.8, 1.0))
    services.policy_update(policy=policy, cache_ttl_s=0)
    v1, _, v3 = PolicyVersion.objects.filter(policy=policy).order_by("number")

    page = admin_client.get(f"/admin/routing/policyversion/compare/?a={v1.pk}&b={v3.pk}").content.decode()

    assert "tiers[0].threshold</td><td>0.7</td><td>0.8" in page
    assert "policy.cache_ttl_s</td><td>60</td><td>0" in page
    assert "tiers[1].threshold" not in page  # unchanged settings are left out
    detail = admin_client.get(f"/admin/routing/policyversion/{v3.pk}/change/").content.decode()
    assert "policy.cache_ttl_s</td><td>60</td><td>0" in detail  # against the version before it


def test_restoring_a_version_through_the_api_makes_it_current_as_a_new_version(policy, api):
    services.policy_update(policy=policy, tiers=tier_specs(policy, 0.8, 1.0), cache_ttl_s=0)
    v1 = PolicyVersion.objects.get(policy=policy, number=1)

    response = api.post(f"/api/routing/policy-versions/{v1.pk}/restore/")

    assert response.status_code == 201
    assert (response.json()["number"], response.json()["restored_from"]) == (3, 1)
    policy.refresh_from_db()
    assert (policy.version, policy.cache_ttl_s) == (3, 60)
    assert [t.threshold for t in policy.tiers.order_by("position")] == [0.7, 1.0]
    assert PolicyVersion.objects.filter(policy=policy).count() == 3  # the history stays
    entry = AuditEntry.objects.filter(object_type="routing.policy").latest("id")
    assert (entry.action, entry.source, entry.actor) == ("restore", "api", "operator")
    assert entry.before["tiers"][0]["threshold"] == 0.8 and entry.after["tiers"][0]["threshold"] == 0.7


def test_the_admin_restores_a_version_as_a_new_one(policy, admin_client):
    services.policy_update(policy=policy, cache_ttl_s=0)
    v1 = PolicyVersion.objects.get(policy=policy, number=1)

    admin_client.post("/admin/routing/policyversion/", {"action": "restore", "_selected_action": [str(v1.pk)]})

    policy.refresh_from_db()
    assert (policy.version, policy.cache_ttl_s) == (3, 60)
    assert PolicyVersion.objects.get(policy=policy, number=3).restored_from == 1


def test_restoring_needs_the_right_to_change_the_policy(policy, django_user_model):
    user = django_user_model.objects.create_user("fin")
    user.groups.add(Group.objects.get(name=FINANCE))
    client = APIClient()
    client.force_authenticate(user)
    v1 = PolicyVersion.objects.get(policy=policy, number=1)

    assert client.post(f"/api/routing/policy-versions/{v1.pk}/restore/").status_code == 403
    assert Policy.objects.get(pk=policy.pk).version == 1


def test_a_restore_puts_the_category_ladders_back(policy, api):
    mixtral, _ = replay_endpoints()
    code, _ = TaskCategory.objects.get_or_create(name="code")
    ladders.ladder_save(policy=policy, category=code, rungs=[{"position": 0, "endpoint": mixtral, "threshold": 0.5}])
    with_ladder = PolicyVersion.objects.get(policy=policy, number=2)
    ladders.ladder_delete(ladder=policy.ladders.get())

    assert api.post(f"/api/routing/policy-versions/{with_ladder.pk}/restore/").status_code == 201

    rungs = policy.ladders.get(category=code).tiers.all()
    assert [(r.endpoint_id, r.threshold) for r in rungs] == [(mixtral.pk, 0.5)]
    assert PolicyVersion.objects.get(policy=policy, number=4).snapshot["ladders"] == with_ladder.snapshot["ladders"]


def test_a_stored_version_routes_as_the_policy_did_then(policy):
    at = timezone.now()
    then = policy_snapshot(Policy.objects.prefetch_related(*VERSION_PREFETCH).get(pk=policy.pk), at)
    services.policy_update(policy=policy, tiers=tier_specs(policy, 0.9, 1.0), cache_ttl_s=0)

    replayed = policy_snapshot(policy_at_version(PolicyVersion.objects.get(policy=policy, number=1)), at)

    assert replayed == then
    assert [t.threshold for t in replayed.tiers] == [0.7, 1.0] and replayed.version == 1


def test_a_records_admin_page_links_the_version_that_routed_it(policy, admin_client):
    record = RequestRecordFactory(policy=policy, policy_name="support", policy_version=1)
    version = PolicyVersion.objects.get(policy=policy, number=1)

    page = admin_client.get(f"/admin/routing/requestrecord/{record.pk}/change/").content.decode()

    assert f'href="/admin/routing/policyversion/{version.pk}/change/">support v1</a>' in page


@pytest.mark.parametrize("rows", [3, 30])
def test_the_version_list_costs_the_same_queries_for_3_as_for_30(
    policy, admin_client, django_assert_max_num_queries, rows
):
    for i in range(rows - 1):
        services.policy_update(policy=policy, cache_ttl_s=i)
    admin_client.get("/admin/routing/policyversion/")  # the session and the user, loaded once

    with django_assert_max_num_queries(12):
        page = admin_client.get("/admin/routing/policyversion/").content.decode()

    assert f"with v{rows - 1}</a>" in page
