"""The model registry: every callable model, its prices, limits and credentials."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from routing.choices import ProviderKind
from routing.models.validators import ENV_VAR_NAME, NOT_NEGATIVE, SLUG, UNIT_INTERVAL


class ModelEndpoint(models.Model):
    """One callable model: where it is, how to call it and what it costs."""

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
    quality_prior = models.FloatField(default=0.5, validators=UNIT_INTERVAL)
    max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    temperature = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    connect_timeout_s = models.FloatField(default=3.0, validators=[MinValueValidator(0.01)])
    read_timeout_s = models.FloatField(default=60.0, validators=[MinValueValidator(0.01)])
    max_retries = models.PositiveSmallIntegerField(
        default=2, help_text="Retries of a retryable error (timeout, 429, 5xx), with exponential backoff and jitter."
    )
    breaker_failure_rate = models.FloatField(
        default=0.5, validators=UNIT_INTERVAL, help_text="Failure share over the window that opens the breaker."
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
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name
