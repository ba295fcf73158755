"""Measured latency and quality reach selection: rollups and labels → endpoint measures → the snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.choices import Resolution
from dashboard.models import Rollup
from dashboard.rollups.compute import bucket_start
from dashboard.rollups.measures import measures_refresh
from dashboard.rollups.sketch import sketch_of
from routing.config.snapshots import load_policies
from routing.engine.selection import select_route
from routing.models import EndpointMeasure, Policy
from testing.factories import RequestRecordFactory, make_policy, replay_endpoints
from testing.fakes import chat

pytestmark = pytest.mark.django_db


def slow_minutes(policy: Policy, model: str, latency_ms: float, requests: int) -> None:
    now = timezone.now()
    Rollup.objects.create(
        resolution=Resolution.MINUTE,
        bucket=bucket_start(now - timedelta(minutes=2), Resolution.MINUTE),
        policy=policy,
        policy_name=policy.name,
        tier=0,
        model=model,
        requests=requests,
        latency=sketch_of([latency_ms] * requests),
    )


def test_a_latency_budget_skips_the_tier_traffic_measured_slow() -> None:
    cheap, strong = replay_endpoints()
    policy = make_policy("fast", [(cheap, 0.5), (strong, 1.0)], latency_budget_ms=2000)
    slow_minutes(policy, cheap.name, 3000.0, requests=60)

    measures_refresh()
    snapshot = load_policies()[0]
    plan = select_route(chat("Where is my parcel?"), snapshot)

    measure = EndpointMeasure.objects.get(endpoint=cheap, category="")
    assert measure.latency_samples == 60 and measure.p95_latency_ms == pytest.approx(3000.0, rel=0.02)
    assert plan.start == 1
    assert plan.decision()["skipped"] == [{"tier": 0, "model": cheap.name, "reason": "latency_budget"}]


def test_quality_is_measured_per_category_from_labels() -> None:
    cheap, _ = replay_endpoints()
    for label in (1.0, 1.0, 0.0, 1.0):
        RequestRecordFactory.create(final_model=cheap.name, task_category="math", quality_label=label)
    RequestRecordFactory.create(final_model=cheap.name, task_category="faq", quality_label=0.0)

    assert measures_refresh() == 3

    by_category = {m.category: (m.quality, m.quality_samples) for m in EndpointMeasure.objects.filter(endpoint=cheap)}
    assert by_category == {"math": (0.75, 4), "faq": (0.0, 1), "": (0.6, 5)}


def test_a_second_run_replaces_the_figures() -> None:
    cheap, _ = replay_endpoints()
    RequestRecordFactory.create(final_model=cheap.name, task_category="math", quality_label=1.0)
    measures_refresh()
    RequestRecordFactory.create(final_model=cheap.name, task_category="math", quality_label=0.0)

    measures_refresh()

    assert EndpointMeasure.objects.get(endpoint=cheap, category="math").quality == 0.5
