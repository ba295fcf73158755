"""Celery tasks for request records: thin wrappers around the flusher."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def flush_request_records() -> int:
    """Drain the durable record buffer into the database (beat, every 2 s)."""
    from routing.records.flush import flush_pending

    total = 0
    while (flushed := flush_pending(limit=5_000)) > 0:
        total += flushed
    return total


@shared_task(acks_late=True, ignore_result=True)
def request_texts_purge() -> int:
    """Delete kept prompts and answers past their policy's retention (beat, daily)."""
    from django.conf import settings
    from django.utils import timezone

    from routing.records.texts import request_texts_purge as purge

    return purge(now=timezone.now(), default_retention_days=settings.CASCADEOPS_TEXT_RETENTION_DAYS)
