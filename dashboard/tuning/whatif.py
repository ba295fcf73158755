"""What-if replay: stored traffic re-run under a candidate policy, without calling any model.

A policy's labelled requests in a window become the engine's `ReplayRow`s (one per request
that started on the cheapest tier), and `routing.engine.offline.replay` sweeps the
threshold. A candidate may change the threshold, the scorer (stored answers are scored
again) and the cheap and strongest tiers' prices; gaps are filled and counted as
docs/quality.md describes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from routing.choices import AttemptOutcome, RecordStatus, ScorerKind
from routing.config.snapshots import endpoint_snapshot
from routing.engine.costing import QUANTUM, attempt_cost
from routing.engine.offline.replay import ReplayRow, SweepPoint, routing_metrics, sweep
from routing.engine.ports import Scorer
from routing.engine.scoring import SCORERS
from routing.models import Policy, RequestAttempt, RequestRecord, ScorerVersion
from routing.quality.labels import best_label
from routing.quality.samples import sample_chat, sample_completion

RECORDED = "recorded"
# The sweep's thresholds: fine enough for a chart, and a bounded answer however many
# requests the window holds (the engine's default is one point per distinct score).
SWEEP_GRID = tuple(i / 100 for i in range(101))
Prices = tuple[Decimal, Decimal]  # (input, output) USD per 1M tokens


@dataclass(frozen=True)
class Candidate:
    """What to replay the traffic under; None keeps what the policy has now."""

    threshold: float | None = None
    scorer: str = RECORDED  # "recorded", a scorer name, "learned" (active) or "version:<id>"
    cheap_prices: Prices | None = None
    strong_prices: Prices | None = None


@dataclass
class Coverage:
    """How many requests of the window the replay used, and how the gaps were filled."""

    in_window: int = 0
    replayed: int = 0
    rescored: int = 0
    strong_quality_imputed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass(frozen=True)
class LabelledRows:
    """Replay rows and the request each came from (for splitting), with their coverage."""

    rows: list[ReplayRow]
    record_ids: list[str]
    coverage: Coverage
    categories: list[str] = field(default_factory=list)  # each request's task category


@dataclass(frozen=True)
class _Partial:
    record_id: str
    category: str
    score: float | None
    cheap_quality: float
    strong_quality: float | None
    cheap_cost: Decimal
    strong_cost: Decimal


def whatif_replay(
    *, policy: Policy, since: datetime | None = None, until: datetime | None = None, candidate: Candidate
) -> dict[str, Any]:
    """The candidate's outcome on the window's traffic, the current threshold's, and the sweep."""
    until = until or timezone.now()
    since = since or until - timedelta(days=7)
    endpoints = tier_endpoints(policy)
    labelled = replay_rows(policy=policy, since=since, until=until, candidate=candidate, endpoints=endpoints)
    current = endpoints["cheap_threshold"]
    threshold = current if candidate.threshold is None else candidate.threshold
    points = sweep(labelled.rows, [*SWEEP_GRID, threshold, current])
    return {
        "policy": {"id": policy.id, "name": policy.name, "version": policy.version},
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "candidate": candidate_json(candidate, threshold),
        "requests": asdict(labelled.coverage),
        "result": _point_at(labelled.rows, threshold),
        "current": _point_at(labelled.rows, current),
        "metrics": _metrics(labelled.rows, points),
        "sweep": [point_json(p) for p in points],
    }


def replay_rows(
    *,
    policy: Policy,
    since: datetime,
    until: datetime,
    candidate: Candidate,
    rescored_only: bool = False,
    endpoints: dict[str, Any] | None = None,
) -> LabelledRows:
    """The window's labelled requests as replay rows, scored and priced as `candidate` says.

    `rescored_only` leaves out the requests whose answer the candidate's scorer could
    not score again (no stored text), so no row mixes two scorers' scores.
    """
    scorer = candidate_scorer(policy, candidate.scorer)
    endpoints = endpoints or tier_endpoints(policy)
    coverage = Coverage()
    partials = []
    for record in window_records(policy=policy, since=since, until=until):
        coverage.in_window += 1
        partial = _partial(record, scorer, endpoints, candidate, coverage, rescored_only)
        if partial is not None:
            partials.append(partial)
    rows = _complete(partials, coverage)
    coverage.replayed = len(rows)
    ids, categories = [p.record_id for p in partials], [p.category for p in partials]
    return LabelledRows(rows=rows, record_ids=ids, coverage=coverage, categories=categories)


