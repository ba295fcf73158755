"""Refused requests on record: turned away before any model was called.

A budget's or a rate limit's 429, or bad input (400, 404, 405, 413) from a known API key:
the record (status `refused`, nothing spent, no attempts) says who was refused, when and
why, so the dashboard counts refusals by reason beside the routed requests. A request
without a valid key has no team, app or policy to count it against; `/metrics` counts
those (`cascadeops_http_responses_total`). See docs/records.md.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.utils import timezone

from routing.choices import RecordStatus
from routing.config.snapshots import KeyInfo, config_cache
from routing.engine.types import ChatRequest, PolicySnapshot
from routing.exceptions import ApiError
from routing.records import recorder
from routing.records.payload import RecordPayload


def is_refusal(error: ApiError) -> bool:
    """A 4xx: the gateway turned the request away (a 5xx was routed, and is on record)."""
    return 400 <= error.status < 500


def refusal_reason(error: ApiError) -> str:
    """`429 budget_exceeded`, `400 invalid_request`, …: the status and the error's code."""
    return f"{error.status} {error.code or error.type}"


def refusal_payload(
    *,
    key: KeyInfo,
    policy: PolicySnapshot,
    error: ApiError,
    chat: ChatRequest | None,
    latency_ms: float,
) -> RecordPayload:
    """The record of a refused request: no tier, no tokens, no cost."""
    return {
        "id": str(uuid.uuid4()),
        "created": timezone.now().isoformat(),
        "api_key_id": key.id,
        "api_key_prefix": key.prefix,
        "team": key.team,
        "app": key.app,
        "end_user": chat.user if chat else "",
        "policy_id": policy.id,
        "policy_name": policy.name,
        "policy_version": policy.version,
        "task_category": "",
        "status": RecordStatus.REFUSED.value,
        "final_tier": None,
        "final_model": "",
        "escalations": 0,
        "escalated": False,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": "0",
        "baseline_cost": "0",
        "latency_ms": round(latency_ms, 3),
        "score": None,
        "quality_label": None,
        "error": f"{refusal_reason(error)}: {error.message}",
        "metadata": dict(chat.metadata) if chat else {},
        "streamed": False,
        "cache": "",
        "cost_avoided": "0",
        "sample": None,
        "attempts": [],
        "refusal": {"status": error.status, "code": str(error.code or error.type)},
    }


async def refusal_record(
    *, key: KeyInfo, policy: PolicySnapshot | None, error: ApiError, chat: ChatRequest | None, started: float
) -> None:
    """Put a refused request on record, against `policy` or else the key's own policy."""
    policy = policy or config_cache.policies_by_id.get(key.policy_id)
    if policy is None or not is_refusal(error):
        return
    latency_ms = (time.perf_counter() - started) * 1000.0
    await recorder.enqueue(refusal_payload(key=key, policy=policy, error=error, chat=chat, latency_ms=latency_ms))


def refusal_of(payload: RecordPayload | dict[str, Any]) -> str | None:
    """The reason a stored record was refused (`429 budget_exceeded`), or None if it was routed."""
    refusal = payload.get("refusal")
    if payload.get("status") != RecordStatus.REFUSED or not refusal:
        return None
    return f"{refusal['status']} {refusal['code']}"
