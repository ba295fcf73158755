"""Policy versions: the whole policy as it was, one immutable row per change."""

from __future__ import annotations

from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from routing.models.policies import Policy


class PolicyVersionImmutable(Exception):
    """A stored policy version was about to be changed."""


class PolicyVersion(models.Model):
    """Policy `policy` as it stood at version `number`: fields, tiers, task rules, as JSON.

    Written by `routing.policies.versions.policy_version_record` whenever a policy changes;
    a request record names the version that routed it by (policy, number). See
    docs/policy-versions.md.
    """

    policy = models.ForeignKey(Policy, models.SET_NULL, null=True, blank=True, related_name="versions")
    policy_name = models.CharField(max_length=100, help_text="The policy's name then; kept if it is deleted.")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField(encoder=DjangoJSONEncoder)
    author = models.CharField(max_length=200, blank=True, help_text="The user, the job or the command.")
    source = models.CharField(max_length=10, blank=True)
    created = models.DateTimeField(default=timezone.now)
    restored_from = models.PositiveIntegerField(
        null=True, blank=True, help_text="The earlier version this one restored."
    )

    class Meta:
        ordering = ["policy_name", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policyversion_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.policy_name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The author is text, not a user: a version outlives its author's account. Deleting the
        # policy clears `policy` with a query update, never through here.
        if not self._state.adding:
            raise PolicyVersionImmutable("A policy version cannot be changed; restore it as a new one.")
        super().save(*args, **kwargs)
