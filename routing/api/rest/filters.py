"""Query-string filters for the management API's lists: one FilterSet per filtered model.

DRF's `DjangoFilterBackend` (the default filter backend) applies them and answers a bad
value with 400 naming the parameter; drf-spectacular documents them from these classes.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms

from common.filters import time_range
from routing.choices import RecordStatus
from routing.models import RequestRecord

TRUE_VALUES = frozenset({"true", "1", "yes"})
FALSE_VALUES = frozenset({"false", "0", "no"})


class StrictBooleanField(forms.Field):
    """`true`/`false`, `1`/`0` or `yes`/`no` in any case; blank is no filter, anything else an error."""

    # Not django-filter's BooleanWidget: it reads "maybe" as blank and quietly drops the filter.
    widget = forms.Select(choices=[("", "---------"), ("true", "Yes"), ("false", "No")])
    default_error_messages = {"invalid": "Must be true or false."}

    def to_python(self, value: Any) -> bool | None:
        if value in self.empty_values:
            return None
        lowered = str(value).lower()
        if lowered not in TRUE_VALUES | FALSE_VALUES:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return lowered in TRUE_VALUES


class StrictBooleanFilter(django_filters.Filter):
    """A boolean filter that refuses what it cannot read (drf-spectacular types it from the model field)."""

    field_class = StrictBooleanField


class RequestRecordFilterSet(django_filters.FilterSet):
    """Routed requests by policy, team, app, status, escalation and creation time."""

    policy = django_filters.CharFilter(field_name="policy_name", help_text="Policy name, as recorded.")
    team = django_filters.CharFilter()
    app = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=RecordStatus.choices)
    escalated = StrictBooleanFilter()
    created_after, created_before = time_range("created", "Created")

    class Meta:
        model = RequestRecord
        fields = ["policy", "team", "app", "status", "escalated", "created_after", "created_before"]