def window_records(*, policy: Policy, since: datetime, until: datetime) -> Iterable[RequestRecord]:
    """The policy's answered requests in [since, until) with attempts, labels and sample: 4 queries."""
    return (
        RequestRecord.objects.filter(policy=policy, status=RecordStatus.ANSWERED, created__gte=since, created__lt=until)
        .select_related("sample")
        .prefetch_related("attempts", "labels")
        .order_by("created", "id")
    )


def _partial(
    record: RequestRecord,
    scorer: Scorer | None,
    endpoints: dict[str, Any],
    candidate: Candidate,
    coverage: Coverage,
    rescored_only: bool = False,
) -> _Partial | None:
    attempts = sorted(record.attempts.all(), key=lambda a: a.position)
    answered = [a for a in attempts if a.outcome in (AttemptOutcome.ACCEPTED, AttemptOutcome.ESCALATED)]
    if not answered or answered[0].tier != 0:
        coverage.skip("cheapest tier did not answer")
        return None
    cheap, strongest = answered[0], endpoints["strongest_position"]
    strong = next((a for a in answered if a.tier == strongest), None) if strongest > 0 else None
    label = best_label(record.labels.all())
    cheap_quality = label.value if label and record.final_tier == 0 else cheap.quality_label
    if cheap_quality is None:
        coverage.skip("cheap answer unlabelled")
        return None
    if rescored_only and not _rescorable(record, cheap):
        coverage.skip("no stored text to score again")
        return None
    strong_quality = label.value if label and record.final_tier == strongest else None
    if strong_quality is None and strong is not None:
        strong_quality = strong.quality_label
    return _Partial(
        record_id=str(record.id),
        category=record.task_category,
        score=_score(record, cheap, scorer, coverage),
        cheap_quality=cheap_quality,
        strong_quality=strong_quality,
        cheap_cost=_cost(cheap, endpoints["cheap"], candidate.cheap_prices),
        strong_cost=_strong_cost(record, cheap, strong, endpoints["strongest"], candidate.strong_prices),
    )


def _rescorable(record: RequestRecord, cheap: RequestAttempt) -> bool:
    sample = getattr(record, "sample", None)
    return sample is not None and sample.answer_tier == cheap.tier


def _score(record: RequestRecord, cheap: RequestAttempt, scorer: Scorer | None, coverage: Coverage) -> float | None:
    if scorer is not None and _rescorable(record, cheap):
        coverage.rescored += 1
        sample = record.sample
        return scorer.score(sample_chat(sample), sample_completion(sample), task=record.task_category)
    return cheap.score


def _cost(attempt: RequestAttempt, endpoint: Any, prices: Prices | None) -> Decimal:
    if prices is None:
        return attempt.cost
    return _priced(endpoint, prices, attempt.input_tokens, attempt.output_tokens)


def _strong_cost(
    record: RequestRecord, cheap: RequestAttempt, strong: RequestAttempt | None, endpoint: Any, prices: Prices | None
) -> Decimal:
    if strong is not None:
        return _cost(strong, endpoint, prices)
    if prices is None and record.baseline_cost > 0:
        return record.baseline_cost
    current = (endpoint.input_price_per_m, endpoint.output_price_per_m) if endpoint else (Decimal(0), Decimal(0))
    return _priced(endpoint, prices or current, cheap.input_tokens, cheap.output_tokens)


def _priced(endpoint: Any, prices: Prices, input_tokens: int, output_tokens: int) -> Decimal:
    if endpoint is None:
        total = input_tokens * prices[0] + output_tokens * prices[1]
        return (total / Decimal(1_000_000)).quantize(QUANTUM)
    priced = _replace_prices(endpoint, prices)
    return attempt_cost(priced, input_tokens, output_tokens)


def _replace_prices(endpoint: Any, prices: Prices) -> Any:
    return replace(endpoint, input_price_per_m=prices[0], output_price_per_m=prices[1], cached_input_price_per_m=None)


def _complete(partials: list[_Partial], coverage: Coverage) -> list[ReplayRow]:
    """Rows, with an unknown strongest quality filled by the window's mean (1.0 if none)."""
    known = [p.strong_quality for p in partials if p.strong_quality is not None]
    fill = sum(known) / len(known) if known else 1.0
    rows = []
    for p in partials:
        if p.strong_quality is None:
            coverage.strong_quality_imputed += 1
        rows.append(
            ReplayRow(
                score=p.score if p.score is not None else 0.0,
                cheap_quality=p.cheap_quality,
                strong_quality=fill if p.strong_quality is None else p.strong_quality,
                cheap_cost=p.cheap_cost,
                strong_cost=p.strong_cost,
            )
        )
    return rows


