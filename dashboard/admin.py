"""Operators edit SLA targets and alert rules here, and see (and acknowledge) what fired."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from common.admin import ViewAndActAdmin
from dashboard.alerts import services
from dashboard.choices import DeliveryStatus
from dashboard.models import AlertDelivery, AlertEvent, AlertRule, SlaTarget, TuningConfig, TuningProposal

if TYPE_CHECKING:
    SlaTargetAdminBase = admin.ModelAdmin[SlaTarget]
    AlertRuleAdminBase = admin.ModelAdmin[AlertRule]
    AlertDeliveryInlineBase = admin.TabularInline[AlertDelivery, AlertEvent]
    TuningConfigAdminBase = admin.ModelAdmin[TuningConfig]
else:  # generic only in django-stubs: Django's classes take no type arguments at run time
    SlaTargetAdminBase = AlertRuleAdminBase = TuningConfigAdminBase = admin.ModelAdmin
    AlertDeliveryInlineBase = admin.TabularInline


@admin.register(SlaTarget)
class SlaTargetAdmin(SlaTargetAdminBase):
    list_display = [
        "__str__",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "min_quality",
        "max_cost_per_request",
        "min_availability_pct",
        "max_escalation_rate_pct",
    ]
    list_select_related = ["policy"]
    fieldsets = [
        (None, {"fields": ["policy"]}),
        ("Latency", {"fields": ["p50_ms", "p95_ms", "p99_ms"]}),
        ("Quality and cost", {"fields": ["min_quality", "max_cost_per_request"]}),
        ("Reliability", {"fields": ["min_availability_pct", "max_escalation_rate_pct"]}),
    ]


@admin.register(AlertRule)
class AlertRuleAdmin(AlertRuleAdminBase):
    list_display = [
        "name",
        "metric",
        "comparator",
        "threshold",
        "window_minutes",
        "cooldown_minutes",
        "policy",
        "enabled",
        "last_notified_at",
    ]
    list_filter = ["enabled", "metric", "policy"]
    list_select_related = ["policy"]
    search_fields = ["name"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    readonly_fields = ["last_evaluated_at", "last_notified_at", "created", "updated"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "policy"]}),
        (
            "Condition",
            {"fields": ["metric", "comparator", "threshold", "window_minutes", "trailing_windows", "reason"]},
        ),
        ("Notifications", {"fields": ["webhook_url", "email_to", "cooldown_minutes"]}),
        ("History", {"fields": ["last_evaluated_at", "last_notified_at", "created", "updated"]}),
    ]


DELIVERY_INLINE_FIELDS = ("created", "kind", "channel", "status", "attempts", "last_error", "sent_at")


class AlertDeliveryInline(AlertDeliveryInlineBase):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = DELIVERY_INLINE_FIELDS
    readonly_fields = DELIVERY_INLINE_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AlertEvent)
class AlertEventAdmin(ViewAndActAdmin):
    list_display = ["rule", "state", "value", "last_value", "started_at", "resolved_at", "acknowledged_at"]
    list_filter = ["state", "rule"]
    list_select_related = ["rule"]
    date_hierarchy = "started_at"
    inlines = [AlertDeliveryInline]
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge selected events", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[AlertEvent]) -> None:
        acknowledged = sum(services.alert_event_acknowledge(event=e, user=request.user) for e in queryset)
        self.message_user(request, f"Acknowledged {acknowledged} event(s).")


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ViewAndActAdmin):
    list_display = ["event", "kind", "channel", "status", "attempts", "last_error", "created", "sent_at"]
    list_filter = ["status", "channel", "kind"]
    list_select_related = ["event__rule"]
    actions = ["retry"]

    @admin.action(description="Send selected failed deliveries again", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[AlertDelivery]) -> None:
        failed = list(queryset.filter(status=DeliveryStatus.FAILED))
        for delivery in failed:
            services.alert_delivery_retry(delivery=delivery)
        self.message_user(request, f"Queued {len(failed)} delivery(ies) again.")


# --- Auto-tuning -------------------------------------------------------------------------


@admin.register(TuningConfig)
class TuningConfigAdmin(TuningConfigAdminBase):
    """Per policy: whether beat proposes or applies threshold changes, towards what, within what."""

    list_display = [
        "policy",
        "mode",
        "target",
        "target_value",
        "threshold_min",
        "threshold_max",
        "max_step",
        "last_run_at",
    ]
    list_filter = ["mode", "target"]
    list_select_related = ["policy"]
    readonly_fields = ["last_run_at", "created", "updated"]
    fieldsets = [
        (None, {"fields": ["policy", "mode", "target", "target_value", "tier"]}),
        ("Bounds", {"fields": ["threshold_min", "threshold_max", "max_step"]}),
        ("Evidence", {"fields": ["min_labels", "retrain_after_labels", "window_days", "holdout_share"]}),
        ("Runs", {"fields": ["last_run_at", "created", "updated"]}),
    ]


@admin.register(TuningProposal)
class TuningProposalAdmin(ViewAndActAdmin):
    """Every proposal and change; decide them on the tuning page (one click to roll back)."""

    list_display = [
        "policy",
        "tier",
        "threshold_before",
        "threshold_after",
        "method",
        "status",
        "created",
        "decided_by",
    ]
    list_filter = ["status", "method", "policy"]
    list_select_related = ["policy", "decided_by"]
    date_hierarchy = "created"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
