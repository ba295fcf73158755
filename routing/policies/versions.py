"""Policy versions: the whole policy stored on every change, compared, and restored as a new version.

`policy_version_record` is called by every policy write (`routing.policies.services`, the
admin, auto-tuning) once the policy and its children are saved; it stores the snapshot
under the policy's current version number and writes the audit entry with the previous
version's snapshot as "before". See docs/policy-versions.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model

from common.audit.context import audit_action, current_actor
from common.audit.services import audit_record, model_values
from routing.models import (
    CategoryLadder,
    LadderTier,
    ModelEndpoint,
    Policy,
    PolicyTier,
    PolicyVersion,
    RequestRecord,
    TaskCategory,
    TaskRule,
)

# What a version leaves out: the row's own bookkeeping (the number is the version's own).
POLICY_EXCLUDE = ("id", "version")
CHILD_EXCLUDE = ("id", "policy", "ladder")
VERSION_PREFETCH = ("tiers__peers", "tiers__endpoint", "task_rules", "ladders__tiers__endpoint", "ladders__category")


def policy_version_json(policy: Model) -> dict[str, Any]:
    """The policy's fields, tiers (with peers), task rules and category ladders, as JSON.

    Reads `_meta` and relation names only, so a migration's historical models work too;
    a field added to any of these rows later is part of every version from then on.
    """
    tiers = sorted(policy.tiers.all(), key=lambda t: t.position)  # type: ignore[attr-defined]
    ladders = sorted(policy.ladders.all(), key=lambda ladder: ladder.category.name)  # type: ignore[attr-defined]
    return {
        "policy": model_values(policy, exclude=POLICY_EXCLUDE),
        "tiers": [_tier_values(tier) for tier in tiers],
        "task_rules": [
            model_values(rule, exclude=CHILD_EXCLUDE)
            for rule in sorted(policy.task_rules.all(), key=lambda r: r.position)  # type: ignore[attr-defined]
        ],
        "ladders": [_ladder_values(ladder) for ladder in ladders],
        "endpoint_names": _endpoint_names(tiers, ladders),
    }


def _tier_values(tier: Any) -> dict[str, Any]:
    return {**model_values(tier, exclude=CHILD_EXCLUDE), "peers": sorted(p.pk for p in tier.peers.all())}


def _ladder_values(ladder: Any) -> dict[str, Any]:
    rungs = sorted(ladder.tiers.all(), key=lambda t: t.position)
    return {"category": ladder.category.name, "tiers": [model_values(t, exclude=CHILD_EXCLUDE) for t in rungs]}


def _endpoint_names(tiers: list[Any], ladders: list[Any]) -> dict[str, str]:
    """Endpoint ids → names at the time, so a version still reads after an endpoint is renamed."""
    ids = {t.endpoint_id for t in tiers} | {p for t in tiers for p in _tier_values(t)["peers"]}
    ids |= {t.judge_id for t in tiers if t.judge_id is not None}
    ids |= {rung.endpoint_id for ladder in ladders for rung in ladder.tiers.all()}
    names = ModelEndpoint.objects.filter(id__in=ids).values_list("id", "name")
    return {str(endpoint_id): name for endpoint_id, name in sorted(names)}


def policy_version_record(*, policy: Policy, restored_from: int | None = None) -> PolicyVersion:
    """Store the policy as saved now under its current number; audit it against the previous version.

    Safe to call twice for one number: the first snapshot stands.
    """
    row = Policy.objects.prefetch_related(*VERSION_PREFETCH).get(pk=policy.pk)
    existing = PolicyVersion.objects.filter(policy=row, number=row.version).first()
    if existing is not None:
        return existing
    previous = PolicyVersion.objects.filter(policy=row, number__lt=row.version).order_by("-number").first()
    actor = current_actor()
    version = PolicyVersion.objects.create(
        policy=row,
        policy_name=row.name,
        number=row.version,
        snapshot=policy_version_json(row),
        author=actor.name[:200],
        source=actor.source,
        restored_from=restored_from,
    )
    before = previous.snapshot if previous is not None else None
    audit_record(action="update" if previous else "create", obj=row, before=before, after=version.snapshot)
    return version


def policy_version_publish(*, policy: Policy) -> PolicyVersion:
    """Save the policy row (its number moves by one) and record the new version."""
    policy.save()
    return policy_version_record(policy=policy)


def policy_version_for_record(record: RequestRecord) -> PolicyVersion | None:
    """The stored version that routed `record`, or None (routed before versions were kept)."""
    versions = PolicyVersion.objects.filter(number=record.policy_version)
    if record.policy_id is not None:
        return versions.filter(policy_id=record.policy_id).first()
    # The policy was deleted since: its versions keep its name.
    return versions.filter(policy__isnull=True, policy_name=record.policy_name).order_by("-created").first()


def policy_at_version(version: PolicyVersion) -> Policy:
    """The policy as it stood at `version`, in memory and never saved, its children prefetched.

    What `routing.config.snapshots.policy_snapshot` needs to route with a stored version (an
    experiment arm pinned to one): the endpoints are today's rows (their prices are the price
    book's at routing time), the rest is the version's. Endpoints deleted since are left out.
    """
    snapshot = version.snapshot
    endpoints = ModelEndpoint.objects.prefetch_related("prices", "fallback_endpoint__prices").in_bulk(
        [int(endpoint_id) for endpoint_id in snapshot.get("endpoint_names", {})]
    )
    policy = Policy(id=version.policy_id, version=version.number, **_as_attributes(Policy, snapshot["policy"]))
    tiers = [_tier_at(policy, -(i + 1), values, endpoints) for i, values in enumerate(snapshot["tiers"])]
    rules = [TaskRule(policy=policy, **_as_attributes(TaskRule, values)) for values in snapshot["task_rules"]]
    policy._prefetched_objects_cache = {  # type: ignore[attr-defined]
        "tiers": [tier for tier in tiers if tier.endpoint_id in endpoints],
        "task_rules": rules,
    }
    return policy


def _tier_at(policy: Policy, fake_id: int, values: dict[str, Any], endpoints: dict[int, ModelEndpoint]) -> PolicyTier:
    # An id only so Django lets the unsaved row's `peers` be read (from the prefetch cache below).
    fields = _as_attributes(PolicyTier, {k: v for k, v in values.items() if k not in ("endpoint", "judge", "peers")})
    tier = PolicyTier(id=fake_id, policy=policy, **fields)
    if values["endpoint"] in endpoints:
        tier.endpoint = endpoints[values["endpoint"]]
    tier.judge = endpoints.get(values.get("judge") or 0)
    tier._prefetched_objects_cache = {"peers": [endpoints[p] for p in values.get("peers", ()) if p in endpoints]}  # type: ignore[attr-defined]
    return tier


def _as_attributes(model: type[Model], values: dict[str, Any]) -> dict[str, Any]:
    """Stored field values as constructor arguments: foreign keys by their `_id`, unknown fields dropped."""
    fields = {f.name: f for f in model._meta.concrete_fields}
    skip = {"id", "policy", "version", "created", "updated"}
    return {fields[k].attname: v for k, v in values.items() if k in fields and k not in skip}


@transaction.atomic
def policy_version_restore(*, version: PolicyVersion) -> PolicyVersion:
    """Make `version`'s configuration current again, as a new version (the history stays as it was)."""
    from routing.policies.services import policy_update  # services records versions through this module

    if version.policy_id is None:
        raise ValidationError("The policy of this version was deleted; there is nothing to restore it into.")
    policy = Policy.objects.select_for_update().get(pk=version.policy_id)
    snapshot = version.snapshot
    with audit_action("restore"):
        # The ladders first: `policy_update` stores the version once everything is in place.
        _ladders_replace(policy, snapshot.get("ladders", []))
        policy_update(
            policy=policy,
            tiers=[_tier_spec(tier) for tier in snapshot["tiers"]],
            task_rules=[_rule_spec(rule) for rule in snapshot["task_rules"]],
            restored_from=version.number,
            **_restorable_fields(snapshot["policy"]),
        )
    return PolicyVersion.objects.get(policy=policy, number=policy.version)


