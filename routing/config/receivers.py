"""Any change to routing configuration moves the shared config version after commit.

Receivers rather than service calls, so that edits from the admin, the REST API, a data
migration or the shell all reach every worker.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models.signals import post_delete, post_save

from billing.models import Budget, PriceBookEntry
from billing.pricing.services import price_book_record
from routing.config import version as config_version
from routing.models import ApiKey, ModelEndpoint, Policy, PolicyTier, ScorerVersion, TaskRule

CONFIG_MODELS = (ModelEndpoint, Policy, PolicyTier, TaskRule, ApiKey, ScorerVersion)


def config_changed(sender: type, **kwargs: Any) -> None:
    config_version.bump_on_commit()


for model in (*CONFIG_MODELS, Budget, PriceBookEntry):
    post_save.connect(config_changed, sender=model, dispatch_uid=f"config_changed_save_{model.__name__}")
    post_delete.connect(config_changed, sender=model, dispatch_uid=f"config_changed_delete_{model.__name__}")


def endpoint_prices_recorded(sender: type, instance: ModelEndpoint, **kwargs: Any) -> None:
    """An endpoint saved with new prices adds a price-book entry in force from now."""
    cached = instance.cached_input_price_per_m
    price_book_record(
        endpoint_id=instance.id,
        # Decimal(str()): a row built in code may still hold the string it was given.
        input_per_m=Decimal(str(instance.input_price_per_m)),
        output_per_m=Decimal(str(instance.output_price_per_m)),
        cached_input_per_m=None if cached in (None, "") else Decimal(str(cached)),
        note="saved with the endpoint",
    )


post_save.connect(endpoint_prices_recorded, sender=ModelEndpoint, dispatch_uid="endpoint_prices_recorded")
