"""Request records, off the answer path and never lost.

The hot path appends one JSON payload per request to a durable buffer before it answers (a
Redis stream in production, spool segments in embedded mode and as overflow); a flusher
moves batches into the database. A crashed flusher's batch goes to the next one and the
insert is idempotent, so a record may be delayed but is stored exactly once. See docs/records.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any, cast

from billing.budgets.store import RedisBudgetStore, budget_store
from common import redis as shared_redis
from common.redis import RedisUnavailable
from routing import metrics
from routing.config.snapshots import KeyInfo
from routing.engine.costing import baseline_cost
from routing.engine.types import CascadeResult, ChatRequest, PolicySnapshot
from routing.limits import ratelimit
from routing.limits.budget_holds import BudgetPlan
from routing.records.buffers import RedisStreamBuffer, SpoolBuffer, get_buffer, spool_buffer
from routing.records.payload import RecordPayload as Payload
from routing.records.sampling import sample_payload
from routing.records.texts import text_payload

logger = logging.getLogger(__name__)


def record_payload(
    *,
    request_id: uuid.UUID,
    created: datetime,
    key: KeyInfo,
    policy: PolicySnapshot,
    chat: ChatRequest,
    result: CascadeResult,
    status: str | None = None,
    streamed: bool = False,
) -> Payload:
    """Everything the record and its attempts need, as JSON-safe values (money as strings).

    `status` overrides the one the result implies (a cancelled request's); `streamed`
    says the answer went out as server-sent events.
    """
    final = result.final
    return {
        "id": str(request_id),
        "created": created.isoformat(),
        "api_key_id": key.id,
        "api_key_prefix": key.prefix,
        "team": key.team,
        "app": key.app,
        "end_user": chat.user,
        "policy_id": policy.id,
        "policy_name": policy.name,
        "policy_version": policy.version,
        "task_category": result.task,
        "status": status or ("answered" if result.answered else "failed"),
        "final_tier": final.tier if final else None,
        "final_model": final.model if final else "",
        "escalations": result.escalations,
        "escalated": result.escalated,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cost": str(result.cost),
        "baseline_cost": str(baseline_cost(policy, chat, result)),
        "latency_ms": round(result.latency_ms, 3),
        "score": final.score if final else None,
        "quality_label": final.quality_label if final else None,
        "error": "" if result.answered else "; ".join(f"tier {a.tier}: {a.error}" for a in result.attempts),
        "metadata": dict(chat.metadata),
        # Why it started where it did, and the experiment arm whose policy routed it.
        "selection": dict(policy.selection),
        "experiment_arm_id": policy.experiment_arm,
        "streamed": streamed,
        # A cache hit: "exact" or "semantic", and what the cached answer cost (routing.cache.exact).
        "cache": "",
        "cost_avoided": "0",
        # The prompt and answer text, for the requests the policy samples (routing.quality.samples).
        "sample": sample_payload(policy=policy, chat=chat, result=result),
        "text": text_payload(policy_id=policy.id, chat=chat, result=result),
        "attempts": [
            {
                "tier": a.tier,
                "endpoint_id": a.endpoint_id,
                "model": a.model,
                "outcome": str(a.outcome),
                "input_tokens": a.input_tokens,
                "output_tokens": a.output_tokens,
                "cached_input_tokens": a.cached_input_tokens,
                "cost": str(a.cost),
                "price_version": a.price_version,
                "latency_ms": round(a.latency_ms, 3),
                "score": a.score,
                "error": a.error,
                "error_kind": a.error_kind,
                "quality_label": a.quality_label,
            }
            for a in result.attempts
        ],
    }


async def enqueue(payload: Payload, settling: BudgetPlan | None = None) -> None:
    """Make the record durable; called by the hot path before it answers.

    `settling`: the request's budget plan, whose hold is settled (to `settling.actual`) in
    the same round trip to Redis as the record, after it. Shielded: a client that goes
    away cancels the task serving it, and neither that nor a second cancellation (a server
    shutting down) may lose the record of what was paid for.
    """
    await asyncio.shield(_make_durable(payload, settling))


async def _make_durable(payload: Payload, settling: BudgetPlan | None = None) -> None:
    buffer = get_buffer()
    if isinstance(buffer, RedisStreamBuffer) and await _appended_in_one_round_trip(buffer, payload, settling):
        metrics.record_observed(cast("dict[str, Any]", payload))
        return
    await _appended_step_by_step(payload)


async def _appended_in_one_round_trip(buffer: RedisStreamBuffer, payload: Payload, settling: BudgetPlan | None) -> bool:
    """Append the record, settle its budget hold and correct its token charge, in one pipeline.

    Whether the record is in the stream. Each step stays one atomic command (the settle and
    the correction are the same scripts as alone), run in this order; what the pipeline
    could not settle is left to the usual steps (the hold's own settle, `settle_recorded`).
    """
    pipe = shared_redis.async_client().pipeline(transaction=False)
    buffer.append_queued(pipe, payload)
    store = budget_store()
    plan = settling if settling is not None and not settling.settled else None
    if plan is not None and plan.hold is not None and isinstance(store, RedisBudgetStore):
        store.settle_queued(pipe, plan.hold, plan.actual)
    else:
        plan = None
    admission = ratelimit.current_admission()
    correcting = admission is not None and admission.settle_queued(pipe, ratelimit.used_tokens(payload))
    try:
        replies = await pipe.execute(raise_on_error=False)
    except Exception:
        if correcting and admission is not None:
            admission.queued_settle_failed()
        # Redis is away or failing over: the usual steps put the record in the spool and
        # settle the hold. Should the pipeline have run before the connection broke, the
        # record is stored once all the same (the insert is idempotent) and the hold is
        # counted twice: stricter, never looser.
        return False
    if plan is not None:
        plan.settled = RedisBudgetStore.settled_by(replies[1])
    if correcting and admission is not None and isinstance(replies[-1], Exception):
        admission.queued_settle_failed()
    # A no-op once corrected; else (no Redis limit store, a lost script) the usual step.
    await ratelimit.settle_recorded(payload)
    return not isinstance(replies[0], Exception)


async def _appended_step_by_step(payload: Payload) -> None:
    """Append the record to the buffer, then count it.

    A record the Redis stream refuses (Redis down, failing over, out of memory) goes to
    the local spool instead, which the flusher drains too: the answer has been paid for,
    so neither may the record be lost nor the answer turned into an error.
    """
    buffer = get_buffer()
    try:
        await buffer.append(payload)
    except RedisUnavailable:
        # Redis is known to be down (logged once, by common.redis), not a surprise per record.
        await spool_buffer().append(payload)
    except Exception:
        if isinstance(buffer, SpoolBuffer):
            raise
        logger.exception("The record stream refused record %s; it waits in the local spool", payload["id"])
        await spool_buffer().append(payload)
    # routing.metrics reads the payload only; its parameter says MutableMapping.
    metrics.record_observed(cast("dict[str, Any]", payload))
    # The record says what every attempt used: the key's token charge is corrected to it.
    await ratelimit.settle_recorded(payload)
