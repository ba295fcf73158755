"""Query-string filters for the dashboard API's lists: one FilterSet per filtered model.

DRF's `DjangoFilterBackend` (the default filter backend) applies them and answers a bad
value with 400 naming the parameter; drf-spectacular documents them from these classes.
"""

from __future__ import annotations

import django_filters

from common.filters import time_range
from dashboard.choices import Resolution
from dashboard.models import Rollup


class RollupFilterSet(django_filters.FilterSet):
    """Rollups by resolution, policy and bucket start."""

    resolution = django_filters.ChoiceFilter(choices=Resolution.choices)
    policy = django_filters.CharFilter(field_name="policy_name", help_text="Policy name, as recorded.")
    since, until = time_range("bucket", "Buckets starting")

    class Meta:
        model = Rollup
        fields = ["resolution", "policy", "since", "until"]
