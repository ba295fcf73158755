"""Learned scorers in the product: training them on a policy's labels, versions, activation.

The engine trains and predicts (`routing.engine.learned`, `routing.engine.router`); this
module feeds it the policy's labelled samples answered by a cheaper tier and keeps every
trained model as a `ScorerVersion`. Activating one is a configuration change every worker
picks up within a second. See docs/quality.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from routing.choices import RecordStatus, ScorerKind, ScorerVersionKind
from routing.config import version as config_version
from routing.engine.learned import LabelledExample, LearnedModel, train_learned_model
from routing.engine.offline.metrics import Outcomes, figures
from routing.engine.router import train_prompt_router
from routing.models import Policy, RequestSample, ScorerVersion
from routing.quality.labels import ACCEPTABLE, best_label
from routing.quality.samples import sample_chat, sample_completion

logger = logging.getLogger(__name__)

# Fewer labelled examples than this train nothing: the held-out part would be noise.
MIN_TRAINING_LABELS = 50
# A retrained scorer is judged against the active one on this newest share of the labels.
CHALLENGE_HOLDOUT = 0.25
# The learning curve's label counts (the last point is always every training label).
CURVE_SIZES = (25, 50, 100, 200, 400, 800, 1600, 3200)
# Beat retrains a policy's scorer once this many labels came in since its last version.
RETRAIN_AFTER_LABELS = 50


class TooFewLabels(Exception):
    """The policy has too few labelled samples to train on."""


def labelled_samples(*, policy: Policy, since: Any = None) -> QuerySet[RequestSample]:
    """The policy's answered samples from a tier below its strongest, with their labels."""
    strongest = policy.tiers.count() - 1
    samples = RequestSample.objects.filter(
        record__policy=policy,
        record__status=RecordStatus.ANSWERED,
        answer_tier__lt=strongest,
        record__labels__isnull=False,
    )
    if since is not None:
        samples = samples.filter(created__gte=since)
    return samples.distinct().select_related("record").prefetch_related("record__labels").order_by("created")


def labelled_examples(*, policy: Policy, since: Any = None) -> list[LabelledExample]:
    """The engine's training examples from the policy's labelled samples, oldest first."""
    examples = []
    for sample in labelled_samples(policy=policy, since=since):
        label = best_label(sample.record.labels.all())
        if label is None:
            continue
        examples.append(
            LabelledExample(
                chat=sample_chat(sample),
                completion=sample_completion(sample),
                task=sample.record.task_category,
                acceptable=label.value >= ACCEPTABLE,
            )
        )
    return examples


def scorer_version_train(
    *,
    policy: Policy,
    kind: str = ScorerVersionKind.LEARNED,
    activate: bool = True,
    seed: int = 0,
    use_embeddings: bool = False,
    since: Any = None,
) -> ScorerVersion:
    """Train a scorer (or prompt router) on the policy's labels and store it as a new version.

    Raises `TooFewLabels` below `MIN_TRAINING_LABELS`. The model is trained outside any
    transaction; only storing it is atomic.
    """
    examples = labelled_examples(policy=policy, since=since)
    if len(examples) < MIN_TRAINING_LABELS:
        raise TooFewLabels(f"{policy} has {len(examples)} labelled samples; training needs {MIN_TRAINING_LABELS}.")
    if kind == ScorerVersionKind.ROUTER:
        model, metrics = _train_router(examples, seed=seed, use_embeddings=use_embeddings)
    else:
        learned, metrics = train_learned_model(examples, seed=seed, use_embeddings=use_embeddings)
        model = learned.to_dict()
    return scorer_version_create(
        policy=policy, kind=kind, model=model, metrics=metrics, n_labels=len(examples), activate=activate
    )


def _train_router(
    examples: list[LabelledExample], *, seed: int, use_embeddings: bool
) -> tuple[dict[str, Any], dict[str, float]]:
    prompts = [e.chat.prompt for e in examples]
    cheap_correct = [e.acceptable for e in examples]
    router = train_prompt_router(prompts, cheap_correct, seed=seed, use_embeddings=use_embeddings)
    return router.to_dict(), {k: v for k, v in router.metadata.items() if isinstance(v, int | float)}


