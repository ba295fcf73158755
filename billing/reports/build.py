"""Monthly reports: build a month's immutable snapshot, safely, as often as asked."""

from __future__ import annotations

from datetime import date, datetime

from django.utils import timezone

from billing.choices import ReportStatus
from billing.models import MonthlyReport
from billing.reports import compute as reports
from billing.reports import selectors


class ReportMonthNotOver(Exception):
    """The month has not ended yet in the billing time zone, so it cannot be reported."""

    def __init__(self, month: date, ends_at: datetime) -> None:
        super().__init__(f"{month:%B %Y} ends at {ends_at.isoformat()}")
        self.month = month
        self.ends_at = ends_at


def report_build_monthly(*, month: date, force: bool = False) -> MonthlyReport:
    """Build and store the report of `month` (any day of it), unless it is built already.

    Safe to run twice, also at the same time: only the run that moves the report from
    pending (or failed) to building builds it; every other run returns the report as it
    is. A ready report is immutable and is returned untouched, so a price change or a
    late correction never rewrites a month finance has seen. `force` also takes over a
    build left in `building` by a worker that died; it never rebuilds a ready report.
    """
    month = reports.month_start(month)
    ends_at = selectors.month_begins_at(reports.month_after(month))
    if timezone.now() < ends_at:
        raise ReportMonthNotOver(month, ends_at)
    report, _ = MonthlyReport.objects.get_or_create(month=month)
    claimable = [ReportStatus.PENDING, ReportStatus.FAILED] + ([ReportStatus.BUILDING] if force else [])
    if MonthlyReport.objects.filter(id=report.id, status__in=claimable).update(status=ReportStatus.BUILDING) == 1:
        _build(report.id, month)
    report.refresh_from_db()
    return report


def _build(report_id: int, month: date) -> None:
    building = MonthlyReport.objects.filter(id=report_id, status=ReportStatus.BUILDING)
    try:
        data = selectors.month_report(month=month)
        version = selectors.price_book_version_for_month(month=month)
    except Exception as exc:
        building.update(status=ReportStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    building.update(
        status=ReportStatus.READY, data=data, price_book_version=version, generated_at=timezone.now(), error=""
    )
