"""Experiment writes: end one and promote the winning arm's policy, in one audited action."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from common.audit.context import audit_action, audit_untracked
from common.audit.services import audit_record, model_values
from routing.choices import ExperimentStatus
from routing.models import ApiKey, Experiment, ExperimentArm


def experiment_end(*, experiment: Experiment, winner: ExperimentArm | None) -> Experiment:
    """End `experiment`; with a `winner`, its keys route through the winner's policy from now on.

    One audit entry holds the experiment before and after and the keys moved; each key's
    own change is audited too.
    """
    if winner is not None and winner.experiment_id != experiment.id:
        raise ValueError("The winner must be one of the experiment's arms.")
    with transaction.atomic(), audit_action("experiment_end"):
        before = model_values(experiment)
        experiment.status = ExperimentStatus.ENDED
        experiment.ended = timezone.now()
        experiment.winner = winner
        with audit_untracked():  # the one entry below holds this change, with the keys moved
            experiment.save(update_fields=["status", "ended", "winner"])
        moved = experiment_promote(experiment=experiment, winner=winner) if winner is not None else []
        after = model_values(experiment) | {"promoted_policy": winner.policy_id if winner else None, "keys": moved}
        audit_record(action="experiment_end", obj=experiment, before=before, after=after)
    return experiment


def experiment_promote(*, experiment: Experiment, winner: ExperimentArm) -> list[int]:
    """Bind the experiment's keys (its key, or every active key of its team) to the winner's policy."""
    keys = ApiKey.objects.filter(revoked_at=None)
    keys = keys.filter(id=experiment.api_key_id) if experiment.api_key_id else keys.filter(team=experiment.team)
    moved = []
    for key in keys:
        if key.policy_id != winner.policy_id:
            key.policy_id = winner.policy_id
            key.save(update_fields=["policy"])
            moved.append(key.id)
    return moved
