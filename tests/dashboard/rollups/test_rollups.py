"""Rollups: built from stored records by the flusher, each record counted exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dashboard.live import selectors
from dashboard.models import Rollup, SpendRollup
from dashboard.rollups import services
from dashboard.rollups.compute import points_from_rows, totals_of
from routing.models import RequestRecord
from tests.dashboard.traffic import Traffic

T0 = datetime(2025, 3, 4, 10, 15, 30, tzinfo=UTC)


def rows(resolution: str = "minute") -> list[Rollup]:
    return list(Rollup.objects.filter(resolution=resolution).order_by("bucket", "tier"))


def test_stored_records_are_counted_per_minute_and_hour_per_tier_and_model(traffic):
    traffic.send(3, created=T0, latency_ms=100)
    traffic.send(1, created=T0.replace(second=59), escalated=True, cost="0.002", latency_ms=900)
    traffic.send(1, created=T0.replace(minute=16), failed=True)

    minute = rows("minute")
    assert [(r.bucket.minute, r.tier, r.model, r.requests) for r in minute] == [
        (15, 0, "replay-mixtral", 3),
        (15, 1, "replay-gpt-4", 1),
        (16, -1, "", 1),
    ]
    assert minute[1].escalated == 1 and minute[1].escalations == 1 and minute[1].cost == Decimal("0.002")
    assert minute[2].errors == 1
    hours = rows("hour")
    assert {r.bucket for r in hours} == {T0.replace(minute=0, second=0)}
    assert [(r.tier, r.requests) for r in hours] == [(-1, 1), (0, 3), (1, 1)]


def test_a_redelivered_batch_adds_nothing(traffic):
    batch = [traffic.payload(created=T0) for _ in range(4)]

    traffic.store(batch)
    traffic.store(batch)  # a flusher died after its commit, before its ack

    assert RequestRecord.objects.count() == 4
    assert sum(r.requests for r in rows("minute")) == 4
    assert sum(r.requests for r in rows("hour")) == 4


def test_batches_landing_in_one_minute_add_up_exactly(traffic):
    for _ in range(5):
        traffic.send(2, created=T0, cost="0.0000001234")

    [row] = rows("minute")
    assert row.requests == 10
    assert row.cost == Decimal("0.000001234")
    assert sum(row.latency.values()) == 10


def test_latency_percentiles_come_from_the_merged_sketches(traffic):
    for ms in range(1, 101):
        traffic.send(1, created=T0, latency_ms=ms * 10.0)

    totals = totals_of(points_from_rows(rows("minute")))

    assert totals.quantile(0.50) == pytest.approx(500, rel=0.02)
    assert totals.quantile(0.95) == pytest.approx(950, rel=0.02)
    assert totals.quantile(0.99) == pytest.approx(990, rel=0.02)


def test_scores_quality_labels_baseline_and_cache_hits_are_summed(traffic):
    traffic.store(
        [
            traffic.payload(created=T0, score=0.8, quality_label=1.0, baseline_cost="0.01", cache="exact"),
            traffic.payload(created=T0, score=0.6, quality_label=0.0, baseline_cost="0.03"),
            traffic.payload(created=T0, score=0.7, baseline_cost="0"),
        ]
    )

    totals = totals_of(points_from_rows(rows("minute")))
    assert totals.mean_score == pytest.approx(0.7)
    assert totals.mean_quality == pytest.approx(0.5)
    assert totals.quality_count == 2
    assert totals.baseline_cost == Decimal("0.04")
    assert totals.cache_hit_rate == pytest.approx(100 / 3)


def test_spend_is_rolled_up_per_app_and_end_user_within_the_policy_and_overall(traffic):
    traffic.send(2, created=T0, user="alice", cost="0.003")
    traffic.send(1, created=T0, user="bob", cost="0.001")
    traffic.send(1, created=T0, cost="0.5")  # no end user named

    day = T0.date()
    apps = selectors.top_spenders(day=day, scope=None, kind="app")
    users = selectors.top_spenders(day=day, scope=traffic.policy.id, kind="end_user")
    assert [(a.name, a.requests, a.cost) for a in apps] == [("growth/support-bot", 4, Decimal("0.507"))]
    assert [(u.name, u.requests, u.cost) for u in users] == [
        ("alice", 2, Decimal("0.006")),
        ("bob", 1, Decimal("0.001")),
    ]
    assert SpendRollup.objects.filter(scope=0).count() == 3


def test_a_failed_flush_rolls_the_rollups_back_with_the_records(traffic, monkeypatch):
    from dashboard.rollups import receivers

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(receivers.services, "rollups_record", broken)
    with pytest.raises(RuntimeError):
        traffic.send(2, created=T0)

    assert RequestRecord.objects.count() == 0
    assert Rollup.objects.count() == 0


def test_pruning_drops_minutes_after_their_retention_and_keeps_hours(traffic, settings):
    settings.CASCADEOPS_ROLLUP_MINUTE_RETENTION_DAYS = 1
    traffic.send(1, created=T0)

    services.rollups_prune(now=datetime(2025, 3, 6, tzinfo=UTC))

    assert not Rollup.objects.filter(resolution="minute").exists()
    assert Rollup.objects.filter(resolution="hour").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_flushers_adding_to_the_same_rows_lose_nothing():
    import threading

    from django.db import connection

    traffic = Traffic.for_new_policy()
    batches = [[traffic.payload(created=T0, user=f"user-{i % 3}") for _ in range(5)] for i in range(40)]
    errors: list[BaseException] = []

    def flusher(mine: list[list[dict]]) -> None:
        try:
            for batch in mine:
                traffic.store(batch)
        except BaseException as exc:  # pragma: no cover  (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=flusher, args=(batches[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [(r.requests, sum(r.latency.values())) for r in rows("minute")] == [(200, 200)]
    assert rows("hour")[0].requests == 200
    assert sum(s.requests for s in SpendRollup.objects.filter(scope=0, kind="end_user")) == 200
