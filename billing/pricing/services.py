"""The price book's writes: a new entry when an endpoint's prices change.

The ledger's writes are in `billing.ledger.services`; monthly reports are built in
`billing.reports.build`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from billing.models import PriceBookEntry
from billing.pricing.book import Prices, price_in_force, same_prices


def prices_of(entry: PriceBookEntry) -> Prices:
    return Prices(
        version=entry.id,
        effective_from=entry.effective_from,
        input_per_m=entry.input_price_per_m,
        output_per_m=entry.output_price_per_m,
        cached_input_per_m=entry.cached_input_price_per_m,
    )


def price_book_record(
    *,
    endpoint_id: int,
    input_per_m: Decimal,
    output_per_m: Decimal,
    cached_input_per_m: Decimal | None,
    effective_from: datetime | None = None,
    note: str = "",
) -> PriceBookEntry | None:
    """Add an entry when these prices differ from the ones in force; returns it, or None."""
    at = effective_from or timezone.now()
    entries = [prices_of(e) for e in PriceBookEntry.objects.filter(endpoint_id=endpoint_id)]
    if same_prices(price_in_force(entries, at), input_per_m, output_per_m, cached_input_per_m):
        return None
    return PriceBookEntry.objects.create(
        endpoint_id=endpoint_id,
        effective_from=at,
        input_price_per_m=input_per_m,
        output_price_per_m=output_per_m,
        cached_input_price_per_m=cached_input_per_m,
        note=note,
    )
