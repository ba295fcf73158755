"""Counts batched in the worker reach the shared files as prometheus_client would write them."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from routing import metrics


def samples_of(text: str, name: str, **labels: str) -> dict[str, float]:
    """Sample name → value for one labelled series of the exposition."""
    wanted = labels.items()
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith(name) and wanted <= s.labels.items() and "le" not in s.labels
    } | {
        f"{s.name}{{le={s.labels['le']}}}": s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith(name) and wanted <= s.labels.items() and "le" in s.labels
    }


def test_a_batched_observation_lands_in_the_bucket_prometheus_would_choose():
    buckets = metrics.LATENCY_BUCKETS_S
    reference = Histogram("cascadeops_test_reference", "", buckets=buckets, registry=CollectorRegistry())
    batched = Histogram("cascadeops_test_batched", "", buckets=buckets, registry=CollectorRegistry())
    # On a bound, just either side of it, past the last bound, and 0.
    amounts = [0.0, 0.0005, 0.00050001, 0.001, 0.0049999, 0.005, 60.0, 120.0, 500.0]

    for amount in amounts:
        reference.observe(amount)
        observed: metrics.Increments = []
        metrics._observe(observed, batched, amount)
        metrics._batch.add(observed)
    metrics.flush()

    assert [b.get() for b in batched._buckets] == [b.get() for b in reference._buckets]
    assert batched._sum.get() == reference._sum.get()


def test_counts_made_on_the_event_loop_are_in_the_next_exposition():
    route = "/v1/models"
    before = samples_of(metrics.exposition().decode(), "cascadeops_gateway_latency_seconds", route=route)

    async def serve_three() -> None:
        for seconds in (0.0004, 0.002, 0.002):
            metrics.http_observed(route, 200, seconds)

    asyncio.run(serve_three())
    after = samples_of(metrics.exposition().decode(), "cascadeops_gateway_latency_seconds", route=route)

    def delta(sample: str) -> float:
        return after.get(sample, 0.0) - before.get(sample, 0.0)

    assert delta("cascadeops_gateway_latency_seconds_count") == 3
    assert delta("cascadeops_gateway_latency_seconds_bucket{le=0.0005}") == 1
    assert delta("cascadeops_gateway_latency_seconds_bucket{le=0.0025}") == 3


def test_a_count_made_without_an_event_loop_is_written_at_once():
    policy = f"batch-{uuid.uuid4().hex[:8]}"

    metrics._batch.add([(metrics.escalations_by(policy)._value, 2.0)])

    assert not metrics._batch.pending
    assert samples_of(metrics.exposition().decode(), "cascadeops_escalations", policy=policy) == {
        "cascadeops_escalations_total": 2.0
    }
