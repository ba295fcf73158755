"""Celery tasks for routing: thin wrappers around module functions."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def flush_request_records() -> int:
    """Drain the durable record buffer into the database (beat, every 2 s)."""
    from routing.recorder import flush_pending

    total = 0
    while (flushed := flush_pending(limit=5_000)) > 0:
        total += flushed
    return total


@shared_task(acks_late=True, ignore_result=True)
def budget_alert_raise(budget_id: int, period_start: str, level: str, spent: str) -> None:
    """Record a budget crossing its soft limit or limit (sent once per process and period)."""
    from datetime import datetime
    from decimal import Decimal

    from billing.services import budget_alert_raise as raise_alert

    raise_alert(
        budget_id=budget_id, period_start=datetime.fromisoformat(period_start), level=level, spent=Decimal(spent)
    )


@shared_task(acks_late=True, ignore_result=True)
def shadow_evaluate(record_id: str) -> None:
    """Re-check one sampled cheap answer with the strongest tier (queued after the record is stored)."""
    from routing.shadow import shadow_evaluate as evaluate

    evaluate(record_id=record_id)


@shared_task(acks_late=True, ignore_result=True)
def semantic_cache_verify(record_id: str, policy_id: int, check: dict[str, Any]) -> None:
    """Re-ask one semantic cache hit without the cache (queued after its record is stored)."""
    from routing.semantic_cache import semantic_check_run

    semantic_check_run(record_id=record_id, policy_id=policy_id, check=check)
