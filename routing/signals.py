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

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from . import config_version
from .models import ApiKey, ModelEndpoint, Policy, PolicyTier, TaskRule

records_stored = Signal()  # kwargs: payloads (list of routing.recorder payload dicts)

CONFIG_MODELS = (ModelEndpoint, Policy, PolicyTier, TaskRule, ApiKey)


def config_changed(sender: type, **kwargs: Any) -> None:
    config_version.bump_on_commit()


for model in CONFIG_MODELS:
    post_save.connect(config_changed, sender=model, dispatch_uid=f"config_changed_save_{model.__name__}")
    post_delete.connect(config_changed, sender=model, dispatch_uid=f"config_changed_delete_{model.__name__}")