def _restorable_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The policy's own fields that still exist (a field removed since is left out)."""
    current = {f.name for f in Policy._meta.concrete_fields} - set(POLICY_EXCLUDE) - {"created", "updated"}
    return {name: value for name, value in values.items() if name in current}


def _tier_spec(values: dict[str, Any]) -> Any:
    endpoints = _endpoints([values["endpoint"], *values.get("peers", ()), values.get("judge")])
    spec = {k: v for k, v in values.items() if k not in ("endpoint", "peers", "judge")}
    spec["endpoint"] = endpoints[values["endpoint"]]
    spec["peers"] = [endpoints[p] for p in values.get("peers", ())]
    spec["judge"] = endpoints[values["judge"]] if values.get("judge") is not None else None
    return spec


def _ladders_replace(policy: Policy, ladders: list[dict[str, Any]]) -> None:
    categories = {c.name: c for c in TaskCategory.objects.filter(name__in=[ladder["category"] for ladder in ladders])}
    if missing := sorted({ladder["category"] for ladder in ladders} - set(categories)):
        raise ValidationError(f"Task categories {missing} of this version no longer exist; it cannot be restored.")
    endpoints = _endpoints([rung["endpoint"] for ladder in ladders for rung in ladder["tiers"]])
    policy.ladders.all().delete()
    for values in ladders:
        ladder = CategoryLadder.objects.create(policy=policy, category=categories[values["category"]])
        LadderTier.objects.bulk_create(
            LadderTier(ladder=ladder, **{**rung, "endpoint": endpoints[rung["endpoint"]]}) for rung in values["tiers"]
        )


def _rule_spec(values: dict[str, Any]) -> Any:
    return {k: v for k, v in values.items() if k in ("position", "category", "pattern", "first_tier")}


def _endpoints(ids: list[int | None]) -> dict[int, ModelEndpoint]:
    wanted = {i for i in ids if i is not None}
    found = ModelEndpoint.objects.in_bulk(wanted)
    if missing := sorted(wanted - set(found)):
        raise ValidationError(f"Endpoint(s) {missing} of this version no longer exist; it cannot be restored.")
    return found


def snapshot_diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Every value that differs between two snapshots, as (path, before, after), in order.

    Paths read like `policy.cache_ttl_s`, `tiers[1].threshold`, `task_rules[0].pattern`.
    """
    old, new = dict(_flatten(before or {})), dict(_flatten(after))
    paths = [*old, *(path for path in new if path not in old)]
    return [(path, old.get(path), new.get(path)) for path in paths if old.get(path) != new.get(path)]


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, value
