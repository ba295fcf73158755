"""Rollups from stored records: counted inside the flusher's transaction, pruned past retention."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from dashboard.choices import Resolution
from dashboard.models import Rollup, SpendRollup
from dashboard.rollups.compute import COUNTERS, Totals, rollup_deltas, spend_deltas
from dashboard.rollups.sketch import sketch_merge
from routing.records.payload import RecordPayload

UPSERT_BATCH = 500


ROLLUP_KEY = ["resolution", "bucket", "policy", "tier", "model"]


SPEND_KEY = ["day", "scope", "kind", "name"]


def rollups_record(*, payloads: Sequence[RecordPayload]) -> None:
    """Add freshly stored request records to the minute, hour and spend rollups.

    Called inside the flusher's transaction (`routing.records.signals.records_stored`), with
    records stored just now: each record is counted exactly once, and rolled back with
    its batch.
    """
    rollup_adds = rollup_deltas(payloads)
    _add_to_rows(Rollup, ROLLUP_KEY, rollup_adds, _rollup_add, [*COUNTERS, "latency", "policy_name", "updated"])
    _add_to_rows(SpendRollup, SPEND_KEY, spend_deltas(payloads), _spend_add, ["requests", "cost", "updated"])


def _rollup_add(row: Rollup, delta: tuple[str, Totals]) -> None:
    policy_name, totals = delta
    row.policy_name = policy_name
    for name in COUNTERS:
        setattr(row, name, getattr(row, name) + getattr(totals, name))
    sketch_merge(row.latency, totals.latency)


def _spend_add(row: SpendRollup, delta: tuple[int, Decimal]) -> None:
    requests, cost = delta
    row.requests += requests
    row.cost += cost


def _add_to_rows(
    model: type[models.Model],
    key_fields: list[str],
    deltas: dict[Any, Any],
    add: Callable[[Any, Any], None],
    update_fields: list[str],
) -> None:
    """Add `deltas` to the rows with those keys, creating missing rows, in three statements.

    The insert creates missing rows and locks existing ones in key order, in one statement,
    so concurrent flushers always take row locks in the same order and never deadlock; the
    read then sees committed values, and Decimal sums happen in Python (SQLite has no
    decimal arithmetic).
    """
    if not deltas:
        return
    keys = sorted(deltas)
    model.objects.bulk_create(  # type: ignore[attr-defined]
        [model(**_key_kwargs(key_fields, key)) for key in keys],
        update_conflicts=True,
        unique_fields=key_fields,
        update_fields=["updated"],
        batch_size=UPSERT_BATCH,
    )
    rows = [row for row in _rows_with_keys(model, key_fields, keys) if _key_of(row, key_fields) in deltas]
    now = timezone.now()
    for row in rows:
        add(row, deltas[_key_of(row, key_fields)])
        row.updated = now
    model.objects.bulk_update(rows, update_fields, batch_size=UPSERT_BATCH)  # type: ignore[attr-defined]


def _key_kwargs(key_fields: list[str], key: tuple[Any, ...]) -> dict[str, Any]:
    return {(f"{name}_id" if name == "policy" else name): value for name, value in zip(key_fields, key, strict=True)}


def _key_of(row: models.Model, key_fields: list[str]) -> tuple[Any, ...]:
    return tuple(getattr(row, f"{name}_id" if name == "policy" else name) for name in key_fields)


def _rows_with_keys(model: type[models.Model], key_fields: list[str], keys: Iterable[tuple[Any, ...]]) -> Any:
    """Every row whose key fields each take a value among `keys`: a superset, in one query."""
    columns = [set() for _ in key_fields]  # type: list[set[Any]]
    for key in keys:
        for values, value in zip(columns, key, strict=True):
            values.add(value)
    lookups = {f"{name}__in": values for name, values in zip(key_fields, columns, strict=True)}
    return model.objects.filter(**lookups).order_by("pk")  # type: ignore[attr-defined]


def rollups_prune(*, now: datetime | None = None) -> int:
    """Delete rollups older than their retention; returns how many rows went."""
    now = now or timezone.now()
    minute_cutoff = now - timedelta(days=settings.CASCADEOPS_ROLLUP_MINUTE_RETENTION_DAYS)
    hour_cutoff = now - timedelta(days=settings.CASCADEOPS_ROLLUP_HOUR_RETENTION_DAYS)
    deleted, _ = Rollup.objects.filter(
        Q(resolution=Resolution.MINUTE, bucket__lt=minute_cutoff)
        | Q(resolution=Resolution.HOUR, bucket__lt=hour_cutoff)
    ).delete()
    spent, _ = SpendRollup.objects.filter(day__lt=hour_cutoff.date()).delete()
    return deleted + spent
