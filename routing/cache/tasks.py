"""Celery tasks for the response cache: thin wrappers around its services."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def semantic_cache_verify(record_id: str, policy_id: int, check: dict[str, Any]) -> None:
    """Re-ask one semantic cache hit without the cache (queued after its record is stored)."""
    from routing.cache.verify import semantic_check_run

    semantic_check_run(record_id=record_id, policy_id=policy_id, check=check)
