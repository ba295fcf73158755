"""Operators edit the registry, policies and keys in the admin, through a real login."""

from __future__ import annotations

import re

import pytest

from routing.models import ApiKey, ModelEndpoint, Policy, hash_api_key
from tests.factories import make_policy, replay_endpoints

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


@pytest.fixture
def operator_client(client, operator):
    assert client.login(username="operator", password=PASSWORD)
    return client


def policy_form(endpoints: list[tuple[ModelEndpoint, str]], **fields: str) -> dict[str, str]:
    """The admin add form for a policy with these (endpoint, threshold) tiers and no rules."""
    data = {
        "name": "support",
        "description": "",
        "enabled": "on",
        "scorer": "heuristic",
        "max_escalations": "1",
        "short_prompt_tokens": "0",
        "optimisation_goal": "balanced",
        "sample_rate": "0",
        "shadow_rate": "0",
        "tiers-TOTAL_FORMS": str(len(endpoints)),
        "tiers-INITIAL_FORMS": "0",
        "tiers-MIN_NUM_FORMS": "2",
        "tiers-MAX_NUM_FORMS": "1000",
        "task_rules-TOTAL_FORMS": "0",
        "task_rules-INITIAL_FORMS": "0",
        "task_rules-MIN_NUM_FORMS": "0",
        "task_rules-MAX_NUM_FORMS": "1000",
    }
    for i, (endpoint, threshold) in enumerate(endpoints):
        data |= {
            f"tiers-{i}-position": str(i),
            f"tiers-{i}-endpoint": str(endpoint.pk),
            f"tiers-{i}-threshold": threshold,
        }
    return data | fields


def test_an_operator_creates_a_three_tier_policy_with_inline_tiers(operator_client):
    mixtral, gpt4 = replay_endpoints()
    middle = ModelEndpoint.objects.create(
        name="middle", provider_kind="replay", model_id="gpt-4", input_price_per_m="1", output_price_per_m="2"
    )

    response = operator_client.post(
        "/admin/routing/policy/add/", policy_form([(mixtral, "0.7"), (middle, "0.8"), (gpt4, "1")])
    )

    assert response.status_code == 302, response.context["errors"] if response.context else response
    policy = Policy.objects.get(name="support")
    assert [t.endpoint.name for t in policy.tiers.order_by("position")] == ["replay-mixtral", "middle", "replay-gpt-4"]
    assert policy.version == 1


def test_each_admin_save_is_a_new_policy_version(operator_client):
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)], with_default_rules=False)
    tiers = list(policy.tiers.order_by("position"))
    data = policy_form([(mixtral, "0.75"), (gpt4, "1")])
    data |= {"tiers-INITIAL_FORMS": "2", "tiers-0-id": str(tiers[0].pk), "tiers-1-id": str(tiers[1].pk)}
    data |= {"tiers-0-policy": str(policy.pk), "tiers-1-policy": str(policy.pk)}

    response = operator_client.post(f"/admin/routing/policy/{policy.pk}/change/", data)

    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.version == 2
    assert policy.tiers.get(position=0).threshold == 0.75


def form_errors(response) -> str:
    return (
        str(response.context["adminform"].form.errors)
        + str(response.context["inline_admin_formsets"][0].formset.errors)
        + str(response.context["inline_admin_formsets"][0].formset.non_form_errors())
    )


def test_a_policy_with_fewer_than_two_tiers_is_rejected(operator_client):
    mixtral, _ = replay_endpoints()

    response = operator_client.post("/admin/routing/policy/add/", policy_form([(mixtral, "0.7")]))

    assert response.status_code == 200
    assert "at least 2" in form_errors(response)
    assert not Policy.objects.exists()


def test_a_threshold_outside_zero_to_one_is_rejected(operator_client):
    mixtral, gpt4 = replay_endpoints()

    response = operator_client.post("/admin/routing/policy/add/", policy_form([(mixtral, "1.5"), (gpt4, "1")]))

    assert response.status_code == 200
    assert "less than or equal to 1.0" in form_errors(response)
    assert not Policy.objects.exists()


def test_a_disabled_endpoint_is_rejected_as_a_tier(operator_client):
    mixtral, gpt4 = replay_endpoints()
    ModelEndpoint.objects.filter(pk=mixtral.pk).update(enabled=False)

    response = operator_client.post("/admin/routing/policy/add/", policy_form([(mixtral, "0.7"), (gpt4, "1")]))

    assert response.status_code == 200
    assert "is disabled" in form_errors(response)
    assert not Policy.objects.exists()


def test_a_new_api_key_is_shown_once_and_stored_only_as_a_hash(operator_client):
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)])

    response = operator_client.post(
        "/admin/routing/apikey/add/",
        {"name": "bot", "team": "growth", "app": "bot", "policy": str(policy.pk)},
        follow=True,
    )

    shown = response.content.decode()
    plaintext = re.search(r"co-[\w-]{40,}", shown).group(0)
    key = ApiKey.objects.get()
    assert key.key_hash == hash_api_key(plaintext)
    assert key.prefix == plaintext[:12]
    assert plaintext not in str(ApiKey.objects.values().get())
    listing = operator_client.get("/admin/routing/apikey/").content.decode()
    assert key.prefix in listing and plaintext not in listing  # shown once, then never again


def test_the_revoke_action_revokes_keys(operator_client):
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)])
    from tests.factories import make_key

    key, _ = make_key(policy)

    operator_client.post("/admin/routing/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})

    key.refresh_from_db()
    assert key.revoked_at is not None and not key.is_active


def test_request_records_are_read_only_in_the_admin(operator_client):
    assert operator_client.get("/admin/routing/requestrecord/add/").status_code == 403
