"""Shadow evaluation: the strongest tier re-checks a share of the cheaper tiers' answers.

For `Policy.shadow_rate` of the requests a cheaper tier answered, the hot path keeps the
prompt and the answer (`routing.samples`). When the record is stored, a
`ShadowEvaluation` row is created in the same transaction and, after commit, a Celery
task re-asks the policy's strongest tier, off the answer path. A judge then decides
whether the cheap answer was acceptable and stores that as the request's `shadow` label:

- structured tasks (math): the final numbers of both answers must match exactly;
- anything else: the strongest tier is asked, with a judging prompt, whether the cheap
  answer is as acceptable as its own.

What the shadow calls cost is kept on the evaluation, never on the request: the caller
did not ask for it, and reports show it as its own line.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .choices import JudgeMethod, LabelSource, ShadowStatus
from .engine.costing import attempt_cost, resolve_max_tokens
from .engine.errors import ProviderError
from .engine.scoring import final_number
from .engine.types import ChatRequest, Completion, Message, Tier
from .models import QualityLabel, RequestSample, ShadowEvaluation
from .providers import build_provider
from .samples import sample_chat
from .snapshots import load_policies

logger = logging.getLogger(__name__)

# Tasks whose answers end in one checkable result: exact match, no judge call needed.
STRUCTURED_TASKS = frozenset({"math"})
JUDGE_MAX_TOKENS = 5
# Longer than any strongest-tier call plus the judge's; a worker that died holding an
# evaluation gives it up after this.
CLAIM_TIMEOUT = timedelta(minutes=10)
JUDGE_PROMPT = """You are grading an AI assistant's answer against a reference answer from a stronger model.

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{candidate}

Is the answer to grade acceptable: correct, and as useful for the question as the reference?
Reply with one word: ACCEPTABLE or UNACCEPTABLE."""


class JudgeUnclear(Exception):
    """The judge's reply says neither ACCEPTABLE nor UNACCEPTABLE."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's decision and what reaching it cost."""

    acceptable: bool
    judge: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: Decimal
    latency_ms: float


def shadow_schedule(sender: Any, *, payloads: list[dict[str, Any]], **kwargs: Any) -> None:
    """`records_stored` receiver: an evaluation for each sampled-for-shadow record, run after commit."""
    record_ids = [p["id"] for p in payloads if (p.get("sample") or {}).get("shadow")]
    if not record_ids:
        return
    ShadowEvaluation.objects.bulk_create(ShadowEvaluation(record_id=record_id) for record_id in record_ids)
    transaction.on_commit(lambda: _enqueue(record_ids))


def _enqueue(record_ids: list[str]) -> None:
    from .tasks import shadow_evaluate as shadow_evaluate_task

    for record_id in record_ids:
        shadow_evaluate_task.delay(record_id)


def shadow_evaluate(*, record_id: uuid.UUID | str) -> ShadowEvaluation | None:
    """Run one pending evaluation; None when another worker has it or it is done already.

    Safe to run twice (a redelivered task): only the run that moves it to running does
    anything. One a dead worker left running is taken over after `CLAIM_TIMEOUT`. A
    provider failure marks it failed, with the reason.
    """
    record_id = uuid.UUID(str(record_id))
    now = timezone.now()
    claimable = Q(status=ShadowStatus.PENDING) | Q(status=ShadowStatus.RUNNING, claimed_at__lt=now - CLAIM_TIMEOUT)
    claimed = ShadowEvaluation.objects.filter(claimable, record_id=record_id).update(
        status=ShadowStatus.RUNNING, claimed_at=now
    )
    if claimed != 1:
        return None
    evaluation = ShadowEvaluation.objects.select_related("record__sample").get(record_id=record_id)
    try:
        verdict = _judge_record(evaluation)
    except (ProviderError, JudgeUnclear, LookupError) as exc:
        return _failed(evaluation, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # Never leave it "running" for ever: a bug fails this evaluation, not the next ones.
        logger.exception("Shadow evaluation of %s crashed", record_id)
        return _failed(evaluation, f"{type(exc).__name__}: {exc}")
    return _done(evaluation, verdict)


def _judge_record(evaluation: ShadowEvaluation) -> Verdict:
    record = evaluation.record
    sample = getattr(record, "sample", None)
    if sample is None:
        raise LookupError("the request's sampled text is gone")
    strongest = _strongest_tier(record.policy_id)
    return async_to_sync(judge_answer)(sample, strongest, task=record.task_category)


def _strongest_tier(policy_id: int | None) -> Tier:
    policy = next((p for p in load_policies() if p.id == policy_id), None)
    if policy is None:
        raise LookupError("the request's policy is deleted, disabled or has no usable tier")
    return policy.strongest


async def judge_answer(sample: RequestSample, strongest: Tier, *, task: str) -> Verdict:
    """Ask `strongest` for a reference answer, then judge the sampled answer against it."""
    provider = build_provider(strongest.endpoint)
    try:
        chat = sample_chat(sample)
        reference = await provider.complete(chat, max_tokens=resolve_max_tokens(chat, strongest))
        calls = [reference]
        if task in STRUCTURED_TASKS and final_number(reference.text) is not None:
            acceptable, judge = same_final_number(sample.answer, reference.text), JudgeMethod.EXACT_MATCH
        else:
            judged = await provider.complete(judge_chat(sample, reference.text), max_tokens=JUDGE_MAX_TOKENS)
            calls.append(judged)
            acceptable, judge = judge_reply(judged.text), JudgeMethod.LLM_JUDGE
    finally:
        await provider.aclose()
    return _verdict(acceptable, judge, strongest, calls)


def same_final_number(candidate: str, reference: str) -> bool:
    """Whether both answers end in the same number (an answer without one is wrong)."""
    mine, theirs = final_number(candidate), final_number(reference)
    return mine is not None and theirs is not None and math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-9)


def judge_chat(sample: RequestSample, reference: str) -> ChatRequest:
    prompt = JUDGE_PROMPT.format(question=sample.prompt, reference=reference, candidate=sample.answer)
    return ChatRequest(messages=(Message(role="user", content=prompt),), temperature=0.0)


def judge_reply(text: str) -> bool:
    """The judge's one word as a verdict; anything else is `JudgeUnclear`."""
    word = text.strip().upper()
    # "UNACCEPTABLE" contains "ACCEPTABLE": test it first.
    if "UNACCEPTABLE" in word:
        return False
    if "ACCEPTABLE" in word:
        return True
    raise JudgeUnclear(f"the judge answered {text[:80]!r}")


