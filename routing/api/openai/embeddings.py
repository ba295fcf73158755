"""POST /v1/embeddings: one call to the policy's embeddings endpoint, no cascade.

The request goes through what a chat request goes through: the key, the rate limits, the
budgets (a hold of the worst case, settled at the cost), a record with one attempt and the
ledger. It is priced per input token at the endpoint's input price. See docs/api.md.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from routing.api.openai.format import error_response
from routing.api.openai.parsing import MAX_USER, UNKNOWN_PASS, parse_body
from routing.api.openai.views import authenticate, policy_for, read_body
from routing.config.snapshots import KeyInfo, config_cache
from routing.engine.costing import attempt_cost
from routing.engine.errors import ProviderError
from routing.engine.ports import EmbeddingsProvider
from routing.engine.types import (
    Attempt,
    CascadeResult,
    ChatRequest,
    Completion,
    Embeddings,
    EndpointSnapshot,
    Message,
    Outcome,
    PolicySnapshot,
    Tier,
)
from routing.exceptions import ApiError, InternalError, MethodNotAllowed, ParameterUnsupported, RequestInvalid
from routing.limits import ratelimit
from routing.limits.budget_holds import budget_hold
from routing.records import recorder

logger = logging.getLogger(__name__)

TASK = "embeddings"
MAX_INPUTS = 2048
MAX_DIMENSIONS = 16_384
FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


class EmbeddingsUnavailable(RequestInvalid):
    code = "embeddings_not_configured"


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    inputs: tuple[str, ...]
    model: str
    dimensions: int | None = None
    base64: bool = False
    user: str = ""


@csrf_exempt
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    """POST /v1/embeddings: the vectors of the inputs, from the key's policy's embeddings endpoint."""
    try:
        if request.method != "POST":
            raise MethodNotAllowed("Use POST for /v1/embeddings.")
        key = await authenticate(request)
        data = parse_body(read_body(request))
        ask = parse_embeddings_request(data)
        policy = policy_for(key, ask.model)
        refuse_unknown_fields(data, policy)
        routed = embeddings_policy(policy)
        chat = as_chat(ask)
        admission = await ratelimit.admit(key, routed, chat)
        return ratelimit.with_headers(await embed_route(key, routed, ask, chat), admission)
    except ApiError as exc:
        return error_response(exc)
    except Exception:
        logger.exception("Unhandled error in embeddings")
        return error_response(InternalError("The gateway failed to handle this request; it has been logged."))


def parse_embeddings_request(data: dict[str, Any]) -> EmbeddingsRequest:
    model = data.get("model", "")
    if not isinstance(model, str):
        raise RequestInvalid("'model' must be a string.", param="model")
    return EmbeddingsRequest(
        inputs=_inputs(data.get("input")),
        model=model,
        dimensions=_dimensions(data.get("dimensions")),
        base64=_encoding(data.get("encoding_format")),
        user=_user(data.get("user")),
    )


def _inputs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, int | list) for v in value):
        raise ParameterUnsupported("'input' as token ids is not supported: send the text.", param="input")
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        raise RequestInvalid(f"'input' must be a string or an array of 1 to {MAX_INPUTS} strings.", param="input")
    for i, text in enumerate(value):
        if not isinstance(text, str) or not text:
            raise RequestInvalid(f"'input[{i}]' must be a non-empty string.", param=f"input[{i}]")
    return tuple(text.replace("\x00", "") for text in value)


def _dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSIONS:
        raise RequestInvalid(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.", param="dimensions")
    return value


def _encoding(value: Any) -> bool:
    if value not in (None, "float", "base64"):
        raise RequestInvalid("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    return bool(value == "base64")


def _user(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_USER or "\x00" in value:
        raise RequestInvalid(f"'user' must be a string of at most {MAX_USER} characters.", param="user")
    return value


def refuse_unknown_fields(data: dict[str, Any], policy: PolicySnapshot) -> None:
    unknown = [name for name in data if name not in FIELDS]
    if unknown and policy.unknown_fields != UNKNOWN_PASS:
        raise ParameterUnsupported(f"Unrecognized request argument supplied: '{unknown[0]}'.", param=unknown[0])


def embeddings_policy(policy: PolicySnapshot) -> PolicySnapshot:
    """The policy as its embeddings requests see it: one tier, the embeddings endpoint.

    Budgets, rate limits and records then count it as they count a cascade of one tier.
    """
    if policy.embeddings is None:
        raise EmbeddingsUnavailable(
            f"The policy '{policy.name}' has no embeddings endpoint; an operator can set one.", param="model"
        )
    tier = Tier(position=0, endpoint=policy.embeddings, threshold=0.0, max_tokens=1)
    return dataclasses.replace(policy, tiers=(tier,), task_rules=(), short_prompt_tokens=0, tools_first_tier=None)


def as_chat(ask: EmbeddingsRequest) -> ChatRequest:
    """The inputs as a request the limits and budgets can price: input tokens, no output."""
    return ChatRequest(messages=tuple(Message("user", text) for text in ask.inputs), max_tokens=1, user=ask.user)


async def embed_route(key: KeyInfo, policy: PolicySnapshot, ask: EmbeddingsRequest, chat: ChatRequest) -> HttpResponse:
    request_id, created = uuid.uuid4(), timezone.now()
    endpoint = policy.tiers[0].endpoint
    budgets = config_cache.budgets_for(key, policy, ask.user)
    async with budget_hold(budgets, policy, chat, str(request_id), 0) as plan:
        result, vectors = await embed_once(endpoint, ask)
        plan.actual = result.cost
        payload = recorder.record_payload(
            request_id=request_id, created=created, key=key, policy=policy, chat=chat, result=result
        )
        await recorder.enqueue(payload, settling=plan)
    final = result.final
    if final is None or vectors is None:
        failed = result.attempts[0]
        raise EmbeddingsFailed(f"The embeddings endpoint failed: {failed.error_kind}: {failed.error}")
    headers = {"x-request-id": str(request_id), "x-cascadeops-request-id": str(request_id)}
    headers |= {"x-cascadeops-model": endpoint.name, "x-cascadeops-cost-usd": str(result.cost)}
    return JsonResponse(embeddings_body(vectors, ask, final.input_tokens), headers=headers)


class EmbeddingsFailed(ApiError):
    status = 502
    type = "upstream_error"
    code = "embeddings_failed"


async def embed_once(endpoint: EndpointSnapshot, ask: EmbeddingsRequest) -> tuple[CascadeResult, Embeddings | None]:
    """One call; its attempt (answered or failed) and the vectors when there are some."""
    provider = config_cache.providers.get(endpoint.id)
    started = time.perf_counter()
    try:
        if not isinstance(provider, EmbeddingsProvider):
            raise ProviderError(f"{endpoint.name}: this kind of endpoint cannot embed")
        answer = await provider.embed(ask.inputs, dimensions=ask.dimensions)
    except ProviderError as exc:
        attempt = embed_attempt(endpoint, 0, (time.perf_counter() - started) * 1000, Outcome.FAILED, exc)
        return CascadeResult(task=TASK, attempts=(attempt,), latency_ms=attempt.latency_ms), None
    attempt = embed_attempt(endpoint, answer.input_tokens, answer.latency_ms, Outcome.ACCEPTED)
    completion = Completion(
        text="", finish_reason="stop", input_tokens=answer.input_tokens, output_tokens=0, latency_ms=answer.latency_ms
    )
    return CascadeResult(
        task=TASK, attempts=(attempt,), completion=completion, latency_ms=answer.latency_ms
    ), dataclasses.replace(answer, model=answer.model or endpoint.model_id)


def embed_attempt(
    endpoint: EndpointSnapshot, tokens: int, latency_ms: float, outcome: Outcome, exc: ProviderError | None = None
) -> Attempt:
    return Attempt(
        tier=0,
        endpoint_id=endpoint.id,
        model=endpoint.name,
        outcome=outcome,
        input_tokens=tokens,
        cost=attempt_cost(endpoint, tokens, 0, 0),
        price_version=endpoint.price_version,
        latency_ms=latency_ms,
        error="" if exc is None else str(exc),
        error_kind="" if exc is None else exc.kind,
    )


def embeddings_body(answer: Embeddings, ask: EmbeddingsRequest, tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encoded(vector, ask.base64)}
            for i, vector in enumerate(answer.vectors)
        ],
        "model": answer.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def encoded(vector: Sequence[float], as_base64: bool) -> list[float] | str:
    """As OpenAI sends it: floats, or little-endian float32s in base64 (what the `openai` client asks for)."""
    if not as_base64:
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
