"""REST serializers for the dashboard's API: one per model, NetBox-style."""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from rest_framework import serializers

from common.outbound import validate_outbound_url
from dashboard.models import AlertDelivery, AlertEvent, AlertRule, Rollup, SlaTarget
from dashboard.rollups.sketch import sketch_quantile

M = TypeVar("M", bound=Model)


class RollupSerializer(serializers.ModelSerializer[Rollup]):
    """A minute or hour of one policy's, tier's and model's requests; percentiles read from the sketch."""

    p50_ms = serializers.SerializerMethodField()
    p95_ms = serializers.SerializerMethodField()
    p99_ms = serializers.SerializerMethodField()

    class Meta:
        model = Rollup
        fields = [
            "id",
            "resolution",
            "bucket",
            "policy",
            "policy_name",
            "tier",
            "model",
            "requests",
            "escalated",
            "escalations",
            "errors",
            "refused",
            "cache_hits",
            "input_tokens",
            "output_tokens",
            "cost",
            "baseline_cost",
            "score_sum",
            "score_count",
            "quality_sum",
            "quality_count",
            "latency",
            "p50_ms",
            "p95_ms",
            "p99_ms",
        ]

    def get_p50_ms(self, row: Rollup) -> float | None:
        return sketch_quantile(row.latency, 0.50)

    def get_p95_ms(self, row: Rollup) -> float | None:
        return sketch_quantile(row.latency, 0.95)

    def get_p99_ms(self, row: Rollup) -> float | None:
        return sketch_quantile(row.latency, 0.99)


class ConstraintsValidated(serializers.ModelSerializer[M]):
    """Checks the model's constraints, which DRF does not (a functional unique constraint)."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model: type[Model] = self.Meta.model
        candidate = copy.copy(self.instance) if self.instance is not None else model()
        for name, value in attrs.items():
            setattr(candidate, name, value)
        try:
            candidate.validate_constraints()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from exc
        return attrs


class SlaTargetSerializer(ConstraintsValidated[SlaTarget]):
    """A policy's SLA targets; `policy` null is the default for every policy."""

    url = serializers.HyperlinkedIdentityField(view_name="sla-target-detail")

    class Meta:
        model = SlaTarget
        fields = [
            "id",
            "url",
            "policy",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "min_quality",
            "max_cost_per_request",
            "min_availability_pct",
            "max_escalation_rate_pct",
            "updated",
        ]


class AlertRuleSerializer(serializers.ModelSerializer[AlertRule]):
    """An alert rule; `policy` null watches every policy."""

    url = serializers.HyperlinkedIdentityField(view_name="alert-rule-detail")

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "url",
            "name",
            "enabled",
            "metric",
            "comparator",
            "threshold",
            "window_minutes",
            "trailing_windows",
            "reason",
            "cooldown_minutes",
            "policy",
            "webhook_url",
            "email_to",
            "last_evaluated_at",
            "last_notified_at",
            "created",
            "updated",
        ]
        read_only_fields = ["last_evaluated_at", "last_notified_at"]

    def validate_webhook_url(self, url: str) -> str:
        validate_outbound_url(url)  # the model's `clean`, which DRF does not call
        return url


class AlertDeliverySerializer(serializers.ModelSerializer[AlertDelivery]):
    """One notification of an event on one channel, and how its attempts went."""

    class Meta:
        model = AlertDelivery
        fields = ["id", "event", "kind", "channel", "status", "attempts", "last_error", "created", "sent_at"]


class AlertEventSerializer(serializers.ModelSerializer[AlertEvent]):
    """A period during which a rule's condition held, with its notifications."""

    url = serializers.HyperlinkedIdentityField(view_name="alert-event-detail")
    deliveries = AlertDeliverySerializer(many=True, read_only=True)

    class Meta:
        model = AlertEvent
        fields = [
            "id",
            "url",
            "rule",
            "state",
            "value",
            "last_value",
            "threshold",
            "started_at",
            "resolved_at",
            "notified",
            "acknowledged_at",
            "acknowledged_by",
            "deliveries",
        ]
