"""Learned scorers in the product: training them on a policy's labels, versions, activation.

The engine trains and predicts (`routing.engine.learned`, `routing.engine.router`); this
module feeds it the policy's labelled samples answered by a cheaper tier and keeps every
trained model as a `ScorerVersion`. Activating one is a configuration change every worker
picks up within a second. See docs/quality.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from routing.choices import RecordStatus, ScorerVersionKind
from routing.config import version as config_version
from routing.engine.learned import LabelledExample, train_learned_model
from routing.engine.router import train_prompt_router
from routing.models import Policy, RequestSample, ScorerVersion
from routing.quality.labels import ACCEPTABLE, best_label
from routing.quality.samples import sample_chat, sample_completion

# Fewer labelled examples than this train nothing: the held-out part would be noise.
MIN_TRAINING_LABELS = 50


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
    metrics: Mapping[str, float],
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


def json_safe(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """Metrics a JSON column accepts: NaN (undefined on the held-out part) becomes null.

    PostgreSQL's jsonb refuses NaN; SQLite would store it and fail on reading back.
    """
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}
