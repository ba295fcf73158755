"""Query budgets of the management API's newer lists: 3 rows cost the same queries as 30."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import Budget, PriceBookEntry
from routing.models import Experiment, ExperimentArm, TaskCategory
from routing.policies import ladders, services
from testing.factories import make_key, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db


def policies(rows: int) -> list:
    mixtral, gpt4 = replay_endpoints()
    return [make_policy(f"policy-{i}", [(mixtral, 0.7), (gpt4, 1.0)]) for i in range(rows)]


def keys(rows: int) -> None:
    (policy,) = policies(1)
    for _ in range(rows):
        make_key(policy)


def versions(rows: int) -> None:
    (policy,) = policies(1)
    for i in range(rows - 1):
        services.policy_update(policy=policy, cache_ttl_s=i)


def ladders_of(rows: int) -> None:
    mixtral, gpt4 = replay_endpoints()
    code, _ = TaskCategory.objects.get_or_create(name="code")
    for policy in policies(rows):
        rungs = [{"position": 0, "endpoint": mixtral}, {"position": 1, "endpoint": gpt4}]
        ladders.ladder_save(policy=policy, category=code, rungs=rungs)


def experiments(rows: int) -> None:
    control, challenger = policies(2)
    key, _ = make_key(control)
    for i in range(rows):
        experiment = Experiment.objects.create(name=f"e{i}", api_key=key)
        ExperimentArm.objects.create(experiment=experiment, name="a", policy=control)
        ExperimentArm.objects.create(experiment=experiment, name="b", policy=challenger)


def budgets(rows: int) -> None:
    for i in range(rows):
        Budget.objects.create(name=f"b{i}", limit=Decimal(1))


def price_entries(rows: int) -> None:
    mixtral, _ = replay_endpoints()
    for i in range(rows):
        start = timezone.now() + timedelta(days=i + 1)
        PriceBookEntry.objects.create(endpoint=mixtral, effective_from=start, input_price_per_m=1, output_price_per_m=1)


# (path, rows made by, queries: count + page + one per prefetched relation)
LISTS = [
    ("/api/routing/api-keys/", keys, 2),
    ("/api/routing/policy-versions/", versions, 2),
    ("/api/routing/category-ladders/", ladders_of, 3),
    ("/api/routing/experiments/", experiments, 3),
    ("/api/billing/budgets/", budgets, 2),
    ("/api/billing/price-book-entries/", price_entries, 2),
    ("/api/audit/entries/", budgets, 2),
]


@pytest.mark.parametrize("rows", [3, 30])
@pytest.mark.parametrize(("path", "make", "queries"), LISTS, ids=[path for path, _, _ in LISTS])
def test_a_list_costs_the_same_queries_for_3_rows_as_for_30(api, django_assert_num_queries, path, make, queries, rows):
    make(rows)

    with django_assert_num_queries(queries):
        response = api.get(path)

    assert response.status_code == 200 and response.data["count"] >= rows
