"""Operators edit the registry, policies and keys in the admin, through a real login."""

from __future__ import annotations

import dataclasses
import re

import pytest
from django.utils import timezone

from routing.models import ApiKey, ModelEndpoint, Policy, hash_api_key
from testing.factories import make_policy, replay_endpoints

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
        "cache_ttl_s": "3600",
        "semantic_threshold": "0.95",
        "semantic_verify_rate": "0.05",
        "unknown_fields": "refuse",
        "text_retention_days": "30",
        "text_redact_patterns": "",
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
            f"tiers-{i}-samples": "1",
            f"tiers-{i}-sample_temperature": "0.7",
            f"tiers-{i}-extractor": "auto",
        }
    return data | fields


def test_the_add_form_renders_the_request_log_defaults_the_tests_post(operator_client):
    page = operator_client.get("/admin/routing/policy/add/").content.decode()

    retention = re.search(r'<input[^>]*name="text_retention_days"[^>]*>', page)
    patterns = re.search(r'<textarea[^>]*name="text_redact_patterns"[^>]*>([^<]*)</textarea>', page)
    store_text = re.search(r'<input[^>]*name="store_text"[^>]*>', page)
    assert retention is not None and 'value="30"' in retention.group()
    assert patterns is not None and patterns.group(1).strip() == ""
    assert store_text is not None and "checked" not in store_text.group()
    assert (policy_form([])["text_retention_days"], policy_form([])["text_redact_patterns"]) == ("30", "")


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


def test_an_operator_gates_a_tier_with_samples_peers_and_a_judge(operator_client):
    mixtral, gpt4 = replay_endpoints()
    peer = ModelEndpoint.objects.create(
        name="peer", provider_kind="replay", model_id="mixtral", input_price_per_m="1", output_price_per_m="1"
    )
    gate = {"tiers-0-samples": "3", "tiers-0-extractor": "number", "tiers-0-peers": [str(peer.pk)]}
    gate |= {"tiers-0-judge": str(gpt4.pk)}

    response = operator_client.post("/admin/routing/policy/add/", policy_form([(mixtral, "0.7"), (gpt4, "1")], **gate))

    assert response.status_code == 302, form_errors(response)
    tier = Policy.objects.get(name="support").tiers.get(position=0)
    assert (tier.samples, tier.extractor, tier.judge, list(tier.peers.all())) == (3, "number", gpt4, [peer])


def test_a_tier_cannot_be_its_own_peer(operator_client):
    mixtral, gpt4 = replay_endpoints()

    own_peer = {"tiers-0-peers": [str(mixtral.pk)]}

    response = operator_client.post(
        "/admin/routing/policy/add/", policy_form([(mixtral, "0.7"), (gpt4, "1")], **own_peer)
    )

    assert response.status_code == 200
    assert "cannot also be its peer" in form_errors(response)
    assert not Policy.objects.exists()


