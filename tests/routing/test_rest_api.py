"""The management REST API: model endpoints, policies with nested tiers, request records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from routing.choices import RecordStatus
from routing.models import ModelEndpoint, Policy
from testing.factories import ModelEndpointFactory, make_key, make_policy, make_record, replay_endpoints

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/routing/model-endpoints/"
POLICIES = "/api/routing/policies/"
RECORDS = "/api/routing/request-records/"


@pytest.fixture
def three_endpoints() -> list[ModelEndpoint]:
    mixtral, gpt4 = replay_endpoints()
    middle = ModelEndpointFactory(name="replay-middle", model_id="middle")
    return [mixtral, middle, gpt4]


def user_with_perms(django_user_model: type, username: str, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(username, f"{username}@example.com", "pw")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="routing", codename__in=codenames))
    return user


def tiers_payload(endpoints: list[ModelEndpoint], thresholds: tuple[float, ...] = (0.8, 0.7, 0.0)) -> list[dict]:
    return [
        {"position": i, "endpoint": e.id, "threshold": t, "max_tokens": None}
        for i, (e, t) in enumerate(zip(endpoints, thresholds, strict=False))
    ]


def policy_payload(endpoints: list[ModelEndpoint], **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": "support",
        "description": "Support bot traffic.",
        "tiers": tiers_payload(endpoints),
        "task_rules": [
            {"position": 0, "category": "greeting", "pattern": r"^\s*hi\b", "first_tier": 0},
            {"position": 1, "category": "math", "pattern": r"\bcalculate\b", "first_tier": 2},
        ],
    }
    return {**payload, **fields}


def endpoint_payload(**fields: Any) -> dict[str, Any]:
    payload = {
        "name": "openai-gpt-4o-mini",
        "provider_kind": "openai_compat",
        "model_id": "gpt-4o-mini",
        "base_url": "https://api.openai.com/v1",
        "credentials_env": "CASCADEOPS_PROVIDER_OPENAI",
        "input_price_per_m": "0.15",
        "output_price_per_m": "0.60",
    }
    return {**payload, **fields}


# --- model endpoints ---------------------------------------------------------------------


def test_endpoint_list_shows_prices_as_decimal_strings(api: APIClient) -> None:
    replay_endpoints()

    response = api.get(ENDPOINTS)

    assert response.status_code == 200
    assert response.data["count"] == 2
    gpt4 = next(row for row in response.json()["results"] if row["name"] == "replay-gpt-4")
    assert gpt4["input_price_per_m"] == "10.000000"
    assert gpt4["output_price_per_m"] == "30.000000"


def test_endpoint_create_stores_the_env_var_name(api: APIClient) -> None:
    response = api.post(ENDPOINTS, endpoint_payload(), format="json")

    assert response.status_code == 201, response.data
    endpoint = ModelEndpoint.objects.get(name="openai-gpt-4o-mini")
    assert endpoint.credentials_env == "CASCADEOPS_PROVIDER_OPENAI"
    assert endpoint.input_price_per_m == Decimal("0.15")
    assert response.data["url"].endswith(f"{ENDPOINTS}{endpoint.id}/")


def test_endpoint_create_rejects_a_key_in_place_of_an_env_var_name(api: APIClient) -> None:
    response = api.post(ENDPOINTS, endpoint_payload(credentials_env="sk-proj-abc123"), format="json")

    assert response.status_code == 400
    assert "credentials_env" in response.data
    assert not ModelEndpoint.objects.exists()


def test_endpoint_create_rejects_a_negative_price(api: APIClient) -> None:
    response = api.post(ENDPOINTS, endpoint_payload(input_price_per_m="-1"), format="json")

    assert response.status_code == 400
    assert "input_price_per_m" in response.data


def test_endpoint_update_changes_prices(api: APIClient) -> None:
    endpoint = ModelEndpointFactory()

    response = api.patch(f"{ENDPOINTS}{endpoint.id}/", {"output_price_per_m": "1.25", "enabled": False}, format="json")

    assert response.status_code == 200, response.data
    endpoint.refresh_from_db()
    assert endpoint.output_price_per_m == Decimal("1.25")
    assert endpoint.enabled is False


def test_endpoint_create_sets_retries_breaker_and_fallback(api: APIClient) -> None:
    _, gpt4 = replay_endpoints()
    resilience = {
        "connect_timeout_s": 1.5,
        "read_timeout_s": 20.0,
        "max_retries": 4,
        "breaker_failure_rate": 0.25,
        "breaker_min_requests": 20,
        "breaker_window_s": 60,
        "breaker_open_s": 15,
        "fallback_endpoint": gpt4.id,
    }

    response = api.post(ENDPOINTS, endpoint_payload(**resilience), format="json")

    assert response.status_code == 201, response.data
    assert {name: response.data[name] for name in resilience} == resilience
    endpoint = ModelEndpoint.objects.get(name="openai-gpt-4o-mini")
    assert (endpoint.max_retries, endpoint.breaker_open_s, endpoint.fallback_endpoint) == (4, 15, gpt4)


def test_endpoint_defaults_are_shown_for_the_resilience_fields(api: APIClient) -> None:
    response = api.post(ENDPOINTS, endpoint_payload(), format="json")

    assert response.status_code == 201, response.data
    shown = {name: response.data[name] for name in ("max_retries", "breaker_min_requests", "fallback_endpoint")}
    assert shown == {"max_retries": 2, "breaker_min_requests": 10, "fallback_endpoint": None}


def test_endpoint_cannot_be_its_own_fallback(api: APIClient) -> None:
    endpoint = ModelEndpointFactory()

    response = api.patch(f"{ENDPOINTS}{endpoint.id}/", {"fallback_endpoint": endpoint.id}, format="json")

    assert response.status_code == 400
    assert "own fallback" in str(response.data["fallback_endpoint"])
    endpoint.refresh_from_db()
    assert endpoint.fallback_endpoint is None


def test_endpoint_rejects_a_failure_rate_above_one(api: APIClient) -> None:
    response = api.post(ENDPOINTS, endpoint_payload(breaker_failure_rate=1.5), format="json")

    assert response.status_code == 400
    assert "breaker_failure_rate" in response.data


def test_endpoint_delete_removes_an_unused_endpoint(api: APIClient) -> None:
    endpoint = ModelEndpointFactory()

    response = api.delete(f"{ENDPOINTS}{endpoint.id}/")

    assert response.status_code == 204
    assert not ModelEndpoint.objects.exists()


def test_endpoint_delete_answers_conflict_while_a_policy_uses_it(api: APIClient) -> None:
    mixtral, gpt4 = replay_endpoints()
    make_policy("support", [(mixtral, 0.7), (gpt4, 0.0)])

    response = api.delete(f"{ENDPOINTS}{mixtral.id}/")

    assert response.status_code == 409
    assert "support" in response.data["detail"]
    assert ModelEndpoint.objects.filter(id=mixtral.id).exists()


# --- policies ----------------------------------------------------------------------------


def test_policy_create_saves_nested_tiers_and_rules(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    response = api.post(POLICIES, policy_payload(three_endpoints), format="json")

    assert response.status_code == 201, response.data
    policy = Policy.objects.get(name="support")
    assert policy.version == 1
    assert [(t.position, t.endpoint_id, t.threshold) for t in policy.tiers.all()] == [
        (0, three_endpoints[0].id, 0.8),
        (1, three_endpoints[1].id, 0.7),
        (2, three_endpoints[2].id, 0.0),
    ]
    assert [(r.category, r.first_tier) for r in policy.task_rules.all()] == [("greeting", 0), ("math", 2)]
    assert response.data["version"] == 1
    assert [t["endpoint"] for t in response.data["tiers"]] == [e.id for e in three_endpoints]


def test_policy_create_without_rules_gets_the_default_rules(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    payload = policy_payload(three_endpoints)
    del payload["task_rules"]

    response = api.post(POLICIES, payload, format="json")

    assert response.status_code == 201, response.data
    categories = [rule["category"] for rule in response.data["task_rules"]]
    assert "math" in categories
    assert "greeting" in categories


def test_policy_version_is_read_only(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    response = api.post(POLICIES, policy_payload(three_endpoints, version=42), format="json")

    assert response.status_code == 201
    assert Policy.objects.get().version == 1


def test_policy_update_increments_version(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    policy_id = api.post(POLICIES, policy_payload(three_endpoints), format="json").data["id"]
    strong_only = three_endpoints[1:]
    payload = policy_payload(strong_only, description="Two tiers now.", task_rules=[])

    response = api.put(f"{POLICIES}{policy_id}/", payload, format="json")

    assert response.status_code == 200, response.data
    assert response.data["version"] == 2
    policy = Policy.objects.get(id=policy_id)
    assert policy.version == 2
    assert policy.description == "Two tiers now."
    assert [t.endpoint_id for t in policy.tiers.all()] == [e.id for e in strong_only]
    assert [t["endpoint"] for t in response.data["tiers"]] == [e.id for e in strong_only]
    assert not policy.task_rules.exists()


def test_policy_patch_keeps_tiers_and_moves_version_once(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    policy_id = api.post(POLICIES, policy_payload(three_endpoints), format="json").data["id"]

    response = api.patch(f"{POLICIES}{policy_id}/", {"max_escalations": 2}, format="json")

    assert response.status_code == 200, response.data
    assert response.data["version"] == 2
    assert response.data["max_escalations"] == 2
    assert len(response.data["tiers"]) == 3
    assert len(response.data["task_rules"]) == 2


def test_policy_caching_is_set_and_read_through_the_api(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    caching = {
        "cache_ttl_s": 600,
        "semantic_cache": True,
        "semantic_threshold": 0.9,
        "semantic_multi_turn": True,
        "semantic_verify_rate": 0.1,
    }

    response = api.post(POLICIES, policy_payload(three_endpoints, **caching), format="json")

    assert response.status_code == 201, response.data
    assert {name: response.data[name] for name in caching} == caching
    policy = Policy.objects.get(name="support")
    assert (policy.cache_ttl_s, policy.semantic_cache, policy.semantic_verify_rate) == (600, True, 0.1)


def test_policy_rejects_a_semantic_threshold_above_one(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    response = api.post(POLICIES, policy_payload(three_endpoints, semantic_threshold=1.2), format="json")

    assert response.status_code == 400
    assert "semantic_threshold" in response.data


def test_policy_delete_removes_its_tiers(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    policy_id = api.post(POLICIES, policy_payload(three_endpoints), format="json").data["id"]

    response = api.delete(f"{POLICIES}{policy_id}/")

    assert response.status_code == 204
    assert not Policy.objects.exists()


def test_policy_delete_answers_conflict_while_a_key_uses_it(api: APIClient) -> None:
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("support", [(mixtral, 0.7), (gpt4, 0.0)])
    make_key(policy)

    response = api.delete(f"{POLICIES}{policy.id}/")

    assert response.status_code == 409
    assert Policy.objects.filter(id=policy.id).exists()


def test_policy_with_one_tier_is_rejected(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    payload = policy_payload(three_endpoints[:1], task_rules=[])

    response = api.post(POLICIES, payload, format="json")

    assert response.status_code == 400
    assert "at least 2 tiers" in str(response.data["tiers"])
    assert not Policy.objects.exists()


def test_policy_with_threshold_above_one_is_rejected(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    payload = policy_payload(three_endpoints)
    payload["tiers"][1]["threshold"] = 1.5

    response = api.post(POLICIES, payload, format="json")

    assert response.status_code == 400
    assert "threshold" in response.data["tiers"][1]
    assert not Policy.objects.exists()


def test_policy_with_disabled_endpoint_is_rejected(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    ModelEndpoint.objects.filter(id=three_endpoints[2].id).update(enabled=False)

    response = api.post(POLICIES, policy_payload(three_endpoints), format="json")

    assert response.status_code == 400
    assert response.data["tiers"] == ["Tier 2: endpoint replay-gpt-4 is disabled."]


def test_policy_with_bad_regex_is_rejected(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    payload = policy_payload(three_endpoints)
    payload["task_rules"][1]["pattern"] = r"(unclosed"

    response = api.post(POLICIES, payload, format="json")

    assert response.status_code == 400
    [message] = response.data["task_rules"]
    assert message.startswith("Task rule 1: not a valid regular expression")


def test_policy_with_duplicate_tier_positions_is_rejected(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    payload = policy_payload(three_endpoints)
    payload["tiers"][2]["position"] = 1

    response = api.post(POLICIES, payload, format="json")

    assert response.status_code == 400
    assert "position 1" in str(response.data["tiers"])


def test_policy_with_rule_starting_past_the_last_tier_is_rejected(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    payload = policy_payload(three_endpoints)
    payload["task_rules"][1]["first_tier"] = 3

    response = api.post(POLICIES, payload, format="json")

    assert response.status_code == 400
    assert response.data["task_rules"] == ["Task rule 1: first_tier must be a tier index from 0 to 2."]


def test_policy_patch_dropping_tiers_a_rule_starts_on_is_rejected(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    policy_id = api.post(POLICIES, policy_payload(three_endpoints), format="json").data["id"]

    response = api.patch(f"{POLICIES}{policy_id}/", {"tiers": tiers_payload(three_endpoints[:2])}, format="json")

    assert response.status_code == 400
    assert "tiers" in response.data
    assert Policy.objects.get(id=policy_id).version == 1


def test_policy_patch_of_rules_alone_checks_them_against_the_saved_tiers(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    policy_id = api.post(POLICIES, policy_payload(three_endpoints), format="json").data["id"]
    rules = [{"position": 0, "category": "math", "pattern": r"\bsum\b", "first_tier": 3}]

    response = api.patch(f"{POLICIES}{policy_id}/", {"task_rules": rules}, format="json")

    assert response.status_code == 400
    assert response.data["task_rules"] == ["Task rule 0: first_tier must be a tier index from 0 to 2."]


def test_failed_policy_update_leaves_tiers_and_version_alone(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    policy_id = api.post(POLICIES, policy_payload(three_endpoints), format="json").data["id"]
    payload = policy_payload(three_endpoints)
    payload["tiers"][0]["threshold"] = -0.1

    response = api.put(f"{POLICIES}{policy_id}/", payload, format="json")

    assert response.status_code == 400
    policy = Policy.objects.get(id=policy_id)
    assert policy.version == 1
    assert policy.tiers.count() == 3


# --- the quality gate on tiers ------------------------------------------------------------


def gated_payload(endpoints: list[ModelEndpoint], **gate: Any) -> dict[str, Any]:
    """A policy whose cheapest tier has the quality gate `gate`."""
    payload = policy_payload(endpoints)
    payload["tiers"][0] |= gate
    return payload


def test_policy_with_a_gated_tier_is_created_and_read_back(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    _, middle, strong = three_endpoints
    gate = {"samples": 3, "sample_temperature": 0.9, "extractor": "number", "peers": [middle.id], "judge": strong.id}

    created = api.post(POLICIES, gated_payload(three_endpoints, **gate), format="json")
    response = api.get(f"{POLICIES}{created.data['id']}/")

    assert created.status_code == 201, created.data
    assert {name: response.data["tiers"][0][name] for name in gate} == gate
    ungated = response.data["tiers"][1]
    assert (ungated["samples"], ungated["extractor"], ungated["peers"], ungated["judge"]) == (1, "auto", [], None)
    tier = Policy.objects.get(name="support").tiers.get(position=0)
    assert (tier.samples, tier.extractor, tier.judge, list(tier.peers.all())) == (3, "number", strong, [middle])


def test_policy_with_a_disabled_judge_is_rejected(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    judge = ModelEndpointFactory(name="judge", enabled=False)

    response = api.post(POLICIES, gated_payload(three_endpoints, judge=judge.id), format="json")

    assert response.status_code == 400
    assert response.data["tiers"] == ["Tier 0: judge judge is disabled."]
    assert not Policy.objects.exists()


def test_a_tier_cannot_be_its_own_peer(api: APIClient, three_endpoints: list[ModelEndpoint]) -> None:
    own = three_endpoints[0]

    response = api.post(POLICIES, gated_payload(three_endpoints, peers=[own.id]), format="json")

    assert response.status_code == 400
    assert response.data["tiers"] == ["Tier 0: its own endpoint replay-mixtral cannot also be its peer."]


def test_a_tier_with_more_samples_than_allowed_is_rejected(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    response = api.post(POLICIES, gated_payload(three_endpoints, samples=11), format="json")

    assert response.status_code == 400
    assert "samples" in response.data["tiers"][0]


def test_policy_update_replaces_the_peers_and_moves_version_once(
    api: APIClient, three_endpoints: list[ModelEndpoint]
) -> None:
    _, middle, strong = three_endpoints
    payload = gated_payload(three_endpoints, peers=[middle.id])
    policy_id = api.post(POLICIES, payload, format="json").data["id"]
    payload["tiers"][0]["peers"] = [strong.id]

    response = api.put(f"{POLICIES}{policy_id}/", payload, format="json")

    assert response.status_code == 200, response.data
    assert (response.data["version"], response.data["tiers"][0]["peers"]) == (2, [strong.id])
    assert list(Policy.objects.get(id=policy_id).tiers.get(position=0).peers.all()) == [strong]


# --- authentication and permissions ------------------------------------------------------


def test_anonymous_client_is_refused() -> None:
    response = APIClient().get(ENDPOINTS)

    assert response.status_code in (401, 403)


def test_user_without_permissions_gets_403_even_for_reads(django_user_model: type) -> None:
    client = APIClient()
    client.force_authenticate(user_with_perms(django_user_model, "nobody"))

    assert client.get(ENDPOINTS).status_code == 403
    assert client.get(POLICIES).status_code == 403
    assert client.get(RECORDS).status_code == 403


def test_user_with_view_permission_may_read_but_not_write(django_user_model: type) -> None:
    client = APIClient()
    client.force_authenticate(user_with_perms(django_user_model, "viewer", "view_modelendpoint"))

    assert client.get(ENDPOINTS).status_code == 200
    assert client.post(ENDPOINTS, endpoint_payload(), format="json").status_code == 403


def test_user_with_add_permission_may_create(django_user_model: type) -> None:
    client = APIClient()
    client.force_authenticate(user_with_perms(django_user_model, "editor", "view_modelendpoint", "add_modelendpoint"))

    assert client.post(ENDPOINTS, endpoint_payload(), format="json").status_code == 201


def test_bad_filter_from_user_without_permission_gets_403_not_400(django_user_model: type) -> None:
    client = APIClient()
    client.force_authenticate(user_with_perms(django_user_model, "nobody"))

    assert client.get(RECORDS, {"status": "bogus"}).status_code == 403


def test_token_authentication_works(operator: Any) -> None:
    token = Token.objects.create(user=operator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert client.get(POLICIES).status_code == 200


def test_session_authentication_works(operator: Any) -> None:
    client = APIClient()
    client.force_login(operator)

    assert client.get(POLICIES).status_code == 200


# --- request records ---------------------------------------------------------------------


def test_record_list_nests_attempts(api: APIClient) -> None:
    record = make_record(attempts=2)

    response = api.get(RECORDS)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["id"] == str(record.id)
    assert row["escalated"] is True
    assert [(a["position"], a["outcome"]) for a in row["attempts"]] == [(0, "escalated"), (1, "accepted")]


def test_record_detail_shows_one_record(api: APIClient) -> None:
    record = make_record()

    response = api.get(f"{RECORDS}{record.id}/")

    assert response.status_code == 200
    assert response.data["policy_name"] == record.policy_name


def test_records_are_read_only(api: APIClient) -> None:
    record = make_record()

    assert api.post(RECORDS, {}, format="json").status_code == 405
    assert api.delete(f"{RECORDS}{record.id}/").status_code == 405


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"policy": "support"}, {"support-growth"}),
        ({"team": "search"}, {"docs-search"}),
        ({"app": "docs"}, {"docs-search"}),
        ({"status": "failed"}, {"failed"}),
        ({"escalated": "true"}, {"support-growth"}),
        ({"escalated": "false"}, {"docs-search", "failed"}),
        ({"created_after": "2025-03-02T00:00:00Z"}, {"docs-search", "failed"}),
        ({"created_before": "2025-03-02T00:00:00+00:00"}, {"support-growth"}),
        ({"created_after": "2025-03-02T00:00:00", "created_before": "2025-03-03T13:00:00Z"}, {"docs-search"}),
        ({"team": "growth", "escalated": "0"}, {"failed"}),
        ({"team": ""}, {"support-growth", "docs-search", "failed"}),
    ],
)
def test_record_list_filters_by_query_parameters(api: APIClient, params: dict[str, str], expected: set[str]) -> None:
    day = datetime(2025, 3, 1, 12, tzinfo=UTC)
    make_record(
        attempts=2, policy_name="support", team="growth", app="support-bot", created=day, end_user="support-growth"
    )
    make_record(policy_name="docs", team="search", app="docs", created=day + timedelta(days=2), end_user="docs-search")
    make_record(status="failed", team="growth", created=day + timedelta(days=3), end_user="failed")

    response = api.get(RECORDS, params)

    assert response.status_code == 200, response.data
    assert {row["end_user"] for row in response.data["results"]} == expected


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("status", "exploded"),
        ("escalated", "maybe"),
        ("created_after", "yesterday"),
        ("created_before", "2025-13-01T00:00:00Z"),
    ],
)
def test_record_list_rejects_a_bad_filter_value(api: APIClient, param: str, value: str) -> None:
    response = api.get(RECORDS, {param: value})

    assert response.status_code == 400
    assert list(response.data) == [param]


def test_record_list_names_every_bad_filter(api: APIClient) -> None:
    response = api.get(RECORDS, {"status": "nope", "escalated": "nope", "team": "growth"})

    assert response.status_code == 400
    assert set(response.data) == {"status", "escalated"}


def test_it_filters_records_by_status(api: APIClient) -> None:
    make_record(end_user="answered")
    make_record(status="cancelled", end_user="cancelled")

    response = api.get(RECORDS, {"status": "cancelled"})

    assert response.status_code == 200, response.data
    assert [row["end_user"] for row in response.data["results"]] == ["cancelled"]


@pytest.mark.parametrize(("value", "expected"), [("TRUE", "escalated"), ("Yes", "escalated"), ("no", "direct")])
def test_it_filters_records_by_escalation_however_the_boolean_is_spelled(
    api: APIClient, value: str, expected: str
) -> None:
    make_record(attempts=2, end_user="escalated")
    make_record(end_user="direct")

    response = api.get(RECORDS, {"escalated": value})

    assert response.status_code == 200, response.data
    assert [row["end_user"] for row in response.data["results"]] == [expected]


@pytest.mark.parametrize(
    ("param", "value", "reason"),
    [
        ("created_after", "2025-02-30T00:00:00Z", "ISO 8601"),
        ("escalated", "maybe", "true or false"),
        ("status", "exploded", "valid choice"),
    ],
)
def test_it_answers_400_naming_a_bad_datetime_boolean_or_choice(
    api: APIClient, param: str, value: str, reason: str
) -> None:
    response = api.get(RECORDS, {param: value})

    assert response.status_code == 400
    assert list(response.data) == [param]
    assert reason in str(response.data[param][0])


# --- schema ------------------------------------------------------------------------------


def test_schema_describes_the_three_resources(api: APIClient) -> None:
    response = api.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert response.json()["openapi"].startswith("3.")
    for path in (ENDPOINTS, POLICIES, RECORDS):
        assert path in paths
    record_params = {p["name"] for p in paths[RECORDS]["get"]["parameters"]}
    assert {"policy", "team", "app", "status", "escalated", "created_after", "created_before"} <= record_params


def test_it_documents_the_record_filters_with_their_types(api: APIClient) -> None:
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]

    params = {p["name"]: p["schema"] for p in paths[RECORDS]["get"]["parameters"]}
    assert params["escalated"] == {"type": "boolean"}
    assert params["created_after"] == params["created_before"] == {"type": "string", "format": "date-time"}
    assert set(params["status"]["enum"]) == set(RecordStatus.values)


# --- query budgets (NetBox-style): a list costs the same for 3 rows as for 30 -------------
# Auth is forced, so these count the viewset's own queries: COUNT(*) for the page, the
# page, and one query per prefetched relation (tiers, their peers, task rules).


@pytest.mark.parametrize("rows", [3, 30])
def test_endpoint_list_query_count_is_flat(api: APIClient, django_assert_num_queries: Any, rows: int) -> None:
    ModelEndpointFactory.create_batch(rows)

    with django_assert_num_queries(3):  # count, page, and the page's price-book entries
        response = api.get(ENDPOINTS)

    assert response.data["count"] == rows


@pytest.mark.parametrize("rows", [3, 30])
def test_policy_list_query_count_is_flat(api: APIClient, django_assert_num_queries: Any, rows: int) -> None:
    mixtral, gpt4 = replay_endpoints()
    for i in range(rows):
        make_policy(f"policy-{i}", [(mixtral, 0.7), (gpt4, 0.0)])

    with django_assert_num_queries(5):
        response = api.get(POLICIES)

    assert response.data["count"] == rows


@pytest.mark.parametrize("rows", [3, 30])
def test_record_list_query_count_is_flat(api: APIClient, django_assert_num_queries: Any, rows: int) -> None:
    for _ in range(rows):
        make_record(attempts=2)

    with django_assert_num_queries(3):
        response = api.get(RECORDS, {"team": "growth", "escalated": "true"})

    assert response.data["count"] == rows
