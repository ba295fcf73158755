"""Verification of semantic hits: a share is re-asked without the cache and the answers compared. See docs/cache.md."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction

from billing.budgets.rules import BudgetRule
from routing.cache.exact import CacheHit
from routing.engine import embeddings, run_cascade
from routing.engine.interrupted import interrupted_result, past_deadline
from routing.engine.ports import Provider
from routing.engine.scoring import final_number
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Message, PolicySnapshot
from routing.exceptions import BudgetExceeded, BudgetUnavailable
from routing.limits.budget_holds import CASCADE_DEADLINE_S, budget_hold, settle_retries_finished
from routing.models import RequestRecord, SemanticCacheCheck
from routing.quality.spend import ChecksPaused, check_budgets, check_ledger_append, checks_allowed
from routing.records.ledger import CheckCall
from routing.records.payload import RecordPayload

logger = logging.getLogger(__name__)

ANSWERS_AGREE_AT = 0.9


def check_payload(hit: CacheHit, chat: ChatRequest) -> dict[str, Any]:
    """What re-asking needs, carried by the hit's record payload to the flusher."""
    return {
        "similarity": hit.similarity,
        "answer": hit.answer.text,
        "request": {
            "messages": [[m.role, m.content] for m in chat.messages],
            "max_tokens": chat.max_tokens,
            "temperature": chat.temperature,
            "logprobs": chat.logprobs,
        },
    }


def semantic_checks_schedule(sender: Any, *, payloads: list[RecordPayload], **kwargs: Any) -> None:
    """`records_stored` receiver: queue the checks of the hits stored just now, after commit."""
    checks = [(p["id"], p["policy_id"], p["semantic_check"]) for p in payloads if p.get("semantic_check")]
    if checks:
        # Robust: a broker that is down must not fail the flusher after its commit.
        transaction.on_commit(lambda: _enqueue(checks), robust=True)


def _enqueue(checks: list[tuple[str, int, dict[str, Any]]]) -> None:
    from routing.cache.tasks import semantic_cache_verify as semantic_cache_verify_task

    for record_id, policy_id, check in checks:
        semantic_cache_verify_task.delay(record_id, policy_id, check)


def semantic_check_run(*, record_id: str, policy_id: int, check: dict[str, Any]) -> SemanticCacheCheck | None:
    """Re-ask one semantic hit's request without the cache and store whether it agreed.

    The re-ask is spend (`routing.quality.spend`): it runs under a hold on the hit's
    budgets and its calls go on the ledger with the check, also when it reached no
    verdict (every tier failed, or no embeddings to compare prose). None when it was
    checked already (a redelivered task), when the policy or the record is gone, or when
    the budgets cannot cover it or degrade the hit's routing.
    """
    from routing.config.snapshots import load_policies

    if SemanticCacheCheck.objects.filter(record_id=uuid.UUID(record_id)).exists():
        return None
    policy = next((p for p in load_policies() if p.id == policy_id), None)
    record = RequestRecord.objects.filter(id=uuid.UUID(record_id)).first()
    if policy is None or record is None:
        logger.info("Semantic check of %s skipped: its policy or record is gone", record_id)
        return None
    try:
        result = async_to_sync(fresh_answer)(
            policy, chat_of(check["request"]), check_budgets(record), f"semantic-check:{record_id}:{uuid.uuid4().hex}"
        )
    except (BudgetExceeded, BudgetUnavailable, ChecksPaused) as exc:
        logger.info("Semantic check of %s skipped: %s", record_id, exc)
        return None
    return _check_store(record, policy_id, check, result)


def _check_store(
    record: RequestRecord, policy_id: int, check: dict[str, Any], result: CascadeResult
) -> SemanticCacheCheck | None:
    agreed = None
    if result.completion is None:
        logger.warning("Semantic check of %s: every tier failed, no verdict", record.id)
    else:
        agreed = answers_agree(check["answer"], result.completion.text)
        if agreed is None:
            logger.warning("Semantic check of %s: no embeddings to compare the answers", record.id)
    calls = [CheckCall.of_attempt(a) for a in result.attempts]
    try:
        with transaction.atomic():
            stored = SemanticCacheCheck.objects.create(
                record=record,
                policy_id=policy_id,
                similarity=check["similarity"],
                agreed=agreed,
                fresh_cost=result.cost,
                fresh_calls=[c.as_dict() for c in calls],
            )
            check_ledger_append(record, calls, stored.created)
    except IntegrityError:
        return None  # another delivery of the same task stored it first
    return stored


def chat_of(request: dict[str, Any]) -> ChatRequest:
    return ChatRequest(
        messages=tuple(Message(role=role, content=content) for role, content in request["messages"]),
        max_tokens=request["max_tokens"],
        temperature=request["temperature"],
        logprobs=request["logprobs"],
    )


async def fresh_answer(
    policy: PolicySnapshot, chat: ChatRequest, budgets: list[BudgetRule], hold_id: str
) -> CascadeResult:
    """The policy's answer now, without any cache, from providers of its own, under `budgets`."""
    from routing.providers import build_provider

    endpoints = {t.endpoint.id: t.endpoint for t in policy.tiers}
    endpoints |= {e.fallback.id: e.fallback for e in list(endpoints.values()) if e.fallback is not None}
    providers: dict[int, Provider] = {i: build_provider(e) for i, e in endpoints.items()}
    try:
        async with budget_hold(budgets, policy, chat, hold_id) as plan:
            checks_allowed(plan.degrade)
            result = await _cascade_until_deadline(chat, plan.policy, providers)
            plan.actual = result.cost
        await settle_retries_finished()  # this loop ends with the task: retries cannot outlive it
        return result
    finally:
        await asyncio.gather(*(p.aclose() for p in providers.values()), return_exceptions=True)


async def _cascade_until_deadline(
    chat: ChatRequest, policy: PolicySnapshot, providers: dict[int, Provider]
) -> CascadeResult:
    """The cascade, cut off at the deadline (as a request's is) so it never outlives its hold."""
    from routing.config.snapshots import config_cache

    done: list[Attempt] = []
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CASCADE_DEADLINE_S):
            # A worker holds no learned scorer: "learned" policies score with the heuristic here.
            return await run_cascade(chat, policy, providers, config_cache.scorer_for(policy), progress=done)
    except TimeoutError:
        return interrupted_result(
            policy,
            chat,
            done=done,
            first_tier=None,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            reason=past_deadline(CASCADE_DEADLINE_S),
            kind="timeout",
        )


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .!?;:")


def answers_agree(cached: str, fresh: str) -> bool | None:
    """Whether a fresh answer agrees with the cached one (the rule is in docs/cache.md).

    None when the answers are prose and no embeddings are available to compare them.
    """
    if _normalised(cached) == _normalised(fresh):
        return True
    cached_number, fresh_number = final_number(cached), final_number(fresh)
    if cached_number is not None and fresh_number is not None:
        return math.isclose(cached_number, fresh_number, rel_tol=1e-9, abs_tol=1e-9)
    vectors = embeddings.embed([cached, fresh])
    if vectors is None:
        return None
    return float(vectors[0] @ vectors[1]) >= ANSWERS_AGREE_AT
