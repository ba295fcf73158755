"""REST serializers for the management API: one per model, NetBox-style.

Policies take their tiers and task rules nested and writable; `routing.policies.writers` saves
them. Request records are read-only, with their attempts nested.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rest_framework import serializers

from routing.models import ModelEndpoint, Policy, PolicyTier, QualityLabel, RequestAttempt, RequestRecord, ScorerVersion, ShadowEvaluation, TaskRule
from routing.policies import writers

MIN_TIERS = 2


def _duplicates(positions: Iterable[int]) -> list[int]:
    return sorted(p for p, n in Counter(positions).items() if n > 1)


class ModelEndpointSerializer(serializers.ModelSerializer):
    """A model in the registry; `credentials_env` names an environment variable, never a key.

    `fallback_endpoint` (an endpoint id) answers in this one's place while its breaker is open.
    """

    url = serializers.HyperlinkedIdentityField(view_name="model-endpoint-detail")

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


class PolicyTierSerializer(serializers.ModelSerializer):
    """One tier of a policy, written nested inside it."""

    class Meta:
        model = PolicyTier
        fields = ["position", "endpoint", "threshold", "max_tokens"]

    def validate_endpoint(self, endpoint: ModelEndpoint) -> ModelEndpoint:
        if not endpoint.enabled:
            raise serializers.ValidationError(f"Endpoint {endpoint.name} is disabled.")
        return endpoint


class TaskRuleSerializer(serializers.ModelSerializer):
    """One task rule of a policy, written nested inside it."""

    class Meta:
        model = TaskRule
        fields = ["position", "category", "pattern", "first_tier"]

    def validate_pattern(self, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise serializers.ValidationError(f"Not a valid regular expression: {exc}.") from exc
        return pattern


class PolicySerializer(serializers.ModelSerializer):
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

    def validate_tiers(self, tiers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(tiers) < MIN_TIERS:
            raise serializers.ValidationError(f"A policy needs at least {MIN_TIERS} tiers, cheapest first.")
        if duplicates := _duplicates(t["position"] for t in tiers):
            raise serializers.ValidationError(f"Two tiers share position {duplicates[0]}.")
        return tiers

    def validate_task_rules(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if duplicates := _duplicates(r["position"] for r in rules):
            raise serializers.ValidationError(f"Two task rules share position {duplicates[0]}.")
        return rules

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "task_rules" in attrs:
            self._check_first_tiers(attrs["task_rules"], self._tier_count(attrs))
        elif "tiers" in attrs and self.instance is not None:
            self._check_kept_rules_fit(len(attrs["tiers"]))
        return attrs

    def _tier_count(self, attrs: dict[str, Any]) -> int:
        # A PATCH may send rules without tiers: they must fit the tiers already saved.
        return len(attrs["tiers"]) if "tiers" in attrs else self.instance.tiers.count()

    @staticmethod
    def _check_first_tiers(rules: list[dict[str, Any]], tier_count: int) -> None:
        message = f"Must be a tier index from 0 to {tier_count - 1}."
        errors = [{} if r["first_tier"] < tier_count else {"first_tier": [message]} for r in rules]
        if any(errors):
            raise serializers.ValidationError({"task_rules": errors})

    def _check_kept_rules_fit(self, tier_count: int) -> None:
        highest = max((r.first_tier for r in self.instance.task_rules.all()), default=0)
        if highest >= tier_count:
            message = f"A task rule starts on tier {highest}; keep more tiers or send new task rules."
            raise serializers.ValidationError({"tiers": [message]})

    def create(self, validated_data: dict[str, Any]) -> Policy:
        return writers.policy_create_from_data(data=validated_data)

    def update(self, instance: Policy, validated_data: dict[str, Any]) -> Policy:
        return writers.policy_update_from_data(policy=instance, data=validated_data)


class RequestAttemptSerializer(serializers.ModelSerializer):
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


class RequestRecordSerializer(serializers.ModelSerializer):
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


# --- Quality loop (issue 6): read-only, the gateway writes these ----------------------------


class QualityLabelSerializer(serializers.ModelSerializer):
    """One label of one request's answer, by source (apps post theirs to /v1/feedback)."""

    class Meta:
        model = QualityLabel
        fields = ["id", "record", "source", "value", "comment", "created", "updated"]
        read_only_fields = fields


class ShadowEvaluationSerializer(serializers.ModelSerializer):
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


class ScorerVersionSerializer(serializers.ModelSerializer):
    """A trained scorer version and its held-out metrics (the model itself is left out)."""

    class Meta:
        model = ScorerVersion
        fields = ["id", "policy", "version", "kind", "metrics", "n_labels", "trained_at", "active"]
        read_only_fields = fields
