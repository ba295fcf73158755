"""The quality loop in the management API: labels, shadow evaluations, scorer versions, policy rates."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from routing.models import QualityLabel, ScorerVersion, ShadowEvaluation
from testing.factories import make_policy, make_record, replay_endpoints

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy():
    mixtral, gpt4 = replay_endpoints()
    return make_policy("support", [(mixtral, 0.8), (gpt4, 1.0)])


def test_policies_carry_their_sampling_and_shadow_rates(api: APIClient, policy) -> None:
    response = api.patch(
        f"/api/routing/policies/{policy.id}/", {"sample_rate": 0.1, "shadow_rate": 0.05}, format="json"
    )

    assert response.status_code == 200, response.data
    policy.refresh_from_db()
    assert (policy.sample_rate, policy.shadow_rate, policy.version) == (0.1, 0.05, 2)


def test_a_rate_outside_zero_to_one_is_refused(api: APIClient, policy) -> None:
    response = api.patch(f"/api/routing/policies/{policy.id}/", {"shadow_rate": 1.5}, format="json")

    assert response.status_code == 400
    assert "shadow_rate" in response.data


def test_learned_is_a_scorer_a_policy_may_choose(api: APIClient, policy) -> None:
    response = api.patch(f"/api/routing/policies/{policy.id}/", {"scorer": "learned"}, format="json")

    assert response.status_code == 200, response.data
    assert response.data["scorer"] == "learned"


def test_shadow_evaluations_show_their_cost_apart_from_the_requests(api: APIClient, policy) -> None:
    record = make_record(policy=policy)
    ShadowEvaluation.objects.create(record=record, status="done", acceptable=True, cost=Decimal("0.0004"))

    [row] = api.get("/api/routing/shadow-evaluations/").data["results"]

    assert (row["policy"], row["cost"], row["acceptable"]) == (policy.id, "0.0004000000", True)


def test_scorer_versions_list_their_metrics_but_not_the_model(api: APIClient, policy) -> None:
    ScorerVersion.objects.create(policy=policy, version=1, model={"big": "x" * 1000}, metrics={"auc": 0.8}, n_labels=9)

    [row] = api.get("/api/routing/scorer-versions/").data["results"]

    assert row["metrics"] == {"auc": 0.8}
    assert "model" not in row


# --- query budgets: a list costs the same for 3 rows as for 30 -----------------------------


@pytest.mark.parametrize("rows", [3, 30])
def test_quality_label_list_query_count_is_flat(api: APIClient, django_assert_num_queries: Any, rows: int) -> None:
    for _ in range(rows):
        QualityLabel.objects.create(record=make_record(), source="feedback", value=1.0)

    with django_assert_num_queries(2):
        response = api.get("/api/routing/quality-labels/")

    assert response.data["count"] == rows


@pytest.mark.parametrize("rows", [3, 30])
def test_shadow_evaluation_list_query_count_is_flat(
    api: APIClient, django_assert_num_queries: Any, rows: int, policy
) -> None:
    for _ in range(rows):
        ShadowEvaluation.objects.create(record=make_record(policy=policy))

    with django_assert_num_queries(2):
        response = api.get("/api/routing/shadow-evaluations/")

    assert response.data["count"] == rows


@pytest.mark.parametrize("rows", [3, 30])
def test_scorer_version_list_query_count_is_flat(
    api: APIClient, django_assert_num_queries: Any, rows: int, policy
) -> None:
    for i in range(rows):
        ScorerVersion.objects.create(policy=policy, version=i + 1, model={}, n_labels=1)

    with django_assert_num_queries(2):
        response = api.get("/api/routing/scorer-versions/")

    assert response.data["count"] == rows
