"""API keys through the management API: the key shown once, stored as a hash, revoked by an action."""

from __future__ import annotations

import openai
import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from billing.permissions import FINANCE
from routing.models import ApiKey, hash_api_key
from testing.factories import make_key, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy():
    mixtral, gpt4 = replay_endpoints()
    return make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)])


def test_a_created_key_is_in_the_answer_once_and_stored_only_as_its_hash(api, policy):
    body = {"name": "bot", "policy": policy.pk, "team": "growth", "app": "bot", "requests_per_minute": 60}

    created = api.post("/api/routing/api-keys/", body, format="json").json()

    key = ApiKey.objects.get(pk=created["id"])
    assert created["key"].startswith(created["prefix"]) and key.key_hash == hash_api_key(created["key"])
    assert key.requests_per_minute == 60
    assert "key" not in api.get(created["url"]).json()
    assert all("key" not in row for row in api.get("/api/routing/api-keys/").json()["results"])


def test_revoking_a_key_stops_it_at_once(api, policy):
    key, _ = make_key(policy)

    response = api.post(f"/api/routing/api-keys/{key.pk}/revoke/")

    assert response.status_code == 200 and response.json()["revoked_at"] is not None
    key.refresh_from_db()
    assert not key.is_active
    again = api.post(f"/api/routing/api-keys/{key.pk}/revoke/").json()
    assert again["revoked_at"] == response.json()["revoked_at"]  # revoking twice changes nothing


@pytest.mark.live
def test_a_revoked_key_is_refused_by_the_gateway(live_gateway, api, settings):
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)])
    body = {"name": "bot", "policy": policy.pk, "team": "growth", "app": "bot"}
    created = api.post("/api/routing/api-keys/", body, format="json").json()
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=created["key"], max_retries=0)
    assert client.models.list().data

    api.post(f"/api/routing/api-keys/{created['id']}/revoke/")

    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_revoking_needs_the_change_permission(django_user_model, policy):
    key, _ = make_key(policy)
    user = django_user_model.objects.create_user("fin")
    user.groups.add(Group.objects.get(name=FINANCE))
    client = APIClient()
    client.force_authenticate(user)

    assert client.post(f"/api/routing/api-keys/{key.pk}/revoke/").status_code == 403
    assert client.post("/api/routing/api-keys/", {}, format="json").status_code == 403
    key.refresh_from_db()
    assert key.is_active


def test_a_key_for_a_policy_that_does_not_exist_is_a_400(api):
    response = api.post("/api/routing/api-keys/", {"name": "x", "policy": 999, "team": "t", "app": "a"}, format="json")

    assert response.status_code == 400 and "policy" in response.json()


def test_the_schema_documents_the_keys_and_their_revoke_action(api):
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]

    assert {"/api/routing/api-keys/", "/api/routing/api-keys/{id}/revoke/", "/api/routing/policy-versions/"} <= set(
        paths
    )
    created = paths["/api/routing/api-keys/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["$ref"].endswith("/ApiKeyCreated")
