"""REST serializers for the management API: one per model, NetBox-style.

Policies take their tiers and task rules nested and writable; `routing.policies.services`
checks and saves them. Request records are read-only, with their attempts nested.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from billing.pricing.book import Prices
from routing.config.prices import endpoint_prices, endpoint_prices_show
from routing.models import (
    ModelEndpoint,
    Policy,
    PolicyTier,
    QualityLabel,
    RequestAttempt,
    RequestRecord,
    ScorerVersion,
    ShadowEvaluation,
    TaskRule,
)
from routing.models.validators import validate_endpoint_connection
from routing.policies import services


class ModelEndpointSerializer(serializers.ModelSerializer[ModelEndpoint]):
    """A model in the registry; `credentials_env` names an environment variable, never a key.

    `fallback_endpoint` (an endpoint id) answers in this one's place while its breaker is open.
    The price fields read the price book's price in force (`price_in_force`, with the
    entry's id and start) and `next_price` shows the next scheduled one; writing a price
    that differs from the one in force adds a price-book entry from now, and writing
    other fields never touches prices (docs/billing.md#price-book).
    """

    url = serializers.HyperlinkedIdentityField(view_name="model-endpoint-detail")
    price_in_force = serializers.SerializerMethodField()
    next_price = serializers.SerializerMethodField()

    class Meta:
        model = ModelEndpoint
        fields = [
            "id",
            "url",
            "name",
            "display_name",
            "provider_kind",
            "model_id",
            "base_url",
            "credentials_env",
            "input_price_per_m",
            "output_price_per_m",
            "cached_input_price_per_m",
            "price_in_force",
            "next_price",
            "context_window",
            "typical_latency_ms",
            "quality_prior",
            "max_tokens",
            "temperature",
            "connect_timeout_s",
            "read_timeout_s",
            "max_retries",
            "breaker_failure_rate",
            "breaker_min_requests",
            "breaker_window_s",
            "breaker_open_s",
            "fallback_endpoint",
            "options",
            "enabled",
            "created",
            "updated",
        ]

    def validate_fallback_endpoint(self, fallback: ModelEndpoint | None) -> ModelEndpoint | None:
        if fallback is not None and self.instance is not None and fallback.pk == self.instance.pk:
            raise serializers.ValidationError("An endpoint cannot be its own fallback.")
        return fallback

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The model's connection rules (`ModelEndpoint.clean`), which DRF does not call."""

        def value(field: str) -> str:
            return str(attrs[field] if field in attrs else getattr(self.instance, field, "") or "")

        try:
            validate_endpoint_connection(
                provider_kind=value("provider_kind"),
                base_url=value("base_url"),
                credentials_env=value("credentials_env"),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs

    def to_representation(self, instance: ModelEndpoint) -> dict[str, Any]:
        endpoint_prices_show(instance)  # the columns may be older than a scheduled price
        return super().to_representation(instance)

    def update(self, instance: ModelEndpoint, validated_data: dict[str, Any]) -> ModelEndpoint:
        endpoint_prices_show(instance)  # a price edit is measured against the price in force
        return super().update(instance, validated_data)

    def get_price_in_force(self, endpoint: ModelEndpoint) -> dict[str, Any] | None:
        return _price_entry(endpoint_prices(endpoint).in_force)

    def get_next_price(self, endpoint: ModelEndpoint) -> dict[str, Any] | None:
        return _price_entry(endpoint_prices(endpoint).next)


def _price_entry(prices: Prices | None) -> dict[str, Any] | None:
    """A price-book entry as the API shows it: money as decimal strings, like the price fields."""
    if prices is None:
        return None
    cached = prices.cached_input_per_m
    return {
        "version": prices.version,
        "effective_from": serializers.DateTimeField().to_representation(prices.effective_from),
        "input_price_per_m": f"{prices.input_per_m:.6f}",
        "output_price_per_m": f"{prices.output_per_m:.6f}",
        "cached_input_price_per_m": None if cached is None else f"{cached:.6f}",
    }


class PolicyTierSerializer(serializers.ModelSerializer[PolicyTier]):
    """One tier of a policy, written nested inside it.

    The quality gate: `peers` is a list of endpoint ids and `judge` an endpoint id or null.
    """

    class Meta:
        model = PolicyTier
        fields = list(services.TIER_FIELDS)


class TaskRuleSerializer(serializers.ModelSerializer[TaskRule]):
    """One task rule of a policy, written nested inside it."""

    class Meta:
        model = TaskRule
        fields = ["position", "category", "pattern", "first_tier"]


class PolicySerializer(serializers.ModelSerializer[Policy]):
    """A policy with its tiers and task rules; a save replaces both lists and bumps `version`.

    On create, leaving out `task_rules` gives the default rules; on update, leaving out
    `tiers` or `task_rules` (PATCH) keeps the current ones.
    """

    url = serializers.HyperlinkedIdentityField(view_name="policy-detail")
    tiers = PolicyTierSerializer(many=True)
    task_rules = TaskRuleSerializer(many=True, required=False)

    class Meta:
        model = Policy
        fields = [
            "id",
            "url",
            "name",
            "description",
            "scorer",
            "max_escalations",
            "short_prompt_tokens",
            "optimisation_goal",
            "sample_rate",
            "shadow_rate",
            "router_threshold",
            "cache_ttl_s",
            "semantic_cache",
            "semantic_threshold",
            "semantic_multi_turn",
            "semantic_verify_rate",
            "enabled",
            "version",
            "tiers",
            "task_rules",
            "created",
            "updated",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # DRF turns the Django ValidationError into a 400 keyed the same way ("tiers", "task_rules").
        services.policy_validate(tiers=attrs.get("tiers"), rules=attrs.get("task_rules"), policy=self.instance)
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Policy:
        return services.policy_create(**validated_data)

    def update(self, instance: Policy, validated_data: dict[str, Any]) -> Policy:
        return services.policy_update(policy=instance, **validated_data)


class RequestAttemptSerializer(serializers.ModelSerializer[RequestAttempt]):
    """One call to one tier, as recorded."""

    class Meta:
        model = RequestAttempt
        fields = [
            "position",
            "tier",
            "endpoint",
            "model",
            "outcome",
            "input_tokens",
            "output_tokens",
            "cost",
            "latency_ms",
            "score",
            "error",
            "error_kind",
            "quality_label",
        ]
        read_only_fields = fields


class RequestRecordSerializer(serializers.ModelSerializer[RequestRecord]):
    """One routed request with every attempt it made; read-only (the flusher writes them)."""

    url = serializers.HyperlinkedIdentityField(view_name="request-record-detail")
    attempts = RequestAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = RequestRecord
        fields = [
            "id",
            "url",
            "created",
            "api_key",
            "team",
            "app",
            "end_user",
            "policy",
            "policy_name",
            "policy_version",
            "task_category",
            "status",
            "final_tier",
            "final_model",
            "escalations",
            "escalated",
            "input_tokens",
            "output_tokens",
            "cost",
            "latency_ms",
            "score",
            "quality_label",
            "error",
            "metadata",
            "attempts",
        ]
        read_only_fields = fields


# --- Quality loop: read-only, the gateway writes these ------------------------------------------


class QualityLabelSerializer(serializers.ModelSerializer[QualityLabel]):
    """One label of one request's answer, by source (apps post theirs to /v1/feedback)."""

    class Meta:
        model = QualityLabel
        fields = ["id", "record", "source", "value", "comment", "created", "updated"]
        read_only_fields = fields


class ShadowEvaluationSerializer(serializers.ModelSerializer[ShadowEvaluation]):
    """A cheaper tier's answer re-checked by the strongest tier, and what that cost."""

    policy = serializers.IntegerField(source="record.policy_id", read_only=True)

    class Meta:
        model = ShadowEvaluation
        fields = [
            "id",
            "record",
            "policy",
            "status",
            "judge",
            "acceptable",
            "reference_model",
            "input_tokens",
            "output_tokens",
            "cost",
            "latency_ms",
            "error",
            "created",
            "finished",
        ]
        read_only_fields = fields


class ScorerVersionSerializer(serializers.ModelSerializer[ScorerVersion]):
    """A trained scorer version and its held-out metrics (the model itself is left out)."""

    class Meta:
        model = ScorerVersion
        fields = ["id", "policy", "version", "kind", "metrics", "n_labels", "trained_at", "active"]
        read_only_fields = fields