def candidate_scorer(policy: Policy, name: str) -> Scorer | None:
    """The scorer a candidate names; None keeps the recorded scores."""
    if name in ("", RECORDED):
        return None
    if name == ScorerKind.LEARNED or name.startswith("version:"):
        return _learned(policy, name)
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"Unknown scorer {name!r}.") from None


def _learned(policy: Policy, name: str) -> Scorer:
    from routing.engine.learned import LearnedModel, LearnedScorer

    versions = ScorerVersion.objects.filter(policy=policy, kind="learned")
    if name == ScorerKind.LEARNED:
        version = versions.filter(active=True).first()
    else:
        version = versions.filter(id=int(name.removeprefix("version:"))).first()
    if version is None:
        raise ValueError(f"No such learned scorer version for {policy}: {name!r}.")
    return LearnedScorer(LearnedModel.from_dict(version.model))


def tier_endpoints(policy: Policy) -> dict[str, Any]:
    """The cheapest and strongest tiers' endpoints, at current prices, and the cheapest's threshold."""
    tiers = list(policy.tiers.select_related("endpoint").prefetch_related("endpoint__prices").order_by("position"))
    if not tiers:
        return {"cheap": None, "strongest": None, "strongest_position": 0, "cheap_threshold": 0.0}
    at = timezone.now()
    return {
        "cheap_threshold": tiers[0].threshold,
        "cheap": endpoint_snapshot(tiers[0].endpoint, at),
        "strongest": endpoint_snapshot(tiers[-1].endpoint, at),
        "strongest_position": len(tiers) - 1,
    }


def _point_at(rows: list[ReplayRow], threshold: float) -> dict[str, Any] | None:
    return point_json(sweep(rows, [threshold])[0]) if rows else None


def _metrics(rows: list[ReplayRow], points: list[SweepPoint]) -> dict[str, Any] | None:
    if not rows:
        return None
    weak = sum(r.cheap_quality for r in rows) / len(rows)
    strong = sum(r.strong_quality for r in rows) / len(rows)
    metrics = routing_metrics(points, weak_quality=weak, strong_quality=strong)
    return {"weak_quality": weak, "strong_quality": strong, **{k: _json(v) for k, v in metrics.items()}}


def point_json(point: SweepPoint) -> dict[str, Any]:
    fields = {**asdict(point), "cost_per_request": point.cost_per_request.quantize(QUANTUM)}
    return {k: _json(v) for k, v in fields.items()}


def candidate_json(candidate: Candidate, threshold: float) -> dict[str, Any]:
    def prices(p: Prices | None) -> list[str] | None:
        return None if p is None else [str(p[0]), str(p[1])]

    return {
        "threshold": threshold,
        "scorer": candidate.scorer,
        "cheap_prices": prices(candidate.cheap_prices),
        "strong_prices": prices(candidate.strong_prices),
    }


def _json(value: Any) -> Any:
    # Money stays exact: a string, as the routing API's cost header and the REST API send it.
    if isinstance(value, Decimal):
        return str(value)
    # A figure the sweep never reaches is NaN, which JSON cannot carry: null.
    return None if isinstance(value, float) and math.isnan(value) else value


def whatif_figure(report: dict[str, Any]) -> dict[str, Any]:
    """A Plotly figure: quality against cost per request over the sweep, candidate and current marked."""
    sweep_points = report["sweep"]

    def per_request(point: dict[str, Any]) -> float:
        return float(point["cost_per_request"])

    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "threshold sweep",
            "x": [per_request(p) for p in sweep_points],
            "y": [p["quality"] for p in sweep_points],
            "text": [f"threshold {p['threshold']:.2f}, escalated {p['escalation_rate']:.0%}" for p in sweep_points],
            "hovertemplate": "%{text}<br>$%{x:.6f} per request<br>quality %{y:.3f}<extra></extra>",
        }
    ]
    for key, label, symbol in (("current", "current", "circle-open"), ("result", "candidate", "star")):
        point = report[key]
        if point is not None:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{label} ({point['threshold']:.2f})",
                    "x": [per_request(point)],
                    "y": [point["quality"]],
                    "marker": {"size": 14, "symbol": symbol},
                }
            )
    layout = {
        "xaxis": {"title": {"text": "cost per request (USD)"}},
        "yaxis": {"title": {"text": "quality"}, "range": [0, 1.02]},
        "margin": {"t": 30},
        "legend": {"orientation": "h", "x": 0, "y": 1.12},
    }
    return {"data": traces, "layout": layout}
