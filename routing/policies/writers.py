"""Saves a policy with its nested tiers and task rules from validated REST data.

The serializer validates; these functions write. Tiers and rules are replaced wholesale,
and the policy row is saved last and once, so each API write is exactly one new version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from routing.engine.classify import DEFAULT_TASK_RULES
from routing.models import Policy, PolicyTier, TaskRule

DEFAULT_RULES = [
    {"position": i, "category": category, "pattern": pattern, "first_tier": first_tier}
    for i, (category, pattern, first_tier) in enumerate(DEFAULT_TASK_RULES)
]


@transaction.atomic
def policy_create_from_data(*, data: Mapping[str, Any]) -> Policy:
    """Create a policy, its tiers and its task rules (the defaults when none are given)."""
    fields = dict(data)
    tiers = fields.pop("tiers")
    rules = fields.pop("task_rules", DEFAULT_RULES)
    policy = Policy.objects.create(**fields)
    _tiers_create(policy, tiers)
    _rules_create(policy, rules)
    return policy


@transaction.atomic
def policy_update_from_data(*, policy: Policy, data: Mapping[str, Any]) -> Policy:
    """Update a policy's fields and replace the tiers or rules that `data` carries.

    Lists that `data` leaves out (a PATCH) are kept as they are. The policy is saved
    after its children, once, so `version` moves by one per call.
    """
    fields = dict(data)
    tiers = fields.pop("tiers", None)
    rules = fields.pop("task_rules", None)
    if tiers is not None:
        policy.tiers.all().delete()
        _tiers_create(policy, tiers)
    if rules is not None:
        policy.task_rules.all().delete()
        _rules_create(policy, rules)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.save()
    return policy


def _tiers_create(policy: Policy, tiers: Iterable[Mapping[str, Any]]) -> None:
    PolicyTier.objects.bulk_create(PolicyTier(policy=policy, **tier) for tier in tiers)


def _rules_create(policy: Policy, rules: Iterable[Mapping[str, Any]]) -> None:
    TaskRule.objects.bulk_create(TaskRule(policy=policy, **rule) for rule in rules)
