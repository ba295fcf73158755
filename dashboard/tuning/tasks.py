"""Celery tasks for auto-tuning: thin wrappers around its services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def tuning_propose() -> int:
    """Run auto-tuning for every policy whose tuning is on (beat, hourly by default)."""
    from dashboard.tuning.proposals import tuning_run_all

    return tuning_run_all()
