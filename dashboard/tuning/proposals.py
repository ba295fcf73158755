"""Auto-tuning: beat moves a policy's threshold towards its target, with evidence, reversibly.

Each `tuning_run` may retrain the learned scorer, then calibrates the threshold on labelled
traffic replayed by `dashboard.tuning.whatif` (or, with too few labels, corrects it by rule),
and stores a `TuningProposal` with its evidence, applied at once in "apply" mode. Applying
and rolling back save the policy, so every worker reloads it; runs claim their config for
`MIN_RUN_INTERVAL`, so a repeated run does nothing. See docs/quality.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from common.audit.context import audit_action
from dashboard.choices import ProposalMethod, ProposalStatus, TuningMode, TuningTarget
from dashboard.models import TuningConfig, TuningProposal
from dashboard.tuning.whatif import Candidate, LabelledRows, replay_rows
from routing.choices import RecordStatus, ScorerKind, ScorerVersionKind
from routing.engine.offline.replay import ReplayRow, SweepPoint, sweep, threshold_for_target
from routing.models import Policy, PolicyTier, QualityLabel, RequestRecord, ScorerVersion, ShadowEvaluation
from routing.policies.versions import policy_version_publish
from routing.quality.labels import LABEL_PRIORITY
from routing.quality.learning import (
    TooFewLabels,
    labelled_samples,
    scorer_version_activate,
    scorer_version_deactivate,
    scorer_version_train,
)

logger = logging.getLogger(__name__)

# Beat may deliver a run twice (or an operator start one by hand): a config claimed less
# than this long ago is left alone.
MIN_RUN_INTERVAL = timedelta(minutes=5)
# The rules need at least this many labels before they act on quality.
RULE_MIN_LABELS = 20
# A task category needs this many labelled requests for a calibrated threshold of its own.
CATEGORY_MIN_LABELS = 30
THRESHOLD_GRID_STEP = 0.01
WILSON_Z = 1.96  # 95%
EPSILON = 1e-9
MONEY = Decimal("1e-10")


class ProposalNotOpen(Exception):
    """The proposal is not in a state that allows this (decided or rolled back already)."""


class ProposalStale(Exception):
    """The threshold changed since the proposal was made: applying or undoing it would clobber that."""


@dataclass
class Plan:
    """What a run concluded, before it is stored."""

    threshold: float
    method: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


# --- runs ------------------------------------------------------------------------------


def tuning_run_all() -> int:
    """Run every enabled tuning config (beat's `tuning_propose`); returns proposals made."""
    made = 0
    for config in TuningConfig.objects.exclude(mode=TuningMode.OFF).select_related("policy"):
        try:
            made += tuning_run(config=config) is not None
        except Exception:
            # One policy's failure must not stop the others' tuning.
            logger.exception("Tuning %s failed", config.policy)
    return made


def tuning_run(*, config: TuningConfig, now: datetime | None = None) -> TuningProposal | None:
    """One tuning run for one policy; the proposal it made (applied in "apply" mode), or None."""
    now = now or timezone.now()
    if config.mode == TuningMode.OFF or not _claim(config, now):
        return None
    policy = config.policy
    tier = policy.tiers.filter(position=config.tier).first()
    if tier is None or tier.position >= policy.tiers.count() - 1:
        logger.warning("Tuning %s: tier %s is not a tier that escalates", policy, config.tier)
        return None
    since = now - timedelta(days=config.window_days)
    retrained = _retrain(config, since)
    plan = _plan(config, tier.threshold, since, now, retrained)
    if plan is None and retrained is None:
        return None
    plan = plan or Plan(tier.threshold, ProposalMethod.CALIBRATED, "A new scorer version was trained.")
    proposal = _propose(config, tier, plan, retrained)
    if config.mode == TuningMode.APPLY:
        tuning_proposal_apply(proposal=proposal, user=None)
        proposal.refresh_from_db()
    return proposal


def _claim(config: TuningConfig, now: datetime) -> bool:
    """Take this config for one run; False when another run has it (healthchecks' idiom)."""
    recent = Q(last_run_at__gt=now - MIN_RUN_INTERVAL)
    claimed = TuningConfig.objects.filter(id=config.id).exclude(recent).update(last_run_at=now)
    return claimed == 1


def _retrain(config: TuningConfig, since: datetime) -> ScorerVersion | None:
    """A new, inactive learned version when the policy uses one and enough new labels came in."""
    policy = config.policy
    if policy.scorer != ScorerKind.LEARNED:
        return None
    last = ScorerVersion.objects.filter(policy=policy, kind=ScorerVersionKind.LEARNED).aggregate(at=Max("trained_at"))
    new_labels = labelled_samples(policy=policy, since=last["at"]).count()
    if new_labels < config.retrain_after_labels:
        return None
    try:
        return scorer_version_train(policy=policy, activate=False, since=since)
    except TooFewLabels:
        return None


def _plan(
    config: TuningConfig, before: float, since: datetime, until: datetime, retrained: ScorerVersion | None
) -> Plan | None:
    # A new scorer's scores are comparable only with its own: re-score the stored answers
    # and leave out the requests without text. Otherwise the recorded scores are the live ones.
    candidate = Candidate(scorer=f"version:{retrained.id}") if retrained else Candidate()
    labelled = replay_rows(
        policy=config.policy, since=since, until=until, candidate=candidate, rescored_only=retrained is not None
    )
    if len(labelled.rows) >= config.min_labels:
        plan = _calibrated(config, before, labelled)
    else:
        plan = _rules(config, before, since, until, labelled)
    if plan is None or math.isclose(plan.threshold, before, abs_tol=EPSILON):
        return None
    return plan


# --- calibration -------------------------------------------------------------------------


def _calibrated(config: TuningConfig, before: float, labelled: LabelledRows) -> Plan | None:
    """The cheapest threshold meeting the target on one part of the labels, checked on the rest."""
    calibration, holdout = split_rows(labelled, config.holdout_share)
    points = sweep(calibration, threshold_grid(config.threshold_min, config.threshold_max))
    chosen = threshold_for_target(points, **target_kwargs(config))
    if chosen is None:
        goal, why = _unreachable(config)
    else:
        goal, why = chosen.threshold, "the cheapest threshold meeting the target on the calibration part"
    after = step_towards(before, goal, config)
    checked = sweep(holdout, [after])[0] if holdout else None
    meets = checked is not None and meets_target(config, checked)
    if not meets and not _safer(config, before, after):
        logger.info("Tuning %s: %.2f fails the held-out check; no change", config.policy, after)
        return None
    reason = f"Calibrated on {len(calibration)} labelled requests: {why} is {goal:.2f}"
    reason += "; it meets the target on the held-out part." if meets else "; moving towards it is the safe direction."
    evidence = {
        "method": ProposalMethod.CALIBRATED,
        "target": {"kind": config.target, "value": str(config.target_value)},
        "n_labels": len(labelled.rows),
        "n_calibration": len(calibration),
        "n_holdout": len(holdout),
        "coverage": {"in_window": labelled.coverage.in_window, "skipped": labelled.coverage.skipped},
        "goal_threshold": goal,
        "before": expectation(sweep(holdout, [before])[0], len(holdout)) if holdout else None,
        "after": expectation(checked, len(holdout)) if checked else None,
        "holdout_meets_target": meets,
        "by_category": category_thresholds(config, labelled),
    }
    return Plan(after, ProposalMethod.CALIBRATED, reason, evidence)


def category_thresholds(config: TuningConfig, labelled: LabelledRows) -> dict[str, dict[str, Any]]:
    """Per task category with `CATEGORY_MIN_LABELS` labels: the cheapest threshold meeting the
    target on that category's requests alone (None: none within bounds does)."""
    if len(labelled.categories) != len(labelled.rows):
        return {}
    by_category: dict[str, list[ReplayRow]] = {}
    for category, row in zip(labelled.categories, labelled.rows, strict=True):
        by_category.setdefault(category, []).append(row)
    grid = threshold_grid(config.threshold_min, config.threshold_max)
    found: dict[str, dict[str, Any]] = {}
    for category, rows in sorted(by_category.items()):
        if len(rows) >= CATEGORY_MIN_LABELS:
            chosen = threshold_for_target(sweep(rows, grid), **target_kwargs(config))
            found[category] = {"n_labels": len(rows), "goal_threshold": chosen.threshold if chosen else None}
    return found


def _unreachable(config: TuningConfig) -> tuple[float, str]:
    """No threshold within bounds meets the target: go as far as the bounds allow."""
    if config.target == TuningTarget.MIN_QUALITY:
        return config.threshold_max, "no threshold within bounds meets it; the highest bound"
    return config.threshold_min, "no threshold within bounds meets it; the lowest bound"


def _safer(config: TuningConfig, before: float, after: float) -> bool:
    """Raising the threshold for a quality target, or lowering it for the others, is never worse for the target."""
    raising = after > before
    return raising if config.target == TuningTarget.MIN_QUALITY else not raising


def split_rows(labelled: LabelledRows, holdout_share: float) -> tuple[list[ReplayRow], list[ReplayRow]]:
    """(calibration, held-out) by a hash of each request id: stable from run to run."""
    calibration: list[ReplayRow] = []
    holdout: list[ReplayRow] = []
    for record_id, row in zip(labelled.record_ids, labelled.rows, strict=True):
        bucket = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (holdout if bucket < holdout_share else calibration).append(row)
    return calibration, holdout


def threshold_grid(low: float, high: float) -> list[float]:
    steps = round((high - low) / THRESHOLD_GRID_STEP)
    return [round(low + i * THRESHOLD_GRID_STEP, 4) for i in range(steps + 1)]


def target_kwargs(config: TuningConfig) -> dict[str, Any]:
    if config.target == TuningTarget.MIN_QUALITY:
        return {"min_quality": float(config.target_value)}
    if config.target == TuningTarget.MAX_ESCALATION_RATE:
        return {"max_escalation_rate": float(config.target_value)}
    return {"max_cost_per_request": config.target_value}


def meets_target(config: TuningConfig, point: SweepPoint) -> bool:
    target = config.target_value
    if config.target == TuningTarget.MIN_QUALITY:
        return point.quality >= float(target)
    if config.target == TuningTarget.MAX_ESCALATION_RATE:
        return point.escalation_rate <= float(target)
    return point.cost_per_request <= target


def step_towards(before: float, goal: float, config: TuningConfig) -> float:
    """`goal` within the bounds, at most `max_step` away from `before`."""
    bounded = min(max(goal, config.threshold_min), config.threshold_max)
    step = min(max(bounded - before, -config.max_step), config.max_step)
    return round(min(max(before + step, config.threshold_min), config.threshold_max), 4)


def expectation(point: SweepPoint, n: int) -> dict[str, Any]:
    """A threshold's expected outcome on `n` requests, quality with its Wilson interval."""
    low, high = wilson_interval(point.quality, n)
    return {
        "threshold": point.threshold,
        "quality": point.quality,
        "quality_ci95": [low, high],
        "escalation_rate": point.escalation_rate,
        "cost_per_request": str(point.cost_per_request.quantize(MONEY)),
        "savings_share": point.savings_share,
    }


def wilson_interval(share: float, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a share observed on `n` trials ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # The interval always holds the observed share; float error must not push it out at 0 or 1.
    return max(0.0, min(centre - half, share)), min(1.0, max(centre + half, share))


# --- rules -------------------------------------------------------------------------------


def _rules(
    config: TuningConfig, before: float, since: datetime, until: datetime, labelled: LabelledRows
) -> Plan | None:
    """Rule-based corrections, for when there are too few labels to calibrate."""
    observed = observed_traffic(policy=config.policy, since=since, until=until)
    target = config.target_value
    if config.target == TuningTarget.MIN_QUALITY:
        breach = observed["n_labels"] >= RULE_MIN_LABELS and observed["quality"] < float(target)
        direction, what = 1, f"quality {observed['quality']:.3f} is below the target {target}"
    elif config.target == TuningTarget.MAX_ESCALATION_RATE:
        breach = observed["requests"] > 0 and observed["escalation_rate"] > float(target)
        direction, what = -1, f"escalation rate {observed['escalation_rate']:.3f} is above the target {target}"
    else:
        breach = observed["requests"] > 0 and observed["cost_per_request"] > target
        direction, what = -1, f"cost per request {observed['cost_per_request']} is above the target {target}"
    if not breach:
        return None
    after = step_towards(before, before + direction * config.max_step, config)
    verb = "Raise" if direction > 0 else "Lower"
    reason = f"Too few labels to calibrate ({len(labelled.rows)} < {config.min_labels}); {what}. {verb} by one step."
    low, high = wilson_interval(observed["quality"], observed["n_labels"])
    evidence = {
        "method": ProposalMethod.RULES,
        "target": {"kind": config.target, "value": str(target)},
        "requests": observed["requests"],
        "n_labels": observed["n_labels"],
        "quality": observed["quality"],
        "quality_ci95": [low, high],
        "escalation_rate": observed["escalation_rate"],
        "cost_per_request": str(observed["cost_per_request"]),
    }
    return Plan(after, ProposalMethod.RULES, reason, evidence)


def observed_traffic(*, policy: Policy, since: datetime, until: datetime) -> dict[str, Any]:
    """What the policy's traffic did in the window: requests, escalations, cost, labelled quality."""
    records = RequestRecord.objects.filter(
        policy=policy, status=RecordStatus.ANSWERED, created__gte=since, created__lt=until
    )
    totals = records.aggregate(requests=Count("id"), escalated=Count("id", filter=Q(escalated=True)), cost=Sum("cost"))
    requests = totals["requests"]
    quality = _labelled_quality(records)
    return {
        "requests": requests,
        "escalation_rate": totals["escalated"] / requests if requests else 0.0,
        "cost_per_request": ((totals["cost"] or Decimal(0)) / requests).quantize(Decimal("1e-10"))
        if requests
        else Decimal(0),
        **quality,
    }


def _labelled_quality(records: Any) -> dict[str, Any]:
    """Mean label of the answers returned: the app's label first, then shadow, then replay."""
    labels = QualityLabel.objects.filter(record__in=records).values_list("record_id", "source", "value")
    priority: dict[str, int] = {str(source): rank for rank, source in enumerate(LABEL_PRIORITY)}
    ranked: dict[Any, tuple[int, float]] = {}
    for record_id, source, value in labels:
        rank = priority.get(source, len(priority))
        if record_id not in ranked or rank < ranked[record_id][0]:
            ranked[record_id] = (rank, value)
    values = {record_id: value for record_id, (_, value) in ranked.items()}
    n = len(values)
    return {"n_labels": n, "quality": sum(values.values()) / n if n else 0.0}


# --- proposals: made, applied, rejected, rolled back ---------------------------------------


@transaction.atomic
def _propose(config: TuningConfig, tier: PolicyTier, plan: Plan, retrained: ScorerVersion | None) -> TuningProposal:
    """Store the plan; an open proposal for the same policy is superseded by it."""
    policy = config.policy
    TuningProposal.objects.filter(policy=policy, status=ProposalStatus.PROPOSED).update(
        status=ProposalStatus.SUPERSEDED
    )
    active = ScorerVersion.objects.filter(policy=policy, kind=ScorerVersionKind.LEARNED, active=True).first()
    if retrained is not None:
        plan.evidence["scorer"] = {"version": retrained.version, "metrics": retrained.metrics}
    return TuningProposal.objects.create(
        policy=policy,
        tier=tier.position,
        threshold_before=tier.threshold,
        threshold_after=plan.threshold,
        scorer_version_before=active,
        scorer_version_after=retrained,
        method=plan.method,
        reason=plan.reason,
        evidence=plan.evidence,
        policy_version_before=policy.version,
    )


@transaction.atomic
def tuning_proposal_apply(*, proposal: TuningProposal, user: Any) -> TuningProposal:
    """Make the proposed change: the tier's threshold (a new policy version) and its scorer."""
    _move(proposal, ProposalStatus.PROPOSED, ProposalStatus.APPLIED, decided_by=user, decided_at=timezone.now())
    with audit_action("tuning-apply"):
        policy = _set_threshold(proposal, expected=proposal.threshold_before, to=proposal.threshold_after)
        if proposal.scorer_version_after is not None:
            scorer_version_activate(version=proposal.scorer_version_after)
    TuningProposal.objects.filter(id=proposal.id).update(policy_version_applied=policy.version)
    proposal.refresh_from_db()
    return proposal


@transaction.atomic
def tuning_proposal_reject(*, proposal: TuningProposal, user: Any) -> TuningProposal:
    """Turn the proposal down; nothing changes."""
    _move(proposal, ProposalStatus.PROPOSED, ProposalStatus.REJECTED, decided_by=user, decided_at=timezone.now())
    proposal.refresh_from_db()
    return proposal


@transaction.atomic
def tuning_proposal_rollback(*, proposal: TuningProposal, user: Any) -> TuningProposal:
    """Undo an applied change: the threshold (a new policy version) and scorer it replaced."""
    _move(
        proposal,
        ProposalStatus.APPLIED,
        ProposalStatus.ROLLED_BACK,
        rolled_back_by=user,
        rolled_back_at=timezone.now(),
    )
    with audit_action("tuning-rollback"):
        _set_threshold(proposal, expected=proposal.threshold_after, to=proposal.threshold_before)
        if proposal.scorer_version_after is not None:
            if proposal.scorer_version_before is not None:
                scorer_version_activate(version=proposal.scorer_version_before)
            else:
                scorer_version_deactivate(policy=proposal.policy)
    proposal.refresh_from_db()
    return proposal


def _move(proposal: TuningProposal, from_status: str, to_status: str, **fields: Any) -> None:
    # The claim idiom: of two clicks (or a click and a run), only one moves it.
    moved = TuningProposal.objects.filter(id=proposal.id, status=from_status).update(status=to_status, **fields)
    if moved != 1:
        raise ProposalNotOpen(f"Proposal {proposal.id} is no longer {from_status}.")


def _set_threshold(proposal: TuningProposal, *, expected: float, to: float) -> Policy:
    """Set the tier's threshold through the normal save path: the policy's version moves."""
    policy = Policy.objects.select_for_update().get(id=proposal.policy_id)
    tier = PolicyTier.objects.get(policy=policy, position=proposal.tier)
    if not math.isclose(tier.threshold, expected, abs_tol=EPSILON):
        raise ProposalStale(
            f"Tier {tier.position}'s threshold is {tier.threshold:.2f} now, not {expected:.2f}: "
            "it was changed since; nothing was done."
        )
    tier.threshold = to
    tier.full_clean()
    tier.save(update_fields=["threshold"])
    policy_version_publish(policy=policy)
    return policy


# --- reads for the page --------------------------------------------------------------------


def shadow_spend(*, since: datetime) -> dict[int, Decimal]:
    """Shadow evaluation cost per policy id since `since` (kept apart from request cost)."""
    rows = (
        ShadowEvaluation.objects.filter(created__gte=since, record__policy__isnull=False)
        .values_list("record__policy_id")
        .annotate(cost=Sum("cost"))
    )
    return {policy_id: cost or Decimal(0) for policy_id, cost in rows}
