"""Routing's signals: configuration changes, and request records stored.

Any change to routing configuration moves the shared config version after commit:
receivers rather than service calls, so that edits from the admin, the REST API, a data
migration or the shell all reach every worker.

`records_stored` is sent by the flusher (`routing.recorder.records_persist`) inside the
transaction that stores a batch of request records, with the payloads stored just now
(never a re-delivered one). Apps above routing (the dashboard's rollups) derive from it
exactly once; pushes outside the database go in `transaction.on_commit`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from billing.models import Budget, PriceBookEntry
from billing.services import price_book_record

from . import config_version, labels, samples, semantic_cache, shadow
from .models import ApiKey, ModelEndpoint, Policy, PolicyTier, ScorerVersion, TaskRule

records_stored = Signal()  # kwargs: payloads (list of routing.recorder payload dicts)

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

# The quality loop (issue 6): sampled texts, replay labels, then shadow evaluations queued
# after commit. Each derives from the records stored just now, so each runs once per record.
records_stored.connect(samples.samples_store, dispatch_uid="samples_store")
records_stored.connect(labels.labels_from_replay, dispatch_uid="labels_from_replay")
records_stored.connect(shadow.shadow_schedule, dispatch_uid="shadow_schedule")
# Semantic cache hits drawn for verification are re-asked once their record is stored.
records_stored.connect(semantic_cache.semantic_checks_schedule, dispatch_uid="semantic_checks_schedule")
