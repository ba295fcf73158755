"""Writes to a policy's category ladders: each one is a change of the policy, so a new version.

A ladder (routing.models.categories) is part of its policy's stored versions; saving or
deleting one stores the policy again (`routing.policies.versions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Required, TypedDict

from django.core.exceptions import ValidationError
from django.db import transaction

from routing.models import CategoryLadder, LadderTier, ModelEndpoint, Policy, TaskCategory
from routing.policies.versions import policy_version_publish


class RungSpec(TypedDict, total=False):
    """One rung of a ladder as sent; cheapest first."""

    position: Required[int]
    endpoint: Required[ModelEndpoint]
    threshold: float
    max_tokens: int | None


def ladder_validate(rungs: Sequence[RungSpec]) -> None:
    problems = [] if rungs else ["A ladder needs at least one rung."]
    positions = [rung["position"] for rung in rungs]
    problems += [f"Two rungs share position {p}." for p in sorted({p for p in positions if positions.count(p) > 1})]
    disabled = [rung for rung in rungs if not rung["endpoint"].enabled]
    problems += [f"Rung {r['position']}: endpoint {r['endpoint'].name} is disabled." for r in disabled]
    if problems:
        raise ValidationError({"tiers": problems})


@transaction.atomic
def ladder_save(*, policy: Policy, category: TaskCategory, rungs: Sequence[RungSpec]) -> CategoryLadder:
    """Create or replace `policy`'s ladder for `category`; the policy gets a new version."""
    ladder_validate(rungs)
    ladder, _ = CategoryLadder.objects.get_or_create(policy=policy, category=category)
    ladder.tiers.all().delete()
    LadderTier.objects.bulk_create(LadderTier(ladder=ladder, **rung) for rung in rungs)
    policy_version_publish(policy=Policy.objects.select_for_update().get(pk=policy.pk))
    return ladder


@transaction.atomic
def ladder_delete(*, ladder: CategoryLadder) -> None:
    """Remove a ladder (its category's requests climb the policy's own tiers again): a new version."""
    policy = Policy.objects.select_for_update().get(pk=ladder.policy_id)
    ladder.delete()
    policy_version_publish(policy=policy)
