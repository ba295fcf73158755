"""REST serializers for the management API: one per model, NetBox-style.

Policies take their tiers and task rules nested and writable; `routing.policies.services`
checks and saves them. Request records are read-only, with their attempts nested.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from rest_framework import serializers

from billing.pricing.book import Prices
from routing.config.prices import endpoint_prices, endpoint_prices_show
from routing.models import (
    ApiKey,
    CategoryLadder,
    Experiment,
    ExperimentArm,
    GoalWeights,
    LadderTier,
    ModelEndpoint,
    Policy,
    PolicyTier,
    PolicyVersion,
    QualityLabel,
    RequestAttempt,
    RequestRecord,
    ScorerVersion,
    ShadowEvaluation,
    TaskCategory,
    TaskRule,
)
from routing.models.validators import validate_endpoint_connection
from routing.policies import ladders, services

# An experiment compares: one arm alone would be a policy change.
MIN_ARMS = 2


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
            "kind",
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


class ApiKeySerializer(serializers.ModelSerializer[ApiKey]):
    """An app's API key. The key itself is in the answer to its creation only (`key`); it is stored as a hash."""

    url = serializers.HyperlinkedIdentityField(view_name="api-key-detail")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "url",
            "name",
            "prefix",
            "policy",
            "team",
            "app",
            "expires_at",
            "revoked_at",
            "requests_per_minute",
            "tokens_per_minute",
            "created",
        ]
        read_only_fields = ["prefix", "revoked_at", "created"]

    def create(self, validated_data: dict[str, Any]) -> ApiKey:
        key, plaintext = services.api_key_create(**validated_data)
        key.plaintext = plaintext  # type: ignore[attr-defined]  # shown once, in this answer
        return key


class ApiKeyCreatedSerializer(ApiKeySerializer):
    """A key just created: the one answer that carries the key."""

    key = serializers.SerializerMethodField()

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]

    def get_key(self, key: ApiKey) -> str:
        return str(getattr(key, "plaintext", ""))


class PolicyVersionSerializer(serializers.ModelSerializer[PolicyVersion]):
    """A stored policy version: the whole policy as it was (`snapshot`), by `number`."""

    url = serializers.HyperlinkedIdentityField(view_name="policy-version-detail")

    class Meta:
        model = PolicyVersion
        fields = [
            "id",
            "url",
            "policy",
            "policy_name",
            "number",
            "author",
            "source",
            "created",
            "restored_from",
            "snapshot",
        ]
        read_only_fields = fields


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
            "unknown_fields",
            "tools_first_tier",
            "embeddings_endpoint",
            "store_text",
            "text_retention_days",
            "text_redact_patterns",
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
            "selection",
            "experiment_arm",
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


# --- Categories, ladders, goal weights and experiments ------------------------------------------


class TaskCategorySerializer(serializers.ModelSerializer[TaskCategory]):
    """A task category: keywords, patterns (one per line) and example prompts that name it."""

    url = serializers.HyperlinkedIdentityField(view_name="task-category-detail")

    class Meta:
        model = TaskCategory
        fields = [
            "id",
            "url",
            "name",
            "description",
            "position",
            "keywords",
            "patterns",
            "examples",
            "similarity_threshold",
            "enabled",
            "created",
            "updated",
        ]


class GoalWeightsSerializer(serializers.ModelSerializer[GoalWeights]):
    """How much cost, quality, latency and task fit count for one optimisation goal."""

    class Meta:
        model = GoalWeights
        fields = ["id", "goal", "cost", "quality", "latency", "fit", "updated"]
        read_only_fields = ["goal", "updated"]


class LadderTierSerializer(serializers.ModelSerializer[LadderTier]):
    """One rung of a category's ladder, written nested inside it."""

    class Meta:
        model = LadderTier
        fields = ["position", "endpoint", "threshold", "max_tokens"]


class CategoryLadderSerializer(serializers.ModelSerializer[CategoryLadder]):
    """A policy's own ladder for one category; every save or delete is a new version of the policy."""

    url = serializers.HyperlinkedIdentityField(view_name="category-ladder-detail")
    tiers = LadderTierSerializer(many=True)

    class Meta:
        model = CategoryLadder
        fields = ["id", "url", "policy", "category", "tiers"]
        validators: list[Any] = []  # one ladder per policy and category: a save replaces it

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "tiers" in attrs:
            ladders.ladder_validate(attrs["tiers"])
        if self.instance is not None and {"policy", "category"} & set(attrs):
            raise serializers.ValidationError("A ladder's policy and category stay; create another ladder instead.")
        return attrs

    def create(self, validated_data: dict[str, Any]) -> CategoryLadder:
        return ladders.ladder_save(
            policy=validated_data["policy"], category=validated_data["category"], rungs=validated_data["tiers"]
        )

    def update(self, instance: CategoryLadder, validated_data: dict[str, Any]) -> CategoryLadder:
        rungs = validated_data.get("tiers")
        if rungs is None:
            return instance
        return ladders.ladder_save(policy=instance.policy, category=instance.category, rungs=rungs)


class ExperimentArmSerializer(serializers.ModelSerializer[ExperimentArm]):
    """One arm: a policy, or one stored version of it (`policy_version`), and its weight."""

    class Meta:
        model = ExperimentArm
        fields = ["id", "name", "policy", "policy_version", "weight"]
        read_only_fields = ["id"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        number = attrs.get("policy_version")
        if number is not None and not PolicyVersion.objects.filter(policy=attrs["policy"], number=number).exists():
            raise serializers.ValidationError({"policy_version": f"The policy has no stored version {number}."})
        return attrs


class ExperimentSerializer(serializers.ModelSerializer[Experiment]):
    """An A/B experiment over one key's or one team's traffic; its arms are set when it is created.

    End it (and promote a winner) with the `end` action.
    """

    url = serializers.HyperlinkedIdentityField(view_name="experiment-detail")
    arms = ExperimentArmSerializer(many=True)

    class Meta:
        model = Experiment
        fields = [
            "id",
            "url",
            "name",
            "description",
            "api_key",
            "team",
            "status",
            "min_samples",
            "winner",
            "arms",
            "started",
            "ended",
        ]
        read_only_fields = ["status", "winner", "started", "ended"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None:
            if {"arms", "api_key", "team"} & set(attrs):
                raise serializers.ValidationError("Arms and traffic are fixed once an experiment runs; end it instead.")
            return attrs
        if (attrs.get("api_key") is None) == (not attrs.get("team")):
            raise serializers.ValidationError({"team": "Give either an API key or a team, not both."})
        names = [arm["name"] for arm in attrs["arms"]]
        if len(names) < MIN_ARMS or len(set(names)) != len(names):
            raise serializers.ValidationError({"arms": f"At least {MIN_ARMS} arms, each with its own name."})
        return attrs

    @transaction.atomic
    def create(self, validated_data: dict[str, Any]) -> Experiment:
        arms = validated_data.pop("arms")
        experiment = Experiment.objects.create(**validated_data)
        for arm in arms:
            ExperimentArm.objects.create(experiment=experiment, **arm)
        return experiment


class ExperimentEndSerializer(serializers.Serializer[Experiment]):
    """Ending an experiment: `winner` (an arm's id, or null) becomes the policy of its keys."""

    winner = serializers.IntegerField(allow_null=True, required=False, default=None)
