"""Any change to routing configuration moves the shared config version after commit.

Receivers rather than service calls, so that edits from the admin, the REST API, a data
migration or the shell all reach every worker.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from . import config_version
from .models import ApiKey, ModelEndpoint, Policy, PolicyTier, TaskRule

CONFIG_MODELS = (ModelEndpoint, Policy, PolicyTier, TaskRule, ApiKey)


def config_changed(sender: type, **kwargs: Any) -> None:
    config_version.bump_on_commit()


for model in CONFIG_MODELS:
    post_save.connect(config_changed, sender=model, dispatch_uid=f"config_changed_save_{model.__name__}")
    post_delete.connect(config_changed, sender=model, dispatch_uid=f"config_changed_delete_{model.__name__}")
