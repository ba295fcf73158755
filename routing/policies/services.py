"""Writes to policies and API keys: the admin, the REST API and commands call these."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from routing.engine.classify import DEFAULT_TASK_RULES
from routing.models import ApiKey, ModelEndpoint, Policy, PolicyTier, TaskRule


def api_key_create(
    *, name: str, policy: Policy, team: str, app: str, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned once and never stored."""
    plaintext = ApiKey.generate()
    key = ApiKey(name=name, policy=policy, team=team, app=app, expires_at=expires_at)
    key.set_key(plaintext)
    key.save()
    return key, plaintext


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


@transaction.atomic
def policy_create(
    *,
    name: str,
    tiers: Sequence[tuple[ModelEndpoint, float]],
    with_default_rules: bool = True,
    **fields: object,
) -> Policy:
    """A policy with its tiers (endpoint, threshold), cheapest first, and the default task rules."""
    policy = Policy.objects.create(name=name, **fields)
    PolicyTier.objects.bulk_create(
        PolicyTier(policy=policy, position=i, endpoint=endpoint, threshold=threshold)
        for i, (endpoint, threshold) in enumerate(tiers)
    )
    if with_default_rules:
        TaskRule.objects.bulk_create(
            TaskRule(policy=policy, position=i, category=category, pattern=pattern, first_tier=first_tier)
            for i, (category, pattern, first_tier) in enumerate(DEFAULT_TASK_RULES)
        )
    return policy
