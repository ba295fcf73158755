"""Which audit entries to show: by who, from where, what and when (the API, its CSV and the page)."""

from __future__ import annotations

import django_filters

from common.audit.choices import AuditSource
from common.audit.models import AuditEntry
from common.filters import IsoDateTimeFilter

DATETIME_ERROR = {"invalid": "Must be an ISO 8601 date-time, e.g. 2025-01-31T00:00:00Z."}


class AuditEntryFilterSet(django_filters.FilterSet):
    """Entries by who, from where, what and when."""

    actor = django_filters.CharFilter()
    source = django_filters.ChoiceFilter(choices=AuditSource.choices)
    action = django_filters.CharFilter()
    object_type = django_filters.CharFilter(help_text="app_label.model, e.g. routing.policy or billing.budget.")
    object_id = django_filters.CharFilter()
    created_after = IsoDateTimeFilter(
        field_name="created",
        lookup_expr="gte",
        label="From",
        help_text="At or after (ISO 8601).",
        error_messages=DATETIME_ERROR,
    )
    created_before = IsoDateTimeFilter(
        field_name="created",
        lookup_expr="lt",
        label="Until",
        help_text="Before (ISO 8601).",
        error_messages=DATETIME_ERROR,
    )

    class Meta:
        model = AuditEntry
        fields = ["actor", "source", "action", "object_type", "object_id"]
