"""The OpenAI-compatible routing API: native async views, no DRF, no config reads per request.

Shaped like healthchecks' `ping()`: authenticate, parse, run the cascade, make the record
durable, answer. Every failure becomes an OpenAI-format error; none is a bare 500.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from routing.api.openai import sse as streaming
from routing.api.openai.format import (
    degrade_headers,
    error_response,
    json_answer,
    model_object,
    openai_response,
    routing_headers,
    tiers_failed,
)
from routing.api.openai.parsing import parse_body, parse_chat_request, refuse_unknown
from routing.api.openai.planning import plan_request
from routing.cache.exact import HEADER as CACHE_HEADER
from routing.cache.exact import CacheHit
from routing.cache.lookup import DEFAULT_CONTROL, CacheControl, cache_control, cache_lookup, cache_store, hit_payload
from routing.choices import RecordStatus
from routing.config.snapshots import KeyInfo, config_cache
from routing.engine import run_cascade
from routing.engine.interrupted import CLIENT_GONE, interrupted_result, past_deadline
from routing.engine.types import Attempt, CascadeResult, ChatRequest, PolicySnapshot
from routing.exceptions import ApiError, InternalError, KeyInvalid, MethodNotAllowed, PolicyNotFound, RequestTooLarge
from routing.limits import failed_keys, ratelimit
from routing.limits.breakers import breaker_board
from routing.limits.budget_holds import CASCADE_DEADLINE_S, BudgetPlan, budget_hold
from routing.models import hash_api_key
from routing.records import recorder
from routing.records.payload import RecordPayload
from routing.records.refusals import refusal_record

logger = logging.getLogger(__name__)


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """POST /v1/chat/completions: answer from the cheapest tier that answers well."""
    started = time.perf_counter()
    key: KeyInfo | None = None
    chat: ChatRequest | None = None
    policy: PolicySnapshot | None = None
    try:
        if request.method != "POST":
            raise MethodNotAllowed("Use POST for /v1/chat/completions.")
        key = await authenticate(request)
        chat, model = parse_chat_request(parse_body(read_body(request)))
        policy = await plan_request(key, policy_for(key, model), chat)
        refuse_unknown(chat, policy)
        # Serving charges the key's rate limits: with its budget hold on a cache miss.
        ratelimit.forget_admission()
        serve = streaming.stream_route if chat.stream else route
        response = await serve(key, policy, chat, cache_control(request.headers))
        return ratelimit.with_headers(response, ratelimit.current_admission())
    except ApiError as exc:
        if key is not None:  # a refusal is counted against its key's team, app and policy
            await refusal_record(key=key, policy=policy, error=exc, chat=chat, started=started)
        return error_response(exc)
    except Exception:
        logger.exception("Unhandled error in chat_completions")
        return error_response(InternalError("The gateway failed to handle this request; it has been logged."))


async def list_models(request: HttpRequest) -> HttpResponse:
    """GET /v1/models: the policies this key may route through, as OpenAI model objects."""
    try:
        if request.method != "GET":
            raise MethodNotAllowed("Use GET for /v1/models.")
        key = await authenticate(request)
        policy = config_cache.policies_by_id.get(key.policy_id)
        data = [model_object(policy)] if policy else []
        return JsonResponse({"object": "list", "data": data})
    except ApiError as exc:
        return error_response(exc)
    except Exception:
        logger.exception("Unhandled error in list_models")
        return error_response(InternalError("The gateway failed to handle this request; it has been logged."))


async def route(
    key: KeyInfo, policy: PolicySnapshot, chat: ChatRequest, control: CacheControl = DEFAULT_CONTROL
) -> HttpResponse:
    request_id = uuid.uuid4()
    created = timezone.now()
    # Recorded against the policy as configured: its strongest tier is the baseline even
    # when a budget routed this request on the cheap tier alone.
    record = functools.partial(
        recorder.record_payload, request_id=request_id, created=created, key=key, policy=policy, chat=chat
    )
    # Before any budget hold: a hit costs nothing, so it reserves nothing.
    lookup = await cache_lookup(policy, chat, control)
    if lookup.hit is not None:
        await ratelimit.admit(key, policy, chat)
        return await answer_from_cache(request_id, created, policy, chat, lookup.hit, record)
    first_tier = config_cache.first_tier_for(policy, chat)
    budgets = config_cache.budgets_for(key, policy, chat.user)
    async with budget_hold(budgets, policy, chat, str(request_id), first_tier, key=key) as plan:
        result = await cascade_until_deadline(chat, plan, first_tier, record)
        # Recorded before the hold settles: whatever settling does, the spend is on record.
        await recorder.enqueue(record(result=result), settling=plan)
    if not result.answered:
        raise tiers_failed(result, str(request_id))
    await cache_store(lookup, policy, result, degraded=plan.degrade.any)
    headers = routing_headers(request_id, policy, result)
    headers[CACHE_HEADER] = lookup.status
    headers |= degrade_headers(plan.degrade)
    return json_answer(openai_response(request_id, created, result), headers)


async def answer_from_cache(
    request_id: uuid.UUID,
    created: Any,
    policy: PolicySnapshot,
    chat: ChatRequest,
    hit: CacheHit,
    record: Callable[..., RecordPayload],
) -> HttpResponse:
    """A cached answer: recorded at cost 0 with the cost it avoided; no budget, no provider."""
    result = hit.result()
    await recorder.enqueue(hit_payload(record(result=result), hit, chat))
    headers = routing_headers(request_id, policy, result) | hit.headers()
    return json_answer(openai_response(request_id, created, result), headers)


async def cascade_until_deadline(
    chat: ChatRequest, plan: BudgetPlan, first_tier: int | None, record: Callable[..., RecordPayload]
) -> CascadeResult:
    """Run the cascade, cut off at the deadline; sets what the budget hold settles to.

    A cascade cut off at the deadline is a failed request (504). One cancelled because
    the client went away is recorded here, as cancelled, before the cancellation goes on:
    its tiers were paid for even though nobody reads the answer.
    """
    done: list[Attempt] = []
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CASCADE_DEADLINE_S):
            result = await run_cascade(
                chat,
                plan.policy,
                config_cache.providers,
                config_cache.scorer_for(plan.policy),
                first_tier=first_tier,
                breakers=breaker_board(),
                progress=done,
            )
    except (asyncio.CancelledError, TimeoutError) as exc:
        cancelled = isinstance(exc, asyncio.CancelledError)
        result = interrupted_result(
            plan.policy,
            chat,
            done=done,
            first_tier=first_tier,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            reason=CLIENT_GONE if cancelled else past_deadline(CASCADE_DEADLINE_S),
            kind="cancelled" if cancelled else "timeout",
        )
        plan.actual = result.cost
        if not cancelled:
            return result
        await recorder.enqueue(record(result=result, status=RecordStatus.CANCELLED))
        raise
    plan.actual = result.cost
    return result


async def authenticate(request: HttpRequest) -> KeyInfo:
    """The API key from `Authorization: Bearer …`, if it exists and may be used now.

    A client address with too many failed keys gets a 429 instead (`routing.limits.failed_keys`).
    """
    await config_cache.ensure_fresh()
    address = client_address(request)
    failed_keys.refuse_if_over(address)
    try:
        return await key_from_header(request)
    except KeyInvalid as exc:
        if exc.code != "missing_api_key":  # no key sent guesses none
            await failed_keys.failed_key(address)
        raise


def client_address(request: HttpRequest) -> str:
    """The client's address, as Django's `REMOTE_ADDR`: read from the ASGI scope where there is
    one, since building `META` would build Django's whole request for one value."""
    scope = getattr(request, "scope", None)
    if scope is None:
        return str(request.META.get("REMOTE_ADDR", ""))
    client = scope.get("client")
    return str(client[0]) if client else ""


