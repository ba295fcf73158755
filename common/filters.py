"""Query-string filter parts the management APIs share, refusing what the database cannot take."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

# No time zone is further from UTC; PostgreSQL refuses an offset of 16 hours or more (a 500).
MAX_UTC_OFFSET = timedelta(hours=14)


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time whose UTC offset is within ±14:00."""

    default_error_messages = {"invalid": "Must be an ISO 8601 date-time, e.g. 2025-01-31T00:00:00Z."}

    def to_python(self, value: Any) -> datetime | None:
        parsed: datetime | None = super().to_python(value)
        offset = parsed.utcoffset() if parsed is not None else None
        if offset is not None and abs(offset) > MAX_UTC_OFFSET:
            raise forms.ValidationError("The UTC offset must be within ±14:00.", code="invalid")
        return parsed


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """django-filter's ISO 8601 filter, with the offset bounded."""

    field_class = BoundedIsoDateTimeField


def time_range(field_name: str, what: str) -> tuple[IsoDateTimeFilter, IsoDateTimeFilter]:
    """The `[from, until)` pair of filters on `field_name`: at or after, and before."""
    return (
        IsoDateTimeFilter(
            field_name=field_name, lookup_expr="gte", label="From", help_text=f"{what} at or after (ISO 8601)."
        ),
        IsoDateTimeFilter(
            field_name=field_name, lookup_expr="lt", label="Until", help_text=f"{what} before (ISO 8601)."
        ),
    )
