"""Billing's reads for finance: ledger rows by month, spend by day and team, reports.

Every selector here costs a fixed number of queries whatever the size of the ledger: the
database sums the append-only ledger rows (many per day, one set per flushed batch) and
returns one row per day, team, app, policy and model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Max, QuerySet, Sum
from django.db.models.fields.json import KT
from django.utils import timezone

from billing.choices import ReportStatus
from billing.models import LedgerEntry, LedgerTagEntry, MonthlyReport, PriceBookEntry
from billing.reports import compute as reports


def billing_today() -> date:
    """Today in the billing time zone, where the ledger's days and months start."""
    return timezone.localdate(timezone=ZoneInfo(settings.BILLING_TIME_ZONE))


def month_begins_at(month: date) -> datetime:
    """Midnight at the start of `month` in the billing time zone."""
    return datetime.combine(reports.month_start(month), time.min, tzinfo=ZoneInfo(settings.BILLING_TIME_ZONE))


def _month_entries(month: date) -> QuerySet[LedgerEntry]:
    start = reports.month_start(month)
    return LedgerEntry.objects.filter(day__gte=start, day__lt=reports.month_after(start))


def ledger_rows_for_month(*, month: date) -> list[reports.LedgerRow]:
    """The month's ledger summed per day, team, app, policy and model (one query)."""
    sums = {name: Sum(name) for name in reports.SUMMED}
    rows = _month_entries(month).values(*reports.DIMENSIONS).annotate(**sums).order_by(*reports.DIMENSIONS)
    return [_ledger_row(row) for row in rows]


def end_user_rows_for_month(*, month: date) -> list[reports.LedgerRow]:
    """The month's ledger summed per day and end user (one query)."""
    sums = {name: Sum(name) for name in reports.SUMMED}
    rows = _month_entries(month).values("day", "end_user").annotate(**sums).order_by("day", "end_user")
    return [_ledger_row({**row, "team": "", "app": "", "policy": "", "model": ""}) for row in rows]


def tag_rows_for_month(*, month: date) -> list[reports.LedgerRow]:
    """The month's tag ledger summed per day and tag (`key=value`; one query)."""
    start = reports.month_start(month)
    entries = LedgerTagEntry.objects.filter(day__gte=start, day__lt=reports.month_after(start))
    rows = (
        entries.values("day", "key", "value")
        .annotate(requests=Sum("requests"), cost=Sum("cost"), baseline_cost=Sum("baseline_cost"))
        .order_by("day", "key", "value")
    )
    return [
        reports.LedgerRow(
            day=row["day"], team="", app="", policy="", model="", tag=f"{row['key']}={row['value']}",
            requests=int(row["requests"]), cost=Decimal(row["cost"]), baseline_cost=Decimal(row["baseline_cost"]),
        )
        for row in rows
    ]  # fmt: skip


MonthAndBefore = tuple[list[reports.LedgerRow], list[reports.LedgerRow]]


def attribution_rows(*, month: date) -> tuple[MonthAndBefore, MonthAndBefore]:
    """`report_data`'s end-user and tag rows, each this month's and the previous month's (four queries)."""
    previous = reports.month_before(month)
    return (
        (end_user_rows_for_month(month=month), end_user_rows_for_month(month=previous)),
        (tag_rows_for_month(month=month), tag_rows_for_month(month=previous)),
    )


def _ledger_row(row: dict[str, Any]) -> reports.LedgerRow:
    # PostgreSQL sums bigints as numeric: make every count an int and every amount a Decimal.
    sums = {name: Decimal(row[name]) if name in reports.AMOUNTS else int(row[name]) for name in reports.SUMMED}
    return reports.LedgerRow(**{**row, **sums})


def spend_by_day_and_team(*, month: date) -> list[dict[str, Any]]:
    """Cost and baseline cost per day and team in `month`, ordered by day then team (one query)."""
    rows = (
        _month_entries(month)
        .values("day", "team")
        .annotate(requests=Sum("requests"), cost=Sum("cost"), baseline_cost=Sum("baseline_cost"))
        .order_by("day", "team")
    )
    return [dict(row) for row in rows]


def month_to_date_report(*, today: date) -> reports.Json:
    """The current month's report up to `today`, computed live from the ledger (six queries)."""
    month = reports.month_start(today)
    end_users, tags = attribution_rows(month=month)
    return reports.report_data(
        month=month,
        rows=ledger_rows_for_month(month=month),
        previous_rows=ledger_rows_for_month(month=reports.month_before(month)),
        as_of=today,
        day_fraction=day_fraction_passed(today),
        implementation_cost=settings.CASCADEOPS_IMPLEMENTATION_COST_USD,
        end_user_rows=end_users,
        tag_rows=tags,
    )


def day_fraction_passed(day: date) -> float:
    """How much of `day` (in the billing time zone) has passed: 0 at midnight, 1 once it is over."""
    start = datetime.combine(day, time.min, tzinfo=ZoneInfo(settings.BILLING_TIME_ZONE))
    passed = (timezone.now() - start).total_seconds() / 86400
    return min(max(passed, 0.0), 1.0)


def price_book_version_for_month(*, month: date) -> int:
    """The newest price-book entry in force during `month` (the highest id that started before it ended); 0 if none."""
    end = month_begins_at(reports.month_after(month))
    newest = PriceBookEntry.objects.filter(effective_from__lt=end).aggregate(newest=Max("id"))["newest"]
    return int(newest or 0)


def monthly_report_list() -> list[dict[str, Any]]:
    """Every stored report, newest first: month, status and headline money, without the rest of the data."""
    rows = MonthlyReport.objects.values(
        "month",
        "status",
        "generated_at",
        "price_book_version",
        cost=KT("data__totals__cost"),
        baseline_cost=KT("data__totals__baseline_cost"),
        savings=KT("data__totals__savings"),
    ).order_by("-month")
    return [dict(row) for row in rows]


@dataclass(frozen=True, slots=True)
class FinanceReport:
    """What the finance pages show for a month: live data, a stored snapshot, or a report not ready yet."""

    month: date
    data: reports.Json | None
    stored: MonthlyReport | None

    @property
    def live(self) -> bool:
        return self.stored is None


def finance_report_get(*, month: date, today: date) -> FinanceReport | None:
    """The current month live from the ledger, or a past month's stored report; None for other months.

    A past month's report that is not ready has no data: the page says why. A report stored
    with an older schema is read as the current one (`billing.reports.compute.upgrade`).
    """
    month = reports.month_start(month)
    if month == reports.month_start(today):
        return FinanceReport(month=month, data=month_to_date_report(today=today), stored=None)
    stored = MonthlyReport.objects.filter(month=month).first()
    if stored is None:
        return None
    data = reports.upgrade(stored.data) if stored.status == ReportStatus.READY else None
    return FinanceReport(month=month, data=data, stored=stored)


def month_report(*, month: date) -> reports.Json:
    """The report of a month that is over, computed from the ledger now (six queries)."""
    month = reports.month_start(month)
    end_users, tags = attribution_rows(month=month)
    return reports.report_data(
        month=month,
        end_user_rows=end_users,
        tag_rows=tags,
        rows=ledger_rows_for_month(month=month),
        previous_rows=ledger_rows_for_month(month=reports.month_before(month)),
        implementation_cost=settings.CASCADEOPS_IMPLEMENTATION_COST_USD,
    )
