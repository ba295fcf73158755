"""The price book: which prices are in force at a moment (pure functions, no ORM).

Costs themselves are computed by the cascade engine at call time
(`routing.engine.costing.attempt_cost`) from the prices these functions pick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per 1M tokens, as of one price-book entry (`version` is its id)."""

    version: int
    effective_from: datetime
    input_per_m: Decimal
    output_per_m: Decimal
    cached_input_per_m: Decimal | None = None


def price_in_force(prices: Iterable[Prices], at: datetime) -> Prices | None:
    """The entry with the latest `effective_from` not after `at`."""
    started = [p for p in prices if p.effective_from <= at]
    return max(started, key=lambda p: (p.effective_from, p.version), default=None)


def next_change(prices: Iterable[Prices], after: datetime) -> datetime | None:
    """When the next scheduled entry takes effect, if any."""
    return min((p.effective_from for p in prices if p.effective_from > after), default=None)


def next_scheduled(prices: Iterable[Prices], after: datetime) -> Prices | None:
    """The entry that takes effect next after `after`, if one is scheduled."""
    later = [p for p in prices if p.effective_from > after]
    return min(later, key=lambda p: p.effective_from, default=None)


def same_prices(a: Prices | None, input_per_m: Decimal, output_per_m: Decimal, cached: Decimal | None) -> bool:
    return a is not None and (a.input_per_m, a.output_per_m, a.cached_input_per_m) == (
        input_per_m,
        output_per_m,
        cached,
    )