@transaction.atomic
def scorer_version_create(
    *,
    policy: Policy,
    kind: str,
    model: Mapping[str, Any],
    metrics: Mapping[str, Any],
    n_labels: int,
    activate: bool,
) -> ScorerVersion:
    """Store a trained model as the policy's next version, active if asked."""
    # The policy row's lock serialises version numbers between concurrent trainings.
    Policy.objects.select_for_update().filter(id=policy.id).first()
    latest = ScorerVersion.objects.filter(policy=policy).aggregate(v=Max("version"))["v"] or 0
    if activate:
        ScorerVersion.objects.filter(policy=policy, kind=kind, active=True).update(active=False)
    return ScorerVersion.objects.create(
        policy=policy,
        version=latest + 1,
        kind=kind,
        model=dict(model),
        metrics=json_safe(metrics),
        n_labels=n_labels,
        trained_at=timezone.now(),
        active=activate,
    )


@transaction.atomic
def scorer_version_activate(*, version: ScorerVersion) -> None:
    """Make `version` the one its policy scores with (the others of its kind stop)."""
    ScorerVersion.objects.filter(policy_id=version.policy_id, kind=version.kind, active=True).exclude(
        id=version.id
    ).update(active=False)
    version.active = True
    version.save(update_fields=["active"])


@transaction.atomic
def scorer_version_deactivate(*, policy: Policy, kind: str = ScorerVersionKind.LEARNED) -> None:
    """Stop using any learned version: the policy falls back to the heuristic scorer."""
    if ScorerVersion.objects.filter(policy=policy, kind=kind, active=True).update(active=False):
        # `update()` sends no post_save, so move the config version here.
        config_version.bump_on_commit()


