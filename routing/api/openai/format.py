"""Response shaping shared by whole and streamed answers: bodies, routing headers, errors."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.http import HttpResponse, JsonResponse

from billing.budgets.rules import Degrade
from routing.engine.types import CascadeResult, Completion, Outcome, PolicySnapshot, ToolCall
from routing.exceptions import ApiError, TiersFailed

logger = logging.getLogger(__name__)

# One encoder for every answer: `json.dumps` with options, or `JsonResponse` with Django's
# encoder, builds a new one per call, about a third of an answer's construction. ASCII, so
# a lone surrogate from an upstream is escaped rather than failing the encoding.
ANSWER_ENCODER = json.JSONEncoder(separators=(",", ":"))


def tiers_failed(result: CascadeResult, request_id: str) -> TiersFailed:
    reasons = "; ".join(f"tier {a.tier} ({a.model}): {a.error_kind}: {a.error}" for a in result.attempts)
    failed = [a for a in result.attempts if a.outcome is Outcome.FAILED]
    all_timeouts = bool(failed) and all(a.error_kind == "timeout" for a in failed)
    return TiersFailed(f"Every tier failed. {reasons}", request_id=request_id, all_timeouts=all_timeouts)


def openai_response(request_id: uuid.UUID, created: Any, result: CascadeResult) -> dict[str, Any]:
    completion = result.completion
    final = result.final
    assert completion is not None and final is not None
    return {
        "id": f"chatcmpl-{request_id.hex}",
        "object": "chat.completion",
        "created": int(created.timestamp()),
        # The provider's model id, as OpenAI answers it (client-side cost tracking reads it);
        # the routing headers name the endpoint.
        "model": completion.model or final.model,
        "choices": [
            {
                "index": 0,
                "message": answer_message(completion),
                "finish_reason": completion.finish_reason,
                "logprobs": logprobs_object(completion),
            }
        ],
        # The answering tier's usage, as OpenAI reports it; the cost header counts every tier.
        "usage": {
            "prompt_tokens": final.input_tokens,
            "completion_tokens": final.output_tokens,
            "total_tokens": final.input_tokens + final.output_tokens,
        },
        "system_fingerprint": completion.system_fingerprint,
    }


def answer_message(completion: Completion) -> dict[str, Any]:
    """The assistant message: its text (null beside tool calls without text, as OpenAI sends it) and tool calls."""
    if not completion.tool_calls:
        return {"role": "assistant", "content": completion.text}
    return {
        "role": "assistant",
        "content": completion.text or None,
        "tool_calls": [tool_call_object(call) for call in completion.tool_calls],
    }


def tool_call_object(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def logprobs_object(completion: Completion) -> dict[str, Any] | None:
    """The tokens' log-probabilities, when the caller asked for them and the provider sent them."""
    if completion.logprobs_content is None:
        return None
    return {"content": list(completion.logprobs_content), "refusal": None}


def routing_headers(request_id: uuid.UUID, policy: PolicySnapshot, result: CascadeResult) -> dict[str, str]:
    final = result.final
    assert final is not None
    headers = answer_headers(
        request_id, policy, task=result.task, model=final.model, tier=final.tier, escalated=result.escalated
    )
    headers["x-cascadeops-escalations"] = str(result.escalations)
    headers["x-cascadeops-attempts"] = str(len(result.attempts))
    headers["x-cascadeops-score"] = "" if final.score is None else f"{final.score:.4f}"
    headers["x-cascadeops-cost-usd"] = str(result.cost)
    return headers


def answer_headers(
    request_id: uuid.UUID, policy: PolicySnapshot, *, task: str, model: str, tier: int, escalated: bool
) -> dict[str, str]:
    """The routing headers every answer carries, whole or streamed."""
    return {
        "x-request-id": str(request_id),
        "x-cascadeops-request-id": str(request_id),
        "x-cascadeops-policy": f"{policy.name}@{policy.version}",
        "x-cascadeops-task": task,
        "x-cascadeops-model": model,
        "x-cascadeops-tier": str(tier),
        "x-cascadeops-escalated": "true" if escalated else "false",
    }


def degrade_headers(degrade: Degrade) -> dict[str, str]:
    """How the budgets changed the routing, when they did."""
    if not degrade.any:
        return {}
    return {"x-cascadeops-budget-degraded": "cheap-only" if degrade.cheap_only else "lower-threshold"}


def json_answer(data: dict[str, Any], headers: dict[str, str]) -> HttpResponse:
    """An answer's JSON body and headers, as `JsonResponse` would make them, in less time."""
    response = HttpResponse(ANSWER_ENCODER.encode(data).encode(), content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def error_response(exc: ApiError) -> JsonResponse:
    return JsonResponse(exc.as_openai(), status=exc.status, headers=exc.headers())


def model_object(policy: PolicySnapshot) -> dict[str, Any]:
    return {
        "id": policy.name,
        "object": "model",
        "created": 0,
        "owned_by": "cascadeops",
        "tiers": [tier.endpoint.name for tier in policy.tiers],
        "version": policy.version,
    }
