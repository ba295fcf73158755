"""Reads for the operator pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from routing.models import RequestRecord


@dataclass(frozen=True)
class TrafficSummary:
    requests: int
    escalated: int
    failed: int
    cost: Decimal

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.requests if self.requests else 0.0


def traffic_summary_get(*, hours: int = 24) -> TrafficSummary:
    """Totals over the last `hours`, in one query."""
    since = timezone.now() - timedelta(hours=hours)
    totals = RequestRecord.objects.filter(created__gte=since).aggregate(
        requests=Count("id"),
        escalated=Count("id", filter=Q(escalated=True)),
        failed=Count("id", filter=Q(status="failed")),
        cost=Sum("cost"),
    )
    return TrafficSummary(
        requests=totals["requests"],
        escalated=totals["escalated"],
        failed=totals["failed"],
        cost=totals["cost"] or Decimal(0),
    )
