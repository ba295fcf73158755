"""Celery tasks for the quality loop: thin wrappers around its services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def shadow_evaluate(record_id: str) -> None:
    """Re-check one sampled cheap answer with the strongest tier (queued after the record is stored)."""
    from routing.quality.shadow import shadow_evaluate as evaluate

    evaluate(record_id=record_id)


@shared_task(acks_late=True, ignore_result=True)
def scorers_retrain() -> None:
    """Retrain the learned scorer of every policy with enough new labels (beat, hourly)."""
    from routing.quality.learning import scorers_retrain_all

    scorers_retrain_all()
