"""Number formats of the dashboard's panels; a missing value shows as a dash."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

from django import template

register = template.Library()
MISSING = "–"


@register.filter
def pct(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f} %"


@register.filter
def ms(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.0f} ms"


@register.filter
def usd(value: Decimal | float | None) -> str:
    if value is None:
        return MISSING
    return f"${value:,.2f}" if value >= 1 else f"${value:,.6f}"


@register.filter
def webhook_host(target: str) -> str:
    """A webhook's host only: the path of a Slack webhook URL is its secret."""
    return urlsplit(target).netloc or target
