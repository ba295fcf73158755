"""Validators shared by routing's tables."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator

# Money fields keep ten decimal places: 20 tokens at $0.10 per 1M tokens cost $0.000002.
NOT_NEGATIVE = [MinValueValidator(Decimal(0))]


UNIT_INTERVAL = [MinValueValidator(0.0), MaxValueValidator(1.0)]


ENV_VAR_NAME = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Give the name of an environment variable.")


SLUG = RegexValidator(r"^[a-z0-9][a-z0-9._-]*$", "Lower-case letters, digits, '.', '_' and '-'.")