def _verdict(acceptable: bool, judge: str, tier: Tier, calls: list[Completion]) -> Verdict:
    cost = sum(
        (attempt_cost(tier.endpoint, c.input_tokens, c.output_tokens, c.cached_input_tokens) for c in calls),
        Decimal(0),
    )
    return Verdict(
        acceptable=acceptable,
        judge=judge,
        model=tier.endpoint.name,
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        cost=cost,
        latency_ms=sum(c.latency_ms for c in calls),
    )


@transaction.atomic
def _done(evaluation: ShadowEvaluation, verdict: Verdict) -> ShadowEvaluation:
    evaluation.status = ShadowStatus.DONE
    evaluation.acceptable = verdict.acceptable
    evaluation.judge = verdict.judge
    evaluation.reference_model = verdict.model
    evaluation.input_tokens = verdict.input_tokens
    evaluation.output_tokens = verdict.output_tokens
    evaluation.cost = verdict.cost
    evaluation.latency_ms = round(verdict.latency_ms, 3)
    evaluation.finished = timezone.now()
    evaluation.save()
    QualityLabel.objects.update_or_create(
        record_id=evaluation.record_id,
        source=LabelSource.SHADOW,
        defaults={"value": float(verdict.acceptable), "comment": f"{verdict.judge} by {verdict.model}"},
    )
    return evaluation


def _failed(evaluation: ShadowEvaluation, error: str) -> ShadowEvaluation:
    logger.warning("Shadow evaluation of %s failed: %s", evaluation.record_id, error)
    evaluation.status = ShadowStatus.FAILED
    evaluation.error = error
    evaluation.finished = timezone.now()
    evaluation.save(update_fields=["status", "error", "finished"])
    return evaluation
