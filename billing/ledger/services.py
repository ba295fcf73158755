"""The spend ledger's writes: lines appended with their tags, summed per day and scope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing.models import LedgerEntry, LedgerTagEntry


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
