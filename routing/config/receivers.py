"""Any change to routing configuration moves the shared config version after commit.

Receivers rather than service calls, so that edits from the admin, the REST API, a data
migration or the shell all reach every worker.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from billing.models import Budget, PriceBookEntry
from routing.config import version as config_version
from routing.config.prices import endpoint_prices_write_through
from routing.models import (
    ApiKey,
    CategoryLadder,
    EndpointMeasure,
    Experiment,
    ExperimentArm,
    GoalWeights,
    LadderTier,
    ModelEndpoint,
    Policy,
    PolicyTier,
    ScorerVersion,
    TaskCategory,
    TaskRule,
)

CONFIG_MODELS = (
    ModelEndpoint,
    Policy,
    PolicyTier,
    TaskRule,
    ApiKey,
    ScorerVersion,
    TaskCategory,
    CategoryLadder,
    LadderTier,
    GoalWeights,
    EndpointMeasure,
    Experiment,
    ExperimentArm,
)


def config_changed(sender: type, **kwargs: Any) -> None:
    config_version.bump_on_commit()


for model in (*CONFIG_MODELS, Budget, PriceBookEntry):
    post_save.connect(config_changed, sender=model, dispatch_uid=f"config_changed_save_{model.__name__}")
    post_delete.connect(config_changed, sender=model, dispatch_uid=f"config_changed_delete_{model.__name__}")


def endpoint_prices_recorded(sender: type, instance: ModelEndpoint, **kwargs: Any) -> None:
    """A new endpoint opens its price history; a change to its price columns adds an entry from now.

    Saving other fields writes nothing: the columns are measured against the prices the
    row was loaded (or shown) with, never written back as they are (they may be older
    than a scheduled price that took effect since). See `routing.config.prices`.
    """
    endpoint_prices_write_through(instance)


post_save.connect(endpoint_prices_recorded, sender=ModelEndpoint, dispatch_uid="endpoint_prices_recorded")
