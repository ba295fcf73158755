"""API keys: hashed at rest, each bound to a policy, a team and an app."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone

from routing.models.policies import Policy

KEY_PREFIX = "co-"


KEY_PREFIX_LENGTH = 12


def hash_api_key(plaintext: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(plaintext.encode()).hexdigest()


class ApiKey(models.Model):
    """An app's credential for the routing API, stored only as a hash."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=KEY_PREFIX_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    policy = models.ForeignKey(Policy, models.PROTECT, related_name="api_keys")
    team = models.CharField(max_length=100)
    app = models.CharField(max_length=100)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests this key may send per minute (empty: no limit)."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompt and completion tokens this key may use per minute (empty: no limit)."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "app", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def generate() -> str:
        return KEY_PREFIX + secrets.token_urlsafe(32)

    def set_key(self, plaintext: str) -> None:
        self.prefix = plaintext[:KEY_PREFIX_LENGTH]
        self.key_hash = hash_api_key(plaintext)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())
