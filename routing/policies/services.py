"""Writes to policies and API keys: the admin, the REST API and commands call these.

`policy_validate` is the one place a policy's tiers and task rules are checked as a whole;
the admin's formsets and the REST serializer call it and show its errors their own way.
`policy_create` and `policy_update` validate, then write: tiers and rules are replaced
wholesale and the policy row is saved once, so each write is exactly one new version,
stored whole by `routing.policies.versions`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Required, TypedDict, TypeVar

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from common.audit.context import audit_action
from routing.engine.classify import DEFAULT_TASK_RULES
from routing.models import ApiKey, ModelEndpoint, Policy, PolicyTier, TaskRule
from routing.models.policies import MAX_SAMPLES
from routing.policies.versions import policy_version_record

_T = TypeVar("_T")

# A cascade of one tier has nowhere to escalate to.
MIN_TIERS = 2


class TierSpec(TypedDict, total=False):
    """One tier as the REST API and the admin send it; a field left out takes the model's default."""

    position: Required[int]
    endpoint: Required[ModelEndpoint]
    threshold: float
    max_tokens: int | None
    samples: int
    sample_temperature: float
    extractor: str
    peers: Sequence[ModelEndpoint]
    judge: ModelEndpoint | None


# A tier's fields, in the order forms and the REST API show them.
TIER_FIELDS: tuple[str, ...] = tuple(TierSpec.__annotations__)


class RuleSpec(TypedDict, total=False):
    """One task rule as sent; `first_tier` indexes the policy's tiers, cheapest first."""

    position: Required[int]
    category: Required[str]
    pattern: Required[str]
    first_tier: int


# (endpoint, threshold): the shorthand that the demo, benches and tests seed policies with.
TierPair = tuple[ModelEndpoint, float]

DEFAULT_RULES: list[RuleSpec] = [
    {"position": i, "category": category, "pattern": pattern, "first_tier": first_tier}
    for i, (category, pattern, first_tier) in enumerate(DEFAULT_TASK_RULES)
]


