"""Categories, their ladders, goal weights and experiments through the management API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from billing.permissions import FINANCE
from common.audit.models import AuditEntry
from routing.models import ApiKey, Experiment, GoalWeights, PolicyVersion, TaskCategory
from testing.factories import make_key, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy():
    mixtral, gpt4 = replay_endpoints()
    return make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)])


def test_an_operator_defines_a_category(api):
    body = {"name": "legal", "keywords": "contract\nliability", "patterns": r"\bclause \d+"}
    body["examples"] = "is this NDA ok"

    created = api.post("/api/routing/task-categories/", body, format="json")

    assert created.status_code == 201, created.json()
    assert TaskCategory.objects.get(name="legal").keywords == "contract\nliability"
    bad = api.post("/api/routing/task-categories/", {"name": "sql", "patterns": "(unclosed"}, format="json")
    assert bad.status_code == 400 and "patterns" in bad.json()


def test_a_ladder_saved_through_the_api_is_a_new_version_of_its_policy(api, policy):
    mixtral, gpt4 = replay_endpoints()
    code, _ = TaskCategory.objects.get_or_create(name="code")
    rungs = [{"position": 0, "endpoint": mixtral.pk, "threshold": 0.6}, {"position": 1, "endpoint": gpt4.pk}]

    created = api.post(
        "/api/routing/category-ladders/", {"policy": policy.pk, "category": code.pk, "tiers": rungs}, format="json"
    )

    assert created.status_code == 201, created.json()
    policy.refresh_from_db()
    version = PolicyVersion.objects.get(policy=policy, number=policy.version)
    assert policy.version == 2
    assert version.snapshot["ladders"] == [
        {
            "category": "code",
            "tiers": [
                {"position": 0, "endpoint": mixtral.pk, "threshold": 0.6, "max_tokens": None},
                {"position": 1, "endpoint": gpt4.pk, "threshold": 0.7, "max_tokens": None},
            ],
        }
    ]
    api.delete(created.json()["url"])
    policy.refresh_from_db()
    assert PolicyVersion.objects.get(policy=policy, number=3).snapshot["ladders"] == []
    entry = AuditEntry.objects.filter(object_type="routing.policy").latest("id")
    assert (len(entry.before["ladders"]), entry.after["ladders"]) == (1, [])


def test_a_ladder_without_rungs_is_a_400(api, policy):
    code, _ = TaskCategory.objects.get_or_create(name="code")

    response = api.post(
        "/api/routing/category-ladders/", {"policy": policy.pk, "category": code.pk, "tiers": []}, format="json"
    )

    assert response.status_code == 400 and "tiers" in response.json()


def test_goal_weights_are_edited_never_added(api):
    weights = GoalWeights.objects.get_or_create(goal="cost")[0]

    assert api.patch(f"/api/routing/goal-weights/{weights.pk}/", {"cost": 3}, format="json").status_code == 200
    assert api.post("/api/routing/goal-weights/", {"goal": "cost"}, format="json").status_code == 405
    entry = AuditEntry.objects.get(object_type="routing.goalweights", action="update")
    assert entry.changes() == {"cost": (weights.cost, 3.0)}


def arms(policy, other) -> list[dict]:
    return [{"name": "control", "policy": policy.pk, "weight": 1}, {"name": "challenger", "policy": other.pk}]


def test_an_experiment_is_created_with_its_arms_and_ended_with_a_winner(api, policy):
    mixtral, gpt4 = replay_endpoints()
    other = make_policy("challenger", [(mixtral, 0.6), (gpt4, 1.0)])
    key, _ = make_key(policy)
    body = {"name": "cheaper", "api_key": key.pk, "arms": arms(policy, other)}

    created = api.post("/api/routing/experiments/", body, format="json")

    assert created.status_code == 201, created.json()
    winner = next(arm for arm in created.json()["arms"] if arm["name"] == "challenger")
    ended = api.post(f"{created.json()['url']}end/", {"winner": winner["id"]}, format="json")
    assert ended.status_code == 200, ended.json()
    assert (ended.json()["status"], ended.json()["winner"]) == ("ended", winner["id"])
    assert ApiKey.objects.get(pk=key.pk).policy_id == other.pk
    assert AuditEntry.objects.filter(object_type="routing.experiment", action="experiment_end", source="api").exists()
    assert api.post(f"{created.json()['url']}end/", {}, format="json").status_code == 400  # once


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"api_key": None, "team": ""}, "team"),
        ({"team": "growth"}, "team"),  # and a key: one or the other
        ({"arms": []}, "arms"),
        ({"arms": [{"name": "a", "policy": 1, "policy_version": 7}, {"name": "b", "policy": 1}]}, "arms"),
    ],
)
def test_a_bad_experiment_is_a_400(api, policy, change, field):
    key, _ = make_key(policy)
    body = {"name": "x", "api_key": key.pk, "arms": arms(policy, policy)} | change
    body["arms"] = [arm | {"policy": policy.pk} for arm in body["arms"]]

    response = api.post("/api/routing/experiments/", body, format="json")

    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Experiment.objects.exists()


def test_ending_an_experiment_needs_the_change_permission(django_user_model, policy):
    key, _ = make_key(policy)
    experiment = Experiment.objects.create(name="x", api_key=key)
    user = django_user_model.objects.create_user("fin")
    user.groups.add(Group.objects.get(name=FINANCE))
    client = APIClient()
    client.force_authenticate(user)

    assert client.post(f"/api/routing/experiments/{experiment.pk}/end/", {}, format="json").status_code == 403
