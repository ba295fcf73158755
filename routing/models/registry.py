"""The model registry: every callable model, its prices, limits and credentials."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models

from routing.choices import EndpointKind, ProviderKind
from routing.models.validators import (
    ENV_VAR_NAME,
    FINITE_UNIT_INTERVAL,
    NOT_NEGATIVE,
    SLUG,
    TEMPERATURE,
    TIMEOUT_S,
    validate_endpoint_connection,
)

# The price columns, in the order `price_values` gives them.
PRICE_FIELDS = ("input_price_per_m", "output_price_per_m", "cached_input_price_per_m")
PriceValues = tuple[Decimal | None, Decimal | None, Decimal | None]


class ModelEndpoint(models.Model):
    """One callable model: where it is, how to call it and what it costs.

    The price book (`billing.PriceBookEntry`) is the one source of its prices. The price
    columns here are write-through: a change to them, against the prices the editor was
    shown (`price_baseline`), adds a price-book entry from now; nothing reads them for
    costing. See docs/billing.md#price-book.
    """

    name = models.CharField(max_length=100, unique=True, validators=[SLUG])
    display_name = models.CharField(max_length=200, blank=True)
    provider_kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    model_id = models.CharField(max_length=200, help_text="The model id the provider knows.")
    base_url = models.CharField(
        max_length=500, blank=True, help_text="OpenAI-compatible: base URL ending in /v1. Bedrock: region."
    )
    credentials_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[ENV_VAR_NAME],
        help_text="Name of the environment variable that holds the API key. Never the key itself.",
    )
    input_price_per_m = models.DecimalField(
        "input price per 1M tokens (USD)", max_digits=12, decimal_places=6, validators=NOT_NEGATIVE
    )
    output_price_per_m = models.DecimalField(
        "output price per 1M tokens (USD)", max_digits=12, decimal_places=6, validators=NOT_NEGATIVE
    )
    cached_input_price_per_m = models.DecimalField(
        "cached input price per 1M tokens (USD)",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=NOT_NEGATIVE,
        help_text="Empty: cached input tokens cost the input price.",
    )
    context_window = models.PositiveIntegerField(default=8192)
    typical_latency_ms = models.PositiveIntegerField(default=1000)
    quality_prior = models.FloatField(default=0.5, validators=FINITE_UNIT_INTERVAL)
    max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    # What requests it can take: a request that needs what a tier lacks skips that tier.
    supports_tools = models.BooleanField(default=True, help_text="Takes tool (function) definitions.")
    supports_json = models.BooleanField(default=True, help_text="Can be asked for JSON output (response_format).")
    supports_images = models.BooleanField(default=False, help_text="Reads images in the messages.")
    temperature = models.FloatField(default=0.0, validators=TEMPERATURE)
    connect_timeout_s = models.FloatField(default=3.0, validators=TIMEOUT_S)
    read_timeout_s = models.FloatField(default=60.0, validators=TIMEOUT_S)
    max_retries = models.PositiveSmallIntegerField(
        default=2, help_text="Retries of a retryable error (timeout, 429, 5xx), with exponential backoff and jitter."
    )
    breaker_failure_rate = models.FloatField(
        default=0.5, validators=FINITE_UNIT_INTERVAL, help_text="Failure share over the window that opens the breaker."
    )
    breaker_min_requests = models.PositiveIntegerField(
        default=10, help_text="Calls in the window before the failure share can open the breaker."
    )
    breaker_window_s = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Seconds of calls the failure share is taken over."
    )
    breaker_open_s = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Seconds an open breaker waits before a trial call."
    )
    fallback_endpoint = models.ForeignKey(
        "self",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Called in this endpoint's place while its breaker is open (empty: skip to the next tier).",
    )
    options = models.JSONField(default=dict, blank=True, help_text="Provider-specific settings.")
    kind = models.CharField(
        max_length=12,
        choices=EndpointKind.choices,
        default=EndpointKind.CHAT,
        help_text="Chat completions (a cascade tier) or embeddings (a policy's /v1/embeddings endpoint).",
    )
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    # The price columns as loaded (or as last shown from the price book): what an edit
    # is measured against, so saving other fields never writes a price.
    price_baseline: PriceValues | None = None

    def __str__(self) -> str:
        return self.display_name or self.name

    def clean(self) -> None:
        # Where the gateway sends requests, and which secret it sends: the deployment's rules
        # (common/outbound.py, CASCADEOPS_CREDENTIALS_ENV_*), never wider than its settings.
        validate_endpoint_connection(
            provider_kind=self.provider_kind, base_url=self.base_url, credentials_env=self.credentials_env
        )

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> ModelEndpoint:
        instance = super().from_db(db, field_names, values, **kwargs)
        if all(name in instance.__dict__ for name in PRICE_FIELDS):  # not deferred
            instance.price_baseline = instance.price_values()
        return instance

    def price_values(self) -> PriceValues:
        """The price columns as Decimals (a row built in code may still hold the strings it was given)."""
        raw = (self.input_price_per_m, self.output_price_per_m, self.cached_input_price_per_m)
        return tuple(None if v in (None, "") else Decimal(str(v)) for v in raw)  # type: ignore[return-value]

    def prices_show(self, input_per_m: Decimal, output_per_m: Decimal, cached_input_per_m: Decimal | None) -> None:
        """Show these prices (the price book's, in force) in the columns, as the baseline of an edit."""
        self.input_price_per_m = input_per_m
        self.output_price_per_m = output_per_m
        self.cached_input_price_per_m = cached_input_per_m
        self.price_baseline = self.price_values()

    def price_edits(self) -> dict[str, Decimal | None]:
        """The price columns changed since the baseline (all of them for a row never loaded)."""
        now = self.price_values()
        if self.price_baseline is None:
            return dict(zip(PRICE_FIELDS, now, strict=True))
        return {f: v for f, v, b in zip(PRICE_FIELDS, now, self.price_baseline, strict=True) if v != b}