def test_a_task_rule_with_a_bad_pattern_is_rejected(operator_client):
    mixtral, gpt4 = replay_endpoints()
    rule = {"task_rules-TOTAL_FORMS": "1", "task_rules-0-position": "0", "task_rules-0-category": "math"}
    rule |= {"task_rules-0-pattern": "(unclosed", "task_rules-0-first_tier": "0"}

    response = operator_client.post("/admin/routing/policy/add/", policy_form([(mixtral, "0.7"), (gpt4, "1")], **rule))

    assert response.status_code == 200
    assert "not a valid regular expression" in str(
        response.context["inline_admin_formsets"][1].formset.non_form_errors()
    )
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
    from testing.factories import make_key

    key, _ = make_key(policy)

    operator_client.post("/admin/routing/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})

    key.refresh_from_db()
    assert key.revoked_at is not None and not key.is_active


def test_request_records_are_read_only_in_the_admin(operator_client):
    assert operator_client.get("/admin/routing/requestrecord/add/").status_code == 403


# --- Resilience, caching and rate limits ------------------------------------------------


def endpoint_form(endpoint: ModelEndpoint, **fields: str) -> dict[str, str]:
    """The admin change form of `endpoint` as saved, with `fields` changed."""
    data = {
        name: "" if value is None else str(value)
        for name, value in ModelEndpoint.objects.filter(pk=endpoint.pk).values().get().items()
        if name not in {"id", "created", "updated", "fallback_endpoint_id", "options", "enabled"}
    }
    data |= {"options": "{}", "enabled": "on", "fallback_endpoint": ""}
    return data | fields


def test_an_operator_sets_retries_breaker_and_fallback_of_an_endpoint(operator_client):
    mixtral, gpt4 = replay_endpoints()
    form = endpoint_form(
        mixtral,
        max_retries="4",
        breaker_failure_rate="0.25",
        breaker_min_requests="20",
        breaker_window_s="60",
        breaker_open_s="15",
        fallback_endpoint=str(gpt4.pk),
        connect_timeout_s="1.5",
        read_timeout_s="20",
    )

    response = operator_client.post(f"/admin/routing/modelendpoint/{mixtral.pk}/change/", form)

    assert response.status_code == 302, response.context["adminform"].form.errors
    mixtral.refresh_from_db()
    assert (mixtral.max_retries, mixtral.breaker_failure_rate, mixtral.breaker_min_requests) == (4, 0.25, 20)
    assert (mixtral.breaker_window_s, mixtral.breaker_open_s, mixtral.fallback_endpoint) == (60, 15, gpt4)
    assert (mixtral.connect_timeout_s, mixtral.read_timeout_s) == (1.5, 20.0)


def test_an_endpoint_cannot_be_its_own_fallback(operator_client):
    mixtral, _ = replay_endpoints()

    response = operator_client.post(
        f"/admin/routing/modelendpoint/{mixtral.pk}/change/", endpoint_form(mixtral, fallback_endpoint=str(mixtral.pk))
    )

    assert response.status_code == 200
    assert "cannot be its own fallback" in str(response.context["adminform"].form.errors)


def test_the_endpoint_list_shows_each_breaker_live(operator_client, settings):
    import uuid

    from asgiref.sync import async_to_sync

    from routing.config.snapshots import endpoint_snapshot
    from routing.limits.breakers import breaker_board

    settings.CASCADEOPS_BREAKER_PREFIX = f"cascadeops:test:breaker:{uuid.uuid4().hex}"
    mixtral, _ = replay_endpoints()
    broken = dataclasses.replace(endpoint_snapshot(mixtral, timezone.now()), breaker_min_requests=1)
    async_to_sync(breaker_board().record)(broken, False)

    listing = operator_client.get("/admin/routing/modelendpoint/").content.decode()

    shown = dict(re.findall(r'change/">([\w.-]+)</a></th>.*?class="field-breaker">([^<]*)<', listing))
    assert shown == {"replay-mixtral": "open", "replay-gpt-4": "closed"}


def test_an_operator_sets_a_policys_caching(operator_client):
    mixtral, gpt4 = replay_endpoints()
    form = policy_form(
        [(mixtral, "0.7"), (gpt4, "1")],
        cache_ttl_s="0",
        semantic_cache="on",
        semantic_threshold="0.9",
        semantic_multi_turn="on",
        semantic_verify_rate="0.1",
    )

    response = operator_client.post("/admin/routing/policy/add/", form)

    assert response.status_code == 302, form_errors(response)
    policy = Policy.objects.get(name="support")
    assert (policy.cache_ttl_s, policy.semantic_cache, policy.semantic_threshold) == (0, True, 0.9)
    assert (policy.semantic_multi_turn, policy.semantic_verify_rate) == (True, 0.1)


def test_an_operator_sets_a_keys_rate_limits(operator_client):
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("support", [(mixtral, 0.7), (gpt4, 1.0)])

    operator_client.post(
        "/admin/routing/apikey/add/",
        {"name": "bot", "team": "growth", "app": "bot", "policy": str(policy.pk), "requests_per_minute": "60",
         "tokens_per_minute": "90000"},
    )  # fmt: skip

    key = ApiKey.objects.get()
    assert (key.requests_per_minute, key.tokens_per_minute) == (60, 90_000)
