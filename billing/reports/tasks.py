"""Celery tasks for finance reports: thin wrappers around services."""

from __future__ import annotations

from datetime import date, timedelta

from celery import Task, shared_task
from django.utils import timezone

# After the month ends in the billing time zone, wait this long for the last records'
# flush before building (beat's own run is at 00:15 for the same reason).
SETTLE = timedelta(minutes=15)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def report_build_monthly_task(self: Task[[str | None], int], month: str | None = None) -> int:
    """Build the report of `month` ("2025-02"), or of the month before today (beat, on the 1st).

    "Today" is beat's date (`TIME_ZONE`). Where the billing time zone is behind it, that
    month has not ended there yet at 00:15: the task retries once it has.
    """
    from billing.reports.build import ReportMonthNotOver, report_build_monthly
    from billing.reports.compute import month_before

    target = date.fromisoformat(f"{month}-01") if month else month_before(timezone.localdate())
    try:
        return report_build_monthly(month=target).id
    except ReportMonthNotOver as exc:
        raise self.retry(exc=exc, eta=exc.ends_at + SETTLE) from exc
