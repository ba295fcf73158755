"""The audit trail's one table, append-only."""

from __future__ import annotations

from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from common.audit.choices import AuditSource


class AuditEntryImmutable(Exception):
    """An audit entry was about to be changed or deleted."""


class AppendOnlyQuerySet(models.QuerySet["AuditEntry"]):
    """No bulk update or delete: entries are only ever added."""

    def update(self, **kwargs: Any) -> int:
        raise AuditEntryImmutable("Audit entries cannot be changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditEntryImmutable("Audit entries cannot be deleted.")


# What an entry shows, in reading order: the admin's detail page and the REST API.
SHOWN_FIELDS = (
    "created",
    "actor",
    "source",
    "address",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "changes",
    "before",
    "after",
)


class AuditEntry(models.Model):
    """One configuration change: who, when, from where, on what, and the values before and after.

    `before` is empty for a creation and `after` for a deletion. The actor is stored as text
    so an entry outlives the user who made it. The database refuses updates too (a trigger,
    see the migration); docs/audit.md.
    """

    created = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=200, blank=True, help_text="The user, the job or the command.")
    source = models.CharField(max_length=10, choices=AuditSource.choices)
    address = models.GenericIPAddressField(null=True, blank=True, help_text="The client's address, for requests.")
    action = models.CharField(max_length=30)
    object_type = models.CharField(max_length=100, help_text="app_label.model")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return (
            f"{self.created:%Y-%m-%d %H:%M:%S} {self.actor or '?'} {self.action} {self.object_type} {self.object_repr}"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditEntryImmutable("Audit entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditEntryImmutable("Audit entries cannot be deleted.")

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """The fields whose value differs, as (before, after)."""
        before, after = self.before or {}, self.after or {}
        keys = [*before, *(k for k in after if k not in before)]
        return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}