def json_safe(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics a JSON column accepts: NaN (undefined on the held-out part) becomes null.

    PostgreSQL's jsonb refuses NaN; SQLite would store it and fail on reading back.
    """
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}


# --- retraining: a challenger replaces the active scorer only when it does better ---------


@dataclass(frozen=True)
class Challenge:
    """A retrained scorer's version, and how it and the active one did on the held-out labels."""

    version: ScorerVersion
    replaced: bool
    challenger_apgr: float
    active_apgr: float | None


def scorer_version_challenge(*, policy: Policy, seed: int = 0, use_embeddings: bool = False) -> Challenge:
    """Train a learned scorer on the policy's labels and make it active only if it beats the active one.

    The newest `CHALLENGE_HOLDOUT` of the labels (oldest first: the future the scorer will
    meet) is held out; both scorers are judged there by APGR, the area under the share of
    the quality gap recovered against the share escalated. The challenger is stored either
    way, with its held-out figures and its learning curve (APGR by number of labels).
    """
    examples = labelled_examples(policy=policy)
    if len(examples) < MIN_TRAINING_LABELS:
        raise TooFewLabels(f"{policy} has {len(examples)} labelled samples; training needs {MIN_TRAINING_LABELS}.")
    cut = len(examples) - max(1, round(len(examples) * CHALLENGE_HOLDOUT))
    train, held_out = examples[:cut], examples[cut:]
    model, _ = train_learned_model(train, seed=seed, holdout=0.0, use_embeddings=use_embeddings)
    challenger = held_out_apgr(model, held_out)
    active = active_learned_model(policy)
    champion = held_out_apgr(active, held_out) if active is not None else None
    replaced = beats(challenger, champion)
    metrics: dict[str, Any] = {
        "n_train": float(len(train)),
        "n_holdout": float(len(held_out)),
        "holdout_apgr": challenger,
        "active_holdout_apgr": champion if champion is not None else math.nan,
        "learning_curve": learning_curve(train, held_out, seed=seed, use_embeddings=use_embeddings),
    }
    version = scorer_version_create(
        policy=policy,
        kind=ScorerVersionKind.LEARNED,
        model=model.to_dict(),
        metrics=metrics,
        n_labels=len(train),
        activate=replaced,
    )
    return Challenge(version, replaced, challenger, champion)


def beats(challenger: float, champion: float | None) -> bool:
    """Whether the challenger's held-out APGR is better; with no comparable champion, it is."""
    if champion is None or math.isnan(champion):
        return not math.isnan(challenger)
    return not math.isnan(challenger) and challenger > champion


def active_learned_model(policy: Policy) -> LearnedModel | None:
    """The policy's active learned scorer, or None (none active, or stored in a format this version cannot read)."""
    active = ScorerVersion.objects.filter(policy=policy, kind=ScorerVersionKind.LEARNED, active=True).first()
    if active is None:
        return None
    try:
        return LearnedModel.from_dict(active.model)
    except (KeyError, TypeError, ValueError):
        logger.warning("Scorer version %s of %s cannot be read; the challenger replaces it", active.version, policy)
        return None


def held_out_apgr(model: LearnedModel, examples: Sequence[LabelledExample]) -> float:
    """APGR of escalating `examples` in the order of `model`'s scores (NaN when every answer was acceptable).

    Production labels say whether the cheap answer was acceptable; an escalated request is
    counted as answered well (the strongest tier is the reference the labels are made against).
    """
    scores = np.asarray([model.predict(e.chat, e.completion, e.task) for e in examples], dtype=np.float64)
    acceptable = np.asarray([e.acceptable for e in examples], dtype=np.float64)
    ones, zeros = np.ones(len(examples)), np.zeros(len(examples))
    return figures(Outcomes(scores, acceptable, acceptable, ones, zeros, ones))["apgr"]


def learning_curve(
    train: Sequence[LabelledExample], held_out: Sequence[LabelledExample], *, seed: int, use_embeddings: bool
) -> list[list[float]]:
    """[labels, held-out APGR] for a scorer trained on the first `labels` training examples."""
    sizes = sorted({n for n in CURVE_SIZES if n < len(train)} | {len(train)})
    curve = []
    for n in sizes:
        first = train[:n]
        if len({e.acceptable for e in first}) < 2:
            continue
        model, _ = train_learned_model(first, seed=seed, holdout=0.0, use_embeddings=use_embeddings)
        apgr = held_out_apgr(model, held_out)
        if not math.isnan(apgr):
            curve.append([float(n), apgr])
    return curve


def scorers_retrain_all(*, seed: int = 0) -> int:
    """Beat's `scorers_retrain`: challenge the scorer of every learned-scorer policy with enough
    new labels; returns how many active scorers were replaced."""
    replaced = 0
    for policy in Policy.objects.filter(scorer=ScorerKind.LEARNED):
        last = ScorerVersion.objects.filter(policy=policy, kind=ScorerVersionKind.LEARNED).aggregate(
            at=Max("trained_at")
        )
        if labelled_samples(policy=policy, since=last["at"]).count() < RETRAIN_AFTER_LABELS:
            continue
        try:
            replaced += scorer_version_challenge(policy=policy, seed=seed).replaced
        except TooFewLabels:
            continue
        except Exception:
            # One policy's failure must not stop the others' retraining.
            logger.exception("Retraining the scorer of %s failed", policy)
    return replaced


# The sparkline of a learning curve on the dashboard: this wide and high, in pixels.
CURVE_WIDTH, CURVE_HEIGHT = 160, 40


def learning_curves(*, limit: int = 20) -> list[dict[str, Any]]:
    """The newest learned scorer versions that have a learning curve, for the dashboard."""
    # The trained weights are large and the page shows none of them.
    versions = ScorerVersion.objects.filter(kind=ScorerVersionKind.LEARNED).select_related("policy").defer("model")
    shown = []
    for version in versions.order_by("-trained_at", "-id")[:limit]:
        curve = [(int(n), float(apgr)) for n, apgr in version.metrics.get("learning_curve") or []]
        if not curve:
            continue
        shown.append(
            {
                "version": version,
                "curve": curve,
                "holdout_apgr": version.metrics.get("holdout_apgr"),
                "active_holdout_apgr": version.metrics.get("active_holdout_apgr"),
                "points": sparkline(curve),
            }
        )
    return shown


def sparkline(curve: Sequence[tuple[int, float]]) -> str:
    """SVG polyline points of APGR (0 at the bottom, 1 at the top) over labels (0 to the most)."""
    most = max(n for n, _ in curve) or 1
    return " ".join(
        f"{CURVE_WIDTH * n / most:.1f},{CURVE_HEIGHT * (1.0 - min(max(apgr, 0.0), 1.0)):.1f}" for n, apgr in curve
    )
