"""The shared configuration version, in the database for embedded mode."""

from __future__ import annotations

from django.db import models


class ConfigState(models.Model):
    """A single row whose counter moves whenever routing configuration changes.

    Embedded mode's cross-process invalidation signal; with Redis the counter lives there.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"config v{self.version}"
