"""What selection needs from the database, as engine data: goal weights, measures, categories, ladders.

Loaded with the policies (`routing.config.snapshots.load_policies`) and put into each
`PolicySnapshot`; see docs/selection.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from routing.engine import embeddings
from routing.engine.selection_data import DEFAULT_WEIGHTS, CategorySnapshot, GoalWeights, Measure
from routing.engine.types import EndpointSnapshot, PolicySnapshot, Tier
from routing.models import EndpointMeasure, ModelEndpoint, Policy, TaskCategory
from routing.models import GoalWeights as GoalWeightsRow

# What load_policies prefetches for the ladders.
LADDER_PREFETCH = (
    "ladders__category",
    "ladders__tiers__endpoint__prices",
    "ladders__tiers__endpoint__fallback_endpoint__prices",
)


@dataclass(frozen=True, slots=True)
class SelectionInputs:
    """The parts every policy shares: weights by goal, measures, categories."""

    weights: Mapping[str, GoalWeights]
    measures: Mapping[tuple[int, str], Measure]
    categories: tuple[CategorySnapshot, ...]


def selection_inputs_load() -> SelectionInputs:
    """Weights, measures and enabled categories, read once for every policy."""
    weights = dict(DEFAULT_WEIGHTS)
    for row in GoalWeightsRow.objects.all():
        weights[row.goal] = GoalWeights(row.cost, row.quality, row.latency, row.fit)
    measures = {
        (row.endpoint_id, row.category): Measure(
            row.p95_latency_ms, row.latency_samples, row.quality, row.quality_samples
        )
        for row in EndpointMeasure.objects.all()
    }
    categories = tuple(category_snapshot(row) for row in TaskCategory.objects.filter(enabled=True))
    return SelectionInputs(MappingProxyType(weights), MappingProxyType(measures), categories)


def category_snapshot(row: TaskCategory) -> CategorySnapshot:
    examples = lines(row.examples)
    return CategorySnapshot(
        name=row.name,
        position=row.position,
        keywords=lines(row.keywords),
        patterns=lines(row.patterns),
        examples=examples,
        similarity_threshold=row.similarity_threshold,
        # Embedded once here, not per request: the examples change only when an operator saves.
        example_vectors=embeddings.embed(examples) if examples else None,
    )


def lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


EndpointOf = Callable[[ModelEndpoint, datetime], EndpointSnapshot]


def with_selection(
    snapshot: PolicySnapshot, policy: Policy, inputs: SelectionInputs, at: datetime, endpoint_of: EndpointOf
) -> PolicySnapshot:
    """`snapshot` with its goal's weights, its latency budget, the measures, categories and its ladders."""
    return dataclasses.replace(
        snapshot,
        weights=inputs.weights.get(policy.optimisation_goal, DEFAULT_WEIGHTS["balanced"]),
        latency_budget_ms=policy.latency_budget_ms,
        measures=inputs.measures,
        categories=inputs.categories,
        ladders=MappingProxyType(ladders_of(policy, at, endpoint_of)),
    )


def ladders_of(policy: Policy, at: datetime, endpoint_of: EndpointOf) -> dict[str, tuple[Tier, ...]]:
    """Each category ladder of the policy with at least one enabled rung (prefetched)."""
    ladders = {}
    for ladder in policy.ladders.all():
        rungs = sorted(ladder.tiers.all(), key=lambda r: r.position)
        tiers = tuple(
            Tier(position=i, endpoint=endpoint_of(r.endpoint, at), threshold=r.threshold, max_tokens=r.max_tokens)
            for i, r in enumerate(r for r in rungs if r.endpoint.enabled)
        )
        if tiers and ladder.category.enabled:
            ladders[ladder.category.name] = tiers
    return ladders


def every_tier(policy: PolicySnapshot) -> tuple[Tier, ...]:
    """The policy's tiers and its ladders' rungs: every tier a request may be sent to."""
    return policy.tiers + tuple(tier for ladder in policy.ladders.values() for tier in ladder)
