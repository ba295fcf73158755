"""The semantic cache's measured false-hit rate per policy: the dashboard panel's data.

A share of semantic cache hits is re-asked to the model (`routing.cache.semantic`); each
re-asked hit is a `SemanticCacheCheck`, and one whose fresh answer disagreed is a false
hit; one without a verdict (every tier failed) counts in the spend, not in the rate.
Read from the checks alone, in one query: never from the request records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Q, Sum

from routing.models import SemanticCacheCheck


@dataclass(frozen=True)
class FalseHitRate:
    """One policy's checked semantic hits in a window."""

    policy_id: int
    policy_name: str
    checks: int
    false_hits: int
    fresh_cost: Decimal

    @property
    def rate(self) -> float | None:
        """False hits as a percentage of the checked hits."""
        return 100.0 * self.false_hits / self.checks if self.checks else None


def semantic_false_hits_get(*, policy_id: int | None, since: datetime) -> list[FalseHitRate]:
    """Per policy (one, or every one that had checks), the checks made since `since`."""
    checks = SemanticCacheCheck.objects.filter(created__gte=since)
    if policy_id is not None:
        checks = checks.filter(policy_id=policy_id)
    rows = (
        checks.values("policy_id", "policy__name")
        .annotate(
            checks=Count("id", filter=Q(agreed__isnull=False)),
            false_hits=Count("id", filter=Q(agreed=False)),
            fresh_cost=Sum("fresh_cost"),
        )
        .order_by("policy__name")
    )
    return [
        FalseHitRate(
            policy_id=row["policy_id"],
            policy_name=row["policy__name"],
            checks=row["checks"],
            false_hits=row["false_hits"],
            fresh_cost=row["fresh_cost"] or Decimal(0),
        )
        for row in rows
    ]
