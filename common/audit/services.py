"""Audit writes: `audit_record` for a service's own entry, `track` for a model's saves and deletes.

Tracked models are audited by signals, so the admin, the management API, background jobs,
commands and the shell all leave an entry without each remembering to. A service whose
change is not a plain save (a policy version, a restore) calls `audit_record` itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import DecimalField, Field, Model
from django.db.models.signals import post_delete, post_save, pre_save

from common.audit.context import current_action, current_actor, tracking
from common.audit.models import AuditEntry

# Bookkeeping that moves on its own (timestamps, evaluation marks) is not a change anyone made.
BOOKKEEPING_FIELDS = frozenset({"created", "updated", "last_evaluated_at", "last_notified_at"})
BEFORE_ATTRIBUTE = "_audit_before"

_excluded: dict[type[Model], frozenset[str]] = {}


def audit_record(*, action: str, obj: Model, before: Any, after: Any) -> AuditEntry:
    """Append one entry for `obj`, by whoever acts now (`common.audit.context`)."""
    actor = current_actor()
    return AuditEntry.objects.create(
        actor=actor.name[:200],
        source=actor.source,
        address=actor.address,
        action=current_action(action),
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        before=before,
        after=after,
    )


def model_values(obj: Model, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The row's field values as JSON would store them (foreign keys as ids, Decimal as text)."""
    skip = BOOKKEEPING_FIELDS | set(exclude)
    values = {f.name: _stored(f, f.value_from_object(obj)) for f in obj._meta.concrete_fields if f.name not in skip}
    stored: dict[str, Any] = json_safe(values)
    return stored


def _stored(field: Field[Any, Any], value: Any) -> Any:
    """A decimal as the column keeps it: `100` and `100.0000` are the same price, not a change."""
    if isinstance(field, DecimalField) and value is not None:
        return f"{Decimal(value).quantize(Decimal(1).scaleb(-field.decimal_places)):f}"
    return value


def json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def track(model: type[Model], *, exclude: Iterable[str] = (), saves: bool = True) -> None:
    """Audit every save (unless `saves` is false) and every delete of `model`'s rows.

    `exclude` names fields kept out of the entries (secrets' hashes, large blobs).
    """
    _excluded[model] = frozenset(exclude)
    uid = model._meta.label_lower
    if saves:
        pre_save.connect(_remember_before, sender=model, dispatch_uid=f"audit_before_{uid}")
        post_save.connect(_saved, sender=model, dispatch_uid=f"audit_saved_{uid}")
    post_delete.connect(_deleted, sender=model, dispatch_uid=f"audit_deleted_{uid}")


def _remember_before(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    if not tracking():
        return
    # The row as stored, not as the form left the instance: one read per configuration save.
    stored = None if instance._state.adding else sender._default_manager.filter(pk=instance.pk).first()
    setattr(instance, BEFORE_ATTRIBUTE, None if stored is None else model_values(stored, exclude=_excluded[sender]))


def _saved(sender: type[Model], instance: Model, created: bool, **kwargs: Any) -> None:
    if not tracking():
        return
    before = instance.__dict__.pop(BEFORE_ATTRIBUTE, None)
    after = model_values(instance, exclude=_excluded[sender])
    if created or before is None:
        audit_record(action="create", obj=instance, before=None, after=after)
    elif before != after:
        audit_record(action="update", obj=instance, before=before, after=after)


def _deleted(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    if not tracking():
        return
    audit_record(action="delete", obj=instance, before=model_values(instance, exclude=_excluded[sender]), after=None)
