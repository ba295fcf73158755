"""Which audit entries to show: by who, from where, what and when (the API, its CSV and the page)."""

from __future__ import annotations

import django_filters

from common.audit.choices import AuditSource
from common.audit.models import AuditEntry
from common.filters import time_range


class AuditEntryFilterSet(django_filters.FilterSet):
    """Entries by who, from where, what and when."""

    actor = django_filters.CharFilter()
    source = django_filters.ChoiceFilter(choices=AuditSource.choices)
    action = django_filters.CharFilter()
    object_type = django_filters.CharFilter(help_text="app_label.model, e.g. routing.policy or billing.budget.")
    object_id = django_filters.CharFilter()
    created_after, created_before = time_range("created", "Entries")

    class Meta:
        model = AuditEntry
        fields = ["actor", "source", "action", "object_type", "object_id"]
