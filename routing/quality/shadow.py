"""Shadow evaluation: the strongest tier re-checks a share of the cheaper tiers' answers.

For `Policy.shadow_rate` of the requests a cheaper tier answered, a Celery task re-asks the
strongest tier after the record is stored and judges the cheap answer (math by its final
number, else by asking the strongest tier); the verdict is the request's `shadow` label.
The calls' cost stays on the evaluation, under the request's budgets and on the ledger
(`routing.quality.spend`). See docs/quality.md.
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

from billing.budgets.rules import BudgetRule
from routing.choices import JudgeMethod, LabelSource, ShadowStatus
from routing.config.snapshots import load_policies
from routing.engine.costing import resolve_max_tokens
from routing.engine.errors import ProviderError
from routing.engine.ports import Provider
from routing.engine.scoring import final_number
from routing.engine.tiers import billable
from routing.engine.types import ChatRequest, Completion, Message, PolicySnapshot
from routing.exceptions import BudgetExceeded, BudgetUnavailable
from routing.limits.budget_holds import budget_hold, settle_retries_finished
from routing.models import QualityLabel, RequestSample, ShadowEvaluation
from routing.providers import build_provider
from routing.quality.samples import sample_chat
from routing.quality.spend import ChecksPaused, check_budgets, check_ledger_append, checks_allowed, tier_alone
from routing.records.ledger import CheckCall, evaluation_spend
from routing.records.payload import RecordPayload

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
    """The judge's decision (what reaching it cost is in the evaluation's `spent` calls)."""

    acceptable: bool
    judge: str
    latency_ms: float


def shadow_schedule(sender: Any, *, payloads: list[RecordPayload], **kwargs: Any) -> None:
    """`records_stored` receiver: an evaluation for each sampled-for-shadow record, run after commit."""
    record_ids = [p["id"] for p in payloads if (sample := p.get("sample")) and sample.get("shadow")]
    if not record_ids:
        return
    ShadowEvaluation.objects.bulk_create(ShadowEvaluation(record_id=record_id) for record_id in record_ids)
    transaction.on_commit(lambda: _enqueue(record_ids))


def _enqueue(record_ids: list[str]) -> None:
    from routing.quality.tasks import shadow_evaluate as shadow_evaluate_task

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
    spent: list[CheckCall] = []
    try:
        verdict = _judge_record(evaluation, spent)
    except BudgetExceeded as exc:
        return _failed(evaluation, f"skipped: {exc.message}", spent)
    except ChecksPaused as exc:
        return _failed(evaluation, f"skipped: {exc}", spent)
    except (ProviderError, JudgeUnclear, LookupError, BudgetUnavailable) as exc:
        return _failed(evaluation, f"{type(exc).__name__}: {exc}", spent)
    except Exception as exc:
        # Never leave it "running" for ever: a bug fails this evaluation, not the next ones.
        logger.exception("Shadow evaluation of %s crashed", record_id)
        return _failed(evaluation, f"{type(exc).__name__}: {exc}", spent)
    return _done(evaluation, verdict, spent)


def _judge_record(evaluation: ShadowEvaluation, spent: list[CheckCall]) -> Verdict:
    record = evaluation.record
    sample = getattr(record, "sample", None)
    if sample is None:
        raise LookupError("the request's sampled text is gone")
    policy = _policy(record.policy_id)
    hold_id = f"shadow:{record.id}:{uuid.uuid4().hex}"  # a redelivered task holds its own
    judge = ShadowJudge(policy, check_budgets(record), hold_id=hold_id, spent=spent)
    return async_to_sync(judge.judge)(sample, task=record.task_category)


def _policy(policy_id: int | None) -> PolicySnapshot:
    policy = next((p for p in load_policies() if p.id == policy_id), None)
    if policy is None:
        raise LookupError("the request's policy is deleted, disabled or has no usable tier")
    return policy


@dataclass
class ShadowJudge:
    """Asks the policy's strongest tier for a reference answer, then judges a sampled answer by it.

    Each call runs under a hold of its worst case on `budgets` and is added to `spent`
    once it returns (or fails after being billed), so a failure later still knows what
    was paid.
    """

    policy: PolicySnapshot
    budgets: list[BudgetRule]
    hold_id: str
    spent: list[CheckCall]

    async def judge(self, sample: RequestSample, *, task: str) -> Verdict:
        strongest = self.policy.strongest
        provider = build_provider(strongest.endpoint)
        try:
            chat = sample_chat(sample)
            reference = await self._call(provider, chat, resolve_max_tokens(chat, strongest))
            latency_ms = reference.latency_ms
            if task in STRUCTURED_TASKS and final_number(reference.text) is not None:
                acceptable, judge = same_final_number(sample.answer, reference.text), JudgeMethod.EXACT_MATCH
            else:
                judged = await self._call(provider, judge_chat(sample, reference.text), JUDGE_MAX_TOKENS)
                latency_ms += judged.latency_ms
                acceptable, judge = judge_reply(judged.text), JudgeMethod.LLM_JUDGE
        finally:
            await provider.aclose()
            await settle_retries_finished()  # this loop ends with the task: retries cannot outlive it
        return Verdict(acceptable=acceptable, judge=judge, latency_ms=latency_ms)

    async def _call(self, provider: Provider, chat: ChatRequest, max_tokens: int) -> Completion:
        tier = self.policy.strongest
        hold_id = f"{self.hold_id}:{len(self.spent)}"
        async with budget_hold(self.budgets, tier_alone(self.policy, tier), chat, hold_id) as plan:
            checks_allowed(plan.degrade)
            try:
                completion = await provider.complete(chat, max_tokens=max_tokens)
            except ProviderError as exc:
                # Billed all the same, as a request's failed try is: the usage the provider
                # reported, or a timed-out call's full allowance.
                billed = billable(exc, chat, tier)
                if billed.input_tokens or billed.output_tokens:
                    plan.actual = self._spend(CheckCall.of_usage(tier.endpoint, billed)).cost
                raise
            plan.actual = self._spend(CheckCall.of_usage(tier.endpoint, completion)).cost
        return completion

    def _spend(self, call: CheckCall) -> CheckCall:
        self.spent.append(call)
        return call


def same_final_number(candidate: str, reference: str) -> bool:
    """Whether both answers end in the same number (an answer without one is wrong)."""
    mine, theirs = final_number(candidate), final_number(reference)
    return mine is not None and theirs is not None and math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-9)


def judge_chat(sample: RequestSample, reference: str) -> ChatRequest:
    prompt = JUDGE_PROMPT.format(question=sample.prompt, reference=reference, candidate=sample.answer)
    return ChatRequest(messages=(Message(role="user", content=prompt),), max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)


def judge_reply(text: str) -> bool:
    """The judge's one word as a verdict; anything else is `JudgeUnclear`."""
    word = text.strip().upper()
    # "UNACCEPTABLE" contains "ACCEPTABLE": test it first.
    if "UNACCEPTABLE" in word:
        return False
    if "ACCEPTABLE" in word:
        return True
    raise JudgeUnclear(f"the judge answered {text[:80]!r}")


