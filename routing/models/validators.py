"""Validators shared by routing's tables."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator

from common.outbound import validate_outbound_url
from routing.choices import ProviderKind
from routing.engine.types import CredentialsAllowList

# Money fields keep ten decimal places: 20 tokens at $0.10 per 1M tokens cost $0.000002.
NOT_NEGATIVE = [MinValueValidator(Decimal(0))]


UNIT_INTERVAL = [MinValueValidator(0.0), MaxValueValidator(1.0)]


def finite(value: float) -> None:
    """Refuse NaN and infinities: range validators let NaN through (it compares false to all)."""
    if not math.isfinite(value):
        raise ValidationError("Enter a finite number.", code="invalid")


# Rates, shares and thresholds an operator writes (a REST client can send 1e400 or "NaN").
FINITE_UNIT_INTERVAL: list[Callable[[Any], None]] = [finite, *UNIT_INTERVAL]
TEMPERATURE: list[Callable[[Any], None]] = [finite, MinValueValidator(0.0), MaxValueValidator(2.0)]
# Provider timeouts: an hour is past any answer (a request's own deadline is 270 s).
MAX_TIMEOUT_S = 3600.0
TIMEOUT_S: list[Callable[[Any], None]] = [finite, MinValueValidator(0.01), MaxValueValidator(MAX_TIMEOUT_S)]


ENV_VAR_NAME = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Give the name of an environment variable.")


SLUG = RegexValidator(r"^[a-z0-9][a-z0-9._-]*$", "Lower-case letters, digits, '.', '_' and '-'.")


def credentials_allow_list() -> CredentialsAllowList:
    """The variables the deployment lets endpoints take credentials from (settings, not rows)."""
    return CredentialsAllowList(
        prefix=settings.CASCADEOPS_CREDENTIALS_ENV_PREFIX,
        names=frozenset(name.strip() for name in settings.CASCADEOPS_CREDENTIALS_ENV_ALLOW if name.strip()),
    )


def validate_credentials_env(name: str) -> None:
    """Refuse a variable the deployment does not allow: else `DATABASE_URL` could be sent as a key."""
    allowed = credentials_allow_list()
    if not name or allowed.permits(name):
        return
    rule = f"names starting with {allowed.prefix}" if allowed.prefix else "no prefix"
    listed = f" or one of {', '.join(sorted(allowed.names))}" if allowed.names else ""
    raise ValidationError(
        f"This deployment takes credentials only from environment variables with {rule}{listed} "
        "(CASCADEOPS_CREDENTIALS_ENV_PREFIX, CASCADEOPS_CREDENTIALS_ENV_ALLOW).",
        code="credentials_env",
    )


def validate_endpoint_connection(*, provider_kind: str, base_url: str, credentials_env: str) -> None:
    """Check where an endpoint points and which secret it takes; `ValidationError` by field.

    Bedrock's `base_url` is usually a region; only a URL (a VPC endpoint) is a place to check.
    """
    errors: dict[str, list[ValidationError]] = {}
    for field, check, value in (
        ("credentials_env", validate_credentials_env, credentials_env),
        (
            "base_url",
            validate_outbound_url,
            base_url if provider_kind != ProviderKind.BEDROCK or "://" in base_url else "",
        ),
    ):
        try:
            check(value)
        except ValidationError as exc:
            errors[field] = exc.error_list
    if errors:
        raise ValidationError(errors)


def validate_patterns(value: str) -> None:
    """Every non-empty line must compile as a regular expression."""
    for number, line in enumerate(value.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            re.compile(line)
        except re.error as exc:
            raise ValidationError(f"Line {number} is not a regular expression: {exc}.", code="pattern") from exc
