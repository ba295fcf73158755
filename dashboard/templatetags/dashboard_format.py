"""Number formats of the dashboard's panels: the product's one rule (`common.numbers`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import template

from common import numbers
from common.templatetags import numbers as number_filters
from dashboard.alerts.rules import format_value

register = template.Library()
# The number rule's filters (`usd`, `pct`, `share`, `ms`) under this library's name too.
register.filters.update(number_filters.register.filters)
MISSING = numbers.MISSING


@register.filter
def metric_value(value: float | None, metric: str) -> str:
    """An alert rule's value with its metric's unit: `$1.20/h`, `2.26 s`, `12.5 %`."""
    return format_value(metric, value)


@register.filter
def webhook_host(target: str) -> str:
    """A webhook's host only: the path of a Slack webhook URL is its secret."""
    return urlsplit(target).netloc or target
