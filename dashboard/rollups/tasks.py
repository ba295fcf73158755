"""Celery tasks for rollups: thin wrappers around their services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def rollups_prune() -> int:
    """Delete rollups past their retention (beat, daily)."""
    from dashboard.rollups.services import rollups_prune

    return rollups_prune()


@shared_task(acks_late=True, ignore_result=True)
def measures_refresh() -> int:
    """Endpoints' measured p95 latency and quality, for selection (beat, every 5 minutes)."""
    from dashboard.rollups.measures import measures_refresh

    return measures_refresh()
