"""REST serializers for budgets and price-book entries: one per model, as the admin shows them."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from billing.choices import BudgetScope
from billing.models import Budget, PriceBookEntry

SAME_START = "This endpoint already has an entry from then."


class BudgetSerializer(serializers.ModelSerializer[Budget]):
    """A spend limit (USD, as a decimal string) for a scope and period, with its soft and hard actions."""

    url = serializers.HyperlinkedIdentityField(view_name="budget-detail")

    class Meta:
        model = Budget
        fields = [
            "id",
            "url",
            "name",
            "enabled",
            "scope",
            "scope_value",
            "period",
            "limit",
            "soft_limit_percent",
            "soft_action",
            "degraded_threshold",
            "hard_action",
            "created",
            "updated",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope = attrs.get("scope", getattr(self.instance, "scope", BudgetScope.GLOBAL))
        value = attrs.get("scope_value", getattr(self.instance, "scope_value", ""))
        if scope != BudgetScope.GLOBAL and not value:
            raise serializers.ValidationError({"scope_value": "Name the team, app, key prefix, policy or end user."})
        return attrs


class PriceBookEntrySerializer(serializers.ModelSerializer[PriceBookEntry]):
    """An endpoint's prices (USD per 1M tokens) from `effective_from` (default: now) until its next entry.

    Entries are added, never changed: a request's cost is stored with the entry it used.
    Schedule a price change with a future `effective_from`.
    """

    url = serializers.HyperlinkedIdentityField(view_name="price-book-entry-detail")
    effective_from = serializers.DateTimeField(required=False)

    class Meta:
        model = PriceBookEntry
        fields = [
            "id",
            "url",
            "endpoint",
            "effective_from",
            "input_price_per_m",
            "output_price_per_m",
            "cached_input_price_per_m",
            "note",
            "created",
        ]
        # DRF's unique-together check would make `effective_from` required: `validate` checks it instead.
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("effective_from", timezone.now())
        endpoint, start = attrs["endpoint"], attrs["effective_from"]
        if PriceBookEntry.objects.filter(endpoint=endpoint, effective_from=start).exists():
            raise serializers.ValidationError({"effective_from": SAME_START})
        return attrs

    def create(self, validated_data: dict[str, Any]) -> PriceBookEntry:
        try:
            with transaction.atomic():
                return super().create(validated_data)
        except IntegrityError as exc:  # the same start sent twice at once
            raise serializers.ValidationError({"effective_from": SAME_START}) from exc
