"""Billing's write operations: the price book and the ledger.

Monthly reports are built in `billing.report_services`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from .models import BudgetAlert, LedgerEntry, LedgerTagEntry, PriceBookEntry
from .pricing import Prices, price_in_force, same_prices
from .signals import budget_alert_raised


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


@dataclass
class LedgerLine:
    """One request's or one attempt's share of spend, before it is summed into a row."""

    day: date
    team: str
    app: str
    api_key_prefix: str
    policy: str
    model: str
    end_user: str
    requests: int = 0
    escalated_requests: int = 0
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: Decimal = Decimal(0)
    baseline_cost: Decimal = Decimal(0)
    cache_hits: int = 0
    cost_avoided: Decimal = Decimal(0)
    quality_checks: int = 0
    quality_cost: Decimal = Decimal(0)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def dimensions(self) -> tuple[object, ...]:
        return (self.day, self.team, self.app, self.api_key_prefix, self.policy, self.model, self.end_user)


SUMMED = (
    "requests",
    "escalated_requests",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost",
    "baseline_cost",
    "cache_hits",
    "cost_avoided",
    "quality_checks",
    "quality_cost",
)


def ledger_append(*, lines: Sequence[LedgerLine]) -> int:
    """Sum lines into ledger rows (one per dimension combination) and append them.

    Called inside the transaction that stores the requests the lines come from, so the
    ledger and the request records always agree. Returns the number of rows added.
    """
    rows: dict[tuple[object, ...], LedgerEntry] = {}
    for line in lines:
        row = rows.get(line.dimensions)
        if row is None:
            row = rows[line.dimensions] = _empty_row(line)
        for name in SUMMED:
            setattr(row, name, getattr(row, name) + getattr(line, name))
    LedgerEntry.objects.bulk_create(rows.values(), batch_size=500)
    LedgerTagEntry.objects.bulk_create(_tag_rows(lines), batch_size=500)
    return len(rows)


def _empty_row(line: LedgerLine) -> LedgerEntry:
    return LedgerEntry(
        day=line.day,
        team=line.team,
        app=line.app,
        api_key_prefix=line.api_key_prefix,
        policy=line.policy,
        model=line.model,
        end_user=line.end_user,
        cost=Decimal(0),
        baseline_cost=Decimal(0),
        cost_avoided=Decimal(0),
        quality_cost=Decimal(0),
    )


def _tag_rows(lines: Sequence[LedgerLine]) -> list[LedgerTagEntry]:
    rows: dict[tuple[object, ...], LedgerTagEntry] = {}
    for line in lines:
        for key, value in line.tags.items():
            dims = (line.day, key, value, line.team)
            row = rows.get(dims)
            if row is None:
                row = rows[dims] = LedgerTagEntry(
                    day=line.day, key=key, value=value, team=line.team, cost=Decimal(0), baseline_cost=Decimal(0)
                )
            row.requests += line.requests
            row.cost += line.cost
            row.baseline_cost += line.baseline_cost
    return list(rows.values())


def budget_alert_raise(*, budget_id: int, period_start: datetime, level: str, spent: Decimal) -> BudgetAlert | None:
    """Record that a budget crossed a limit in a period; only the first call per level counts.

    Sends `budget_alert_raised` after commit for the dashboard's alert events and channels.
    """
    alert, created = BudgetAlert.objects.get_or_create(
        budget_id=budget_id, period_start=period_start, level=level, defaults={"spent": spent}
    )
    if not created:
        return None
    transaction.on_commit(lambda: budget_alert_raised.send(sender=BudgetAlert, alert=alert))
    return alert
