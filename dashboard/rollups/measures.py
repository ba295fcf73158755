"""What traffic measured about each endpoint, written where selection reads it (`routing.EndpointMeasure`).

Latency: the p95 of the last hour's minute rollups of the requests each endpoint answered
(merged latency sketches; a request's latency, which for an escalated one includes the
cheaper tiers it tried first). Quality: the mean quality label of the last week's records
each endpoint answered, per task category and over all of them. Run by beat every few
minutes; safe to run twice (it overwrites). See docs/selection.md#measures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Avg, Count
from django.utils import timezone

from dashboard.choices import Resolution
from dashboard.models import Rollup
from dashboard.rollups.sketch import Sketch, sketch_count, sketch_merge, sketch_quantile
from routing.config import version as config_version
from routing.models import EndpointMeasure, ModelEndpoint, RequestRecord

LATENCY_WINDOW = timedelta(hours=1)
QUALITY_WINDOW = timedelta(days=7)

Figures = dict[tuple[int, str], dict[str, float | int | None]]


def measures_refresh(*, now: datetime | None = None) -> int:
    """Replace every endpoint's measures with the current ones; how many rows were written."""
    now = now or timezone.now()
    endpoints = dict(ModelEndpoint.objects.values_list("name", "id"))
    figures: Figures = {}
    for name, (p95, samples) in latency_by_model(now - LATENCY_WINDOW).items():
        if name in endpoints:
            figures.setdefault((endpoints[name], ""), {}).update(p95_latency_ms=p95, latency_samples=samples)
    for (name, category), (mean, samples) in quality_by_model(now - QUALITY_WINDOW).items():
        if name in endpoints:
            figures.setdefault((endpoints[name], category), {}).update(quality=mean, quality_samples=samples)
    return measures_write(figures)


def latency_by_model(since: datetime) -> dict[str, tuple[float | None, int]]:
    sketches: dict[str, Sketch] = {}
    rows = Rollup.objects.filter(resolution=Resolution.MINUTE, bucket__gte=since, tier__gte=0).exclude(model="")
    for model, latency in rows.values_list("model", "latency"):
        sketch_merge(sketches.setdefault(model, {}), latency)
    return {model: (sketch_quantile(s, 0.95), sketch_count(s)) for model, s in sketches.items()}


def quality_by_model(since: datetime) -> dict[tuple[str, str], tuple[float, int]]:
    """(endpoint name, category) → (mean label, labels); category "" is over every category."""
    labelled = RequestRecord.objects.filter(created__gte=since, quality_label__isnull=False).exclude(final_model="")
    per_category = labelled.values("final_model", "task_category").annotate(mean=Avg("quality_label"), n=Count("id"))
    overall = labelled.values("final_model").annotate(mean=Avg("quality_label"), n=Count("id"))
    figures = {(r["final_model"], r["task_category"]): (r["mean"], r["n"]) for r in per_category}
    return figures | {(r["final_model"], ""): (r["mean"], r["n"]) for r in overall}


@transaction.atomic
def measures_write(figures: Figures) -> int:
    """Every measure row replaced at once, so selection never reads half of an update."""
    EndpointMeasure.objects.all().delete()
    EndpointMeasure.objects.bulk_create(
        EndpointMeasure(endpoint_id=endpoint_id, category=category, **values)
        for (endpoint_id, category), values in figures.items()
    )
    # bulk_create sends no post_save: move the config version so workers load the new figures.
    config_version.bump_on_commit()
    return len(figures)
