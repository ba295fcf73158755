"""An endpoint's prices as the price book has them: the one source of prices.

Displays (the REST API, the admin) show the price in force and the next scheduled one;
editors measure a price change against the price in force; a change writes a price-book
entry from now (`endpoint_prices_write_through`, run by the endpoint's `post_save`
receiver). See docs/billing.md#price-book.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from billing.models import PriceBookEntry
from billing.pricing.book import Prices, next_scheduled, price_in_force
from billing.pricing.services import price_book_record, prices_of
from routing.models import ModelEndpoint
from routing.models.registry import PRICE_FIELDS, PriceValues


@dataclass(frozen=True, slots=True)
class EndpointPrices:
    """The entry in force at a moment and the next one scheduled after it (either may be None)."""

    in_force: Prices | None
    next: Prices | None


def endpoint_prices(endpoint: ModelEndpoint, at: datetime | None = None) -> EndpointPrices:
    """The endpoint's prices at `at` (now), from its price-book entries (prefetch `prices` for lists)."""
    at = at or timezone.now()
    entries = [prices_of(entry) for entry in endpoint.prices.all()]
    return EndpointPrices(in_force=price_in_force(entries, at), next=next_scheduled(entries, at))


def endpoint_prices_show(endpoint: ModelEndpoint, at: datetime | None = None) -> EndpointPrices:
    """Put the price in force into the endpoint's columns, as what an edit is measured against."""
    prices = endpoint_prices(endpoint, at)
    if prices.in_force is not None:
        p = prices.in_force
        endpoint.prices_show(p.input_per_m, p.output_per_m, p.cached_input_per_m)
    return prices


def endpoint_prices_write_through(endpoint: ModelEndpoint) -> PriceBookEntry | None:
    """Write the endpoint's changed price columns to the price book, from now.

    Only the columns that changed since the baseline count, laid over the price in force
    (a column left as it was may be older than a scheduled price that took effect since);
    nothing is written when the result equals the price in force.
    """
    edits = endpoint.price_edits()
    if not edits:
        return None
    now = timezone.now()
    in_force = price_in_force([prices_of(e) for e in PriceBookEntry.objects.filter(endpoint_id=endpoint.pk)], now)
    base = endpoint.price_values() if in_force is None else _values(in_force)
    input_per_m, output_per_m, cached = (edits.get(f, b) for f, b in zip(PRICE_FIELDS, base, strict=True))
    if input_per_m is None or output_per_m is None:
        return None  # not a valid row: its validators say so before any save from an editor
    entry = price_book_record(
        endpoint_id=endpoint.pk,
        input_per_m=input_per_m,
        output_per_m=output_per_m,
        cached_input_per_m=cached,
        effective_from=now,
        note="set on the endpoint",
    )
    endpoint.price_baseline = endpoint.price_values()
    return entry


def _values(prices: Prices) -> PriceValues:
    return (prices.input_per_m, prices.output_per_m, prices.cached_input_per_m)
