"""Routing's configuration in the audit trail, and a stored version for every policy save.

Policies are audited by their versions (`routing.policies.versions`): one entry per change
with the whole policy before and after (its tiers, task rules and category ladders), rather
than one per tier, rule or rung replaced. Their deletion, and every other configuration
table, is audited row by row.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from common.audit.services import track
from routing.models import (
    ApiKey,
    Experiment,
    ExperimentArm,
    GoalWeights,
    ModelEndpoint,
    Policy,
    PolicyVersion,
    ScorerVersion,
    TaskCategory,
)
from routing.policies.versions import policy_version_record

track(ModelEndpoint)
track(ApiKey, exclude=["key_hash"])
track(ScorerVersion, exclude=["model"])  # the trained weights: large, and versioned by their row
track(Policy, saves=False)
for model in (TaskCategory, GoalWeights, Experiment, ExperimentArm):
    track(model)


def policy_saved(sender: type[Policy], instance: Policy, raw: bool = False, **kwargs: Any) -> None:
    """A save that did not go through the services (the shell, a script) is stored as a version too.

    After commit, once its tiers are saved alongside; the services have stored it by then.
    """
    if raw:
        return

    def ensure() -> None:
        # The number as stored: outside a transaction this runs within save(), while the
        # instance still holds the increment expression rather than the new number.
        number = Policy.objects.filter(pk=instance.pk).values_list("version", flat=True).first()
        if number is not None and not PolicyVersion.objects.filter(policy_id=instance.pk, number=number).exists():
            policy_version_record(policy=instance)

    transaction.on_commit(ensure)


post_save.connect(policy_saved, sender=Policy, dispatch_uid="policy_version_ensure")
