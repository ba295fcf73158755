"""Number formats of the dashboard's panels: the product's one rule (`common.numbers`)."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

from django import template

from common import numbers
from dashboard.alerts.rules import format_value

register = template.Library()
MISSING = numbers.MISSING


@register.filter
def pct(value: float | None) -> str:
    """A figure already in percent: 20.5 → `20.5 %`."""
    return numbers.percent(value)


@register.filter
def share(value: float | None) -> str:
    """A fraction as a percentage: 0.205 → `20.5 %`."""
    return numbers.share(value)


@register.filter
def ms(value: float | None) -> str:
    return numbers.duration_ms(value)


@register.filter
def usd(value: Decimal | float | None) -> str:
    return numbers.usd(value)


@register.filter
def metric_value(value: float | None, metric: str) -> str:
    """An alert rule's value with its metric's unit: `$1.20/h`, `2.26 s`, `12.5 %`."""
    return format_value(metric, value)


@register.filter
def webhook_host(target: str) -> str:
    """A webhook's host only: the path of a Slack webhook URL is its secret."""
    return urlsplit(target).netloc or target