async def key_from_header(request: HttpRequest) -> KeyInfo:
    plaintext = bearer_key(request.headers.get("Authorization", ""))
    key = await config_cache.key(hash_api_key(plaintext))
    if key is None:
        raise KeyInvalid(f"Incorrect API key provided: {plaintext[:6]}…{plaintext[-4:]}.")
    problem = key.problem()
    if problem:
        raise KeyInvalid(problem, code="revoked_api_key" if key.revoked else "expired_api_key")
    return key


# RFC 6750's token68 after exactly one space: no tab, no second header joined with a comma.
BEARER = re.compile(r"bearer ([A-Za-z0-9._~+/-]+=*)", re.IGNORECASE)


def bearer_key(header: str) -> str:
    """The key of an `Authorization: Bearer <key>` header; anything looser is a 401."""
    header = header.strip(" ")
    match = BEARER.fullmatch(header)
    if match is not None:
        return match.group(1)
    if header[:6].lower() == "bearer" and header[6:].strip():
        raise KeyInvalid(
            "The Authorization header must be exactly one 'Bearer <key>', with a single space and no other value."
        )
    raise KeyInvalid("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key")


def read_body(request: HttpRequest) -> bytes:
    limit = settings.CASCADEOPS_MAX_REQUEST_BYTES
    declared = request.headers.get("Content-Length", "")
    too_large = RequestTooLarge(f"The request body is larger than this gateway's limit of {limit} bytes.")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise too_large from exc
    if len(body) > limit:
        raise too_large
    return body


def policy_for(key: KeyInfo, model: str) -> PolicySnapshot:
    """The policy named in `model`, or the key's own when `model` is empty."""
    policy = config_cache.policies_by_id.get(key.policy_id)
    if policy is None:
        raise PolicyNotFound("This API key's policy is disabled or has no usable tiers.", param="model")
    if model and model != policy.name:
        raise PolicyNotFound(
            f"The model '{model}' does not exist or you do not have access to it. "
            f"This key routes through the policy '{policy.name}'.",
            param="model",
        )
    return policy
