"""Celery tasks for rollups: thin wrappers around their services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def rollups_prune() -> int:
    """Delete rollups past their retention (beat, daily)."""
    from dashboard.rollups.services import rollups_prune

    return rollups_prune()