def api_key_create(
    *,
    name: str,
    policy: Policy,
    team: str,
    app: str,
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned once and never stored."""
    plaintext = ApiKey.generate()
    key = ApiKey(
        name=name,
        policy=policy,
        team=team,
        app=app,
        expires_at=expires_at,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    key.set_key(plaintext)
    key.save()
    return key, plaintext


def api_key_revoke(*, key: ApiKey) -> None:
    """Revoke a key from now; its audit entry is a "revoke" (a key already revoked stays as it is)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        with audit_action("revoke"):
            key.save(update_fields=["revoked_at"])


# --- policies: check ---------------------------------------------------------------------


def policy_validate(
    *,
    tiers: Sequence[TierSpec] | None,
    rules: Sequence[RuleSpec] | None,
    policy: Policy | None = None,
) -> None:
    """Check a policy's tiers and task rules together; raise `ValidationError` if anything is wrong.

    `None` is a list left as it is: on an update (`policy` given) the saved list is checked
    against the one sent; otherwise it is not checked (the admin's formsets each see one list).
    The errors are keyed "tiers" and "task_rules"; each message names the tier or rule position.
    """
    errors: dict[str, list[str]] = {"tiers": [], "task_rules": []}
    if tiers is not None:
        errors["tiers"] += _tiers_check(tiers)
        if rules is None and policy is not None:
            errors["tiers"] += _kept_task_rules_check(policy, tier_count=len(tiers))
    if rules is not None:
        errors["task_rules"] += _task_rules_check(rules, tier_count=_tier_count(tiers, policy))
    if any(errors.values()):
        raise ValidationError({key: messages for key, messages in errors.items() if messages})


def _tier_count(tiers: Sequence[TierSpec] | None, policy: Policy | None) -> int | None:
    if tiers is not None:
        return len(tiers)
    # A PATCH may send rules without tiers: they must fit the tiers already saved.
    return policy.tiers.count() if policy is not None else None


def _tiers_check(tiers: Sequence[TierSpec]) -> list[str]:
    problems = [f"A policy needs at least {MIN_TIERS} tiers, cheapest first."] if len(tiers) < MIN_TIERS else []
    problems += [f"Two tiers share position {p}." for p in _duplicates(t["position"] for t in tiers)]
    for tier in tiers:
        problems += _tier_check(tier)
    return problems


def _tier_check(tier: TierSpec) -> list[str]:
    endpoint, peers, samples = tier["endpoint"], tier.get("peers", ()), tier.get("samples", 1)
    problems = [f"{role} {e.name} is disabled." for role, e in _tier_endpoints(tier) if not e.enabled]
    if endpoint in peers:
        problems.append(f"its own endpoint {endpoint.name} cannot also be its peer.")
    problems += [f"peer {peer.name} is listed twice." for peer in _duplicates(peers)]
    if not 1 <= samples <= MAX_SAMPLES:
        problems.append(f"samples must be from 1 to {MAX_SAMPLES}.")
    return [f"Tier {tier['position']}: {problem}" for problem in problems]


def _tier_endpoints(tier: TierSpec) -> Iterable[tuple[str, ModelEndpoint]]:
    """Every endpoint a tier calls, with the part it plays."""
    yield "endpoint", tier["endpoint"]
    yield from (("peer", peer) for peer in tier.get("peers", ()))
    if (judge := tier.get("judge")) is not None:
        yield "judge", judge


def _task_rules_check(rules: Sequence[RuleSpec], *, tier_count: int | None) -> list[str]:
    problems = [f"Two task rules share position {p}." for p in _duplicates(r["position"] for r in rules)]
    for rule in rules:
        problems += _task_rule_check(rule, tier_count=tier_count)
    return problems


def _task_rule_check(rule: RuleSpec, *, tier_count: int | None) -> list[str]:
    problems = []
    try:
        re.compile(rule["pattern"])
    except re.error as exc:
        problems.append(f"not a valid regular expression: {exc}.")
    if tier_count is not None and rule.get("first_tier", 0) >= tier_count:
        problems.append(f"first_tier must be a tier index from 0 to {tier_count - 1}.")
    return [f"Task rule {rule['position']}: {problem}" for problem in problems]


def _kept_task_rules_check(policy: Policy, *, tier_count: int) -> list[str]:
    # A PATCH may send tiers without rules: the saved rules must still start on a tier.
    highest = max((rule.first_tier for rule in policy.task_rules.all()), default=0)
    if highest < tier_count:
        return []
    return [f"A task rule starts on tier {highest}; keep more tiers or send new task rules."]


def _duplicates(items: Iterable[_T]) -> list[_T]:
    return [item for item, n in Counter(items).items() if n > 1]


# --- policies: write ---------------------------------------------------------------------


@transaction.atomic
def policy_create(
    *,
    name: str,
    tiers: Sequence[TierSpec | TierPair],
    task_rules: Sequence[RuleSpec] | None = None,
    with_default_rules: bool = True,
    **fields: Any,
) -> Policy:
    """Create a policy (version 1) with its tiers and task rules.

    `tiers` are specs, checked by `policy_validate` first, or `(endpoint, threshold)` pairs
    cheapest first: the shorthand the demo, benches and tests seed with, written unchecked
    (a test may want a policy of one tier). Without `task_rules` the policy gets the default
    rules, unless `with_default_rules` is false.
    """
    specs = [_tier_spec(position, tier) for position, tier in enumerate(tiers)]
    rules = DEFAULT_RULES if task_rules is None and with_default_rules else task_rules or []
    if not any(isinstance(tier, tuple) for tier in tiers):
        policy_validate(tiers=specs, rules=rules)
    policy = Policy.objects.create(name=name, **fields)
    _tiers_create(policy, specs)
    _task_rules_create(policy, rules)
    policy_version_record(policy=policy)
    return policy


@transaction.atomic
def policy_update(
    *,
    policy: Policy,
    tiers: Sequence[TierSpec] | None = None,
    task_rules: Sequence[RuleSpec] | None = None,
    restored_from: int | None = None,
    **fields: Any,
) -> Policy:
    """Update a policy's fields and replace the tiers or task rules given: one new version.

    A list left out (a PATCH) is kept, and checked against the one sent. The policy row is
    saved after its children, once, so `version` moves by one per call; the whole policy is
    then stored as that version (`restored_from`: the earlier version it brings back).
    """
    policy_validate(tiers=tiers, rules=task_rules, policy=policy)
    if tiers is not None:
        policy.tiers.all().delete()
        _tiers_create(policy, tiers)
    if task_rules is not None:
        policy.task_rules.all().delete()
        _task_rules_create(policy, task_rules)
    for field, value in fields.items():
        setattr(policy, field, value)
    policy.save()
    policy_version_record(policy=policy, restored_from=restored_from)
    return policy


def _tier_spec(position: int, tier: TierSpec | TierPair) -> TierSpec:
    if isinstance(tier, tuple):
        endpoint, threshold = tier
        return {"position": position, "endpoint": endpoint, "threshold": threshold}
    return tier


def _tiers_create(policy: Policy, tiers: Sequence[TierSpec]) -> None:
    rows = PolicyTier.objects.bulk_create(
        PolicyTier(policy=policy, **{field: value for field, value in tier.items() if field != "peers"})
        for tier in tiers
    )
    # bulk_create cannot set a many-to-many field: the peers go in once the tiers have ids.
    Peer = PolicyTier.peers.through
    Peer.objects.bulk_create(
        Peer(policytier=row, modelendpoint=peer)
        for row, tier in zip(rows, tiers, strict=True)
        for peer in tier.get("peers", ())
    )


def _task_rules_create(policy: Policy, rules: Iterable[RuleSpec]) -> None:
    TaskRule.objects.bulk_create(TaskRule(policy=policy, **rule) for rule in rules)
