"""The product's one number rule (`common.numbers`) as template filters, for every app's pages.

`{% load numbers %}` (registered in settings.TEMPLATES, as `common` is no app): billing's pages
load it without reaching up to the dashboard.
"""

from __future__ import annotations

from decimal import Decimal

from django import template

from common import numbers

register = template.Library()


@register.filter
def usd(value: Decimal | float | None) -> str:
    """`$1,234.50`, `$0.4975`, `$0.000375`."""
    return numbers.usd(value)


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
    """`850 ms`, `2.26 s`, `3 min 05 s`."""
    return numbers.duration_ms(value)
