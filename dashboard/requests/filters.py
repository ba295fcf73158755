"""The request log's filters: one FilterSet over request records, each filter on an indexed column
where the volume calls for one (docs/request-log.md)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import django_filters
from django import forms
from django.core.validators import RegexValidator
from django.db.models import Exists, OuterRef, Q, QuerySet

from common.filters import IsoDateTimeFilter
from routing.choices import AttemptOutcome, RecordStatus
from routing.models import ApiKey, Policy, RequestAttempt, RequestRecord

YES_NO = [("yes", "yes"), ("no", "no")]
# A tag's name becomes a JSON key lookup: "__" would make it a path into nested values.
TAG_NAME = RegexValidator(r"^(?!.*__)[^=]+(=.*)?$", "Write a tag as name=value or name (no '__' in the name).")
DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}, format="%Y-%m-%dT%H:%M:%S")


class RequestLogFilterSet(django_filters.FilterSet):
    """Request records by time, who sent them, how they were routed, what they cost and took."""

    q = django_filters.CharFilter(method="search", label="Request id or end user")
    since = IsoDateTimeFilter(field_name="created", lookup_expr="gte", label="From", widget=DATETIME)
    until = IsoDateTimeFilter(field_name="created", lookup_expr="lt", label="Until", widget=DATETIME)
    policy = django_filters.ModelChoiceFilter(queryset=Policy.objects.only("id", "name"), empty_label="any policy")
    key = django_filters.ModelChoiceFilter(
        field_name="api_key", queryset=ApiKey.objects.only("id", "name", "prefix"), empty_label="any key", label="Key"
    )
    team = django_filters.CharFilter()
    app = django_filters.CharFilter()
    end_user = django_filters.CharFilter(label="End user")
    tag = django_filters.CharFilter(
        method="tagged", label="Tag", help_text="name=value, or name alone", validators=[TAG_NAME]
    )
    status = django_filters.ChoiceFilter(choices=RecordStatus.choices, empty_label="any status")
    reason = django_filters.CharFilter(method="refused_for", label="Refused for", help_text="429, budget_exceeded, …")
    outcome = django_filters.ChoiceFilter(
        choices=AttemptOutcome.choices, method="with_attempt", empty_label="any attempt", label="An attempt"
    )
    model = django_filters.CharFilter(field_name="final_model", label="Answered by")
    escalated = django_filters.ChoiceFilter(choices=YES_NO, method="yes_no", empty_label="either", label="Escalated")
    cached = django_filters.ChoiceFilter(choices=YES_NO, method="yes_no", empty_label="either", label="Cached")
    # Money columns hold 18 digits, 10 after the point: a larger bound is refused, not sent.
    cost_min = django_filters.NumberFilter(
        field_name="cost", lookup_expr="gte", label="Cost from ($)", max_digits=18, decimal_places=10, min_value=0
    )
    cost_max = django_filters.NumberFilter(
        field_name="cost", lookup_expr="lte", label="Cost to ($)", max_digits=18, decimal_places=10, min_value=0
    )
    latency_min = django_filters.NumberFilter(
        field_name="latency_ms", lookup_expr="gte", label="Latency from (ms)", max_digits=12, min_value=0
    )
    latency_max = django_filters.NumberFilter(
        field_name="latency_ms", lookup_expr="lte", label="Latency to (ms)", max_digits=12, min_value=0
    )

    class Meta:
        model = RequestRecord
        fields: list[str] = []

    def search(self, queryset: QuerySet[RequestRecord], name: str, value: str) -> QuerySet[RequestRecord]:
        """A request id finds that request; anything else is an end user, exactly.

        One indexed column, not a substring or an OR over several: either makes PostgreSQL walk
        the whole time index (team, app and model have filters of their own).
        """
        value = value.strip()
        try:
            return queryset.filter(id=uuid.UUID(value))
        except ValueError:
            return queryset.filter(end_user=value)

    def tagged(self, queryset: QuerySet[RequestRecord], name: str, value: str) -> QuerySet[RequestRecord]:
        """`name=value` matches that tag's value; `name` alone any request carrying the tag."""
        tag, has_value, wanted = value.partition("=")
        if not has_value:
            return queryset.filter(metadata__has_key=tag.strip())
        return queryset.filter(**{f"metadata__{tag.strip()}": wanted.strip()})

    def refused_for(self, queryset: QuerySet[RequestRecord], name: str, value: str) -> QuerySet[RequestRecord]:
        """Refusals whose reason (`429 budget_exceeded`) starts with the status or is the code."""
        value = value.strip()
        match = (
            Q(error__startswith=f"{value} ") if value.isdigit() else Q(error__regex=rf"^\d{{3}} {re.escape(value)}:")
        )
        return queryset.filter(match, status=RecordStatus.REFUSED)

    def with_attempt(self, queryset: QuerySet[RequestRecord], name: str, value: str) -> QuerySet[RequestRecord]:
        """Requests with at least one attempt of this outcome (a failed tier, a gate's sample)."""
        return queryset.filter(Exists(RequestAttempt.objects.filter(record=OuterRef("pk"), outcome=value)))

    def yes_no(self, queryset: QuerySet[RequestRecord], name: str, value: str) -> QuerySet[RequestRecord]:
        match = Q(escalated=True) if name == "escalated" else ~Q(cache="")
        return queryset.filter(match if value == "yes" else ~match)

    def active(self) -> dict[str, Any]:
        """The filters in use, for links that keep them (the next page, the detail's way back)."""
        if self.data is None or not self.form.is_valid():
            return {}
        return {name: self.data[name] for name, value in self.form.cleaned_data.items() if value not in (None, "")}