@transaction.atomic
def _done(evaluation: ShadowEvaluation, verdict: Verdict, spent: list[CheckCall]) -> ShadowEvaluation:
    evaluation.status = ShadowStatus.DONE
    evaluation.acceptable = verdict.acceptable
    evaluation.judge = verdict.judge
    evaluation.latency_ms = round(verdict.latency_ms, 3)
    _finish(evaluation, spent)
    QualityLabel.objects.update_or_create(
        record_id=evaluation.record_id,
        source=LabelSource.SHADOW,
        defaults={"value": float(verdict.acceptable), "comment": f"{verdict.judge} by {evaluation.reference_model}"},
    )
    return evaluation


@transaction.atomic
def _failed(evaluation: ShadowEvaluation, error: str, spent: list[CheckCall]) -> ShadowEvaluation:
    logger.warning("Shadow evaluation of %s failed: %s", evaluation.record_id, error)
    evaluation.status = ShadowStatus.FAILED
    evaluation.error = error
    _finish(evaluation, spent)
    return evaluation


def _finish(evaluation: ShadowEvaluation, spent: list[CheckCall]) -> None:
    """Store what the evaluation's calls cost and put it on the ledger, in one transaction."""
    evaluation.finished = timezone.now()
    if spent:
        evaluation.reference_model = spent[0].model
        evaluation.input_tokens = sum(c.input_tokens for c in spent)
        evaluation.output_tokens = sum(c.output_tokens for c in spent)
        evaluation.cost = sum((c.cost for c in spent), Decimal(0))
    evaluation.save()
    check_ledger_append(evaluation.record, [evaluation_spend(evaluation)] if spent else [], evaluation.finished)
