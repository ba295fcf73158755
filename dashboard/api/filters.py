"""Query-string filters for the dashboard API's lists: one FilterSet per filtered model.

DRF's `DjangoFilterBackend` (the default filter backend) applies them and answers a bad
value with 400 naming the parameter; drf-spectacular documents them from these classes.
"""

from __future__ import annotations

import django_filters

from common.filters import IsoDateTimeFilter
from dashboard.choices import Resolution
from dashboard.models import Rollup

ISO_DATETIME_ERROR = {"invalid": "Must be an ISO 8601 date-time, e.g. 2025-01-31T00:00:00Z."}


class RollupFilterSet(django_filters.FilterSet):
    """Rollups by resolution, policy and bucket start."""

    resolution = django_filters.ChoiceFilter(choices=Resolution.choices)
    policy = django_filters.CharFilter(field_name="policy_name", help_text="Policy name, as recorded.")
    since = IsoDateTimeFilter(
        field_name="bucket",
        lookup_expr="gte",
        help_text="Buckets starting at or after (ISO 8601).",
        error_messages=ISO_DATETIME_ERROR,
    )
    until = IsoDateTimeFilter(
        field_name="bucket",
        lookup_expr="lt",
        help_text="Buckets starting before (ISO 8601).",
        error_messages=ISO_DATETIME_ERROR,
    )

    class Meta:
        model = Rollup
        fields = ["resolution", "policy", "since", "until"]
