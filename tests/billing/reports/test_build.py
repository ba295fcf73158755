"""Building, storing and serving monthly reports from the ledger (database, Celery, PDF)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from django.utils import timezone
from pypdf import PdfReader

from billing.choices import ReportStatus
from billing.models import LedgerEntry, MonthlyReport, PriceBookEntry
from billing.reports import selectors
from billing.reports.build import ReportMonthNotOver, report_build_monthly
from billing.reports.compute import LedgerRow, month_before, month_start
from billing.reports.pdf import report_pdf
from billing.reports.tasks import report_build_monthly_task
from testing.factories import ModelEndpointFactory
from tests.billing.reports.test_compute import FEB, february_rows, january_rows, quality_check_row

pytestmark = pytest.mark.django_db


def store(rows: list[LedgerRow], *, batches: int = 1) -> None:
    """Append rows to the ledger the way the flusher does: each row split over `batches` flushes."""
    entries = [
        LedgerEntry(api_key_prefix="co-abc", **{k: _share(v, i, batches) for k, v in asdict(row).items() if k != "tag"})
        for row in rows
        for i in range(batches)
    ]
    LedgerEntry.objects.bulk_create(entries)


def _share(value: object, i: int, batches: int) -> object:
    if isinstance(value, Decimal):
        return value / batches
    if isinstance(value, int):  # the first batches take the remainder, so the shares add up
        return value // batches + (i < value % batches)
    return value


@pytest.fixture
def ledger() -> None:
    # Every February row arrives in two flushes (requests and tokens halve evenly).
    store(february_rows(), batches=2)
    store(january_rows())


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo("UTC"))


def test_ledger_rows_sum_every_flush_of_a_day(ledger: None) -> None:
    rows = selectors.ledger_rows_for_month(month=FEB)
    assert len(rows) == 28 * 4  # one per day, team, app, policy and model, not per flush
    first = rows[0]
    assert (first.day, first.team, first.model) == (date(2025, 2, 1), "growth", "gpt-4")
    assert (first.requests, first.cost, first.baseline_cost) == (2, Decimal("0.8"), Decimal("0.8"))
    assert isinstance(first.requests, int) and isinstance(first.cost, Decimal)


def test_spend_by_day_and_team(ledger: None) -> None:
    spend = selectors.spend_by_day_and_team(month=FEB)
    assert len(spend) == 56
    assert spend[0]["day"] == date(2025, 2, 1) and spend[0]["team"] == "growth"
    assert Decimal(spend[0]["cost"]) == Decimal("1.2") and spend[0]["requests"] == 10


def test_builds_a_ready_report_with_the_golden_figures(ledger: None, settings: object) -> None:
    settings.CASCADEOPS_IMPLEMENTATION_COST_USD = Decimal("456.25")  # type: ignore[attr-defined]
    report = report_build_monthly(month=date(2025, 2, 17))  # any day of the month
    assert (report.month, report.status, report.error) == (FEB, ReportStatus.READY, "")
    assert report.generated_at is not None
    totals = report.data["totals"]
    assert (totals["cost"], totals["baseline_cost"], totals["savings"]) == ("84.000000", "294.000000", "210.000000")
    assert report.data["month_over_month"]["cost_change_rate"] == 0.2
    assert report.data["forecast"]["low"] == "167.892447"
    assert report.data["break_even"]["months"] == 2.0


def test_building_twice_keeps_one_report_with_the_same_data(ledger: None) -> None:
    first = report_build_monthly(month=FEB)
    second = report_build_monthly(month=FEB)
    assert MonthlyReport.objects.count() == 1
    assert second.id == first.id and second.data == first.data and second.generated_at == first.generated_at


def test_a_ready_report_never_changes(ledger: None) -> None:
    endpoint = ModelEndpointFactory(name="gpt-4-endpoint")
    PriceBookEntry.objects.filter(endpoint=endpoint).delete()  # whatever saving the endpoint recorded
    in_force = PriceBookEntry.objects.create(
        endpoint=endpoint, effective_from=at(date(2025, 1, 1)), input_price_per_m=10, output_price_per_m=30
    )
    report = report_build_monthly(month=FEB)
    assert report.price_book_version == in_force.id
    snapshot = MonthlyReport.objects.get().data

    # A price change, and a late row for February, after the report was built.
    PriceBookEntry.objects.create(
        endpoint=endpoint, effective_from=at(date(2025, 3, 5)), input_price_per_m=20, output_price_per_m=60
    )
    store([LedgerRow(date(2025, 2, 28), "growth", "support-bot", "default", "gpt-4", requests=1, cost=Decimal(5))])
    again = report_build_monthly(month=FEB, force=True)

    assert again.data == snapshot and again.price_book_version == in_force.id
    assert MonthlyReport.objects.get().data["totals"]["cost"] == "84.000000"


def test_price_book_version_is_the_newest_entry_started_before_the_month_ended() -> None:
    endpoint = ModelEndpointFactory(name="mixtral-endpoint")
    PriceBookEntry.objects.filter(endpoint=endpoint).delete()
    old = PriceBookEntry.objects.create(
        endpoint=endpoint, effective_from=at(date(2024, 12, 1)), input_price_per_m=1, output_price_per_m=1
    )
    during = PriceBookEntry.objects.create(
        endpoint=endpoint, effective_from=at(date(2025, 2, 28), hour=23), input_price_per_m=2, output_price_per_m=2
    )
    PriceBookEntry.objects.create(
        endpoint=endpoint, effective_from=at(date(2025, 3, 1), hour=0), input_price_per_m=3, output_price_per_m=3
    )
    assert selectors.price_book_version_for_month(month=FEB) == during.id
    assert selectors.price_book_version_for_month(month=date(2025, 1, 1)) == old.id
    assert selectors.price_book_version_for_month(month=date(2024, 11, 1)) == 0


def test_a_month_that_is_not_over_cannot_be_reported() -> None:
    with pytest.raises(ReportMonthNotOver):
        report_build_monthly(month=selectors.billing_today())
    assert not MonthlyReport.objects.exists()


def test_a_build_in_progress_elsewhere_is_left_alone(ledger: None) -> None:
    MonthlyReport.objects.create(month=FEB, status=ReportStatus.BUILDING)
    report = report_build_monthly(month=FEB)
    assert (report.status, report.data) == (ReportStatus.BUILDING, {})


def test_force_takes_over_a_build_a_dead_worker_left(ledger: None) -> None:
    MonthlyReport.objects.create(month=FEB, status=ReportStatus.BUILDING)
    report = report_build_monthly(month=FEB, force=True)
    assert report.status == ReportStatus.READY and report.data["totals"]["cost"] == "84.000000"


def test_a_failed_build_is_recorded_and_retried(ledger: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*, month: date) -> dict:
        raise RuntimeError("database went away")

    monkeypatch.setattr(selectors, "month_report", broken)
    with pytest.raises(RuntimeError):
        report_build_monthly(month=FEB)
    failed = MonthlyReport.objects.get()
    assert (failed.status, failed.error) == (ReportStatus.FAILED, "RuntimeError: database went away")

    monkeypatch.undo()
    assert report_build_monthly(month=FEB).status == ReportStatus.READY


def test_task_builds_the_month_before_by_default() -> None:
    report_build_monthly_task.delay()
    assert MonthlyReport.objects.get().month == month_before(timezone.localdate())


def test_task_builds_a_named_month(ledger: None) -> None:
    report_build_monthly_task.delay(month="2025-02")
    assert MonthlyReport.objects.get(month=FEB).status == ReportStatus.READY


def test_task_retries_once_the_month_has_ended_in_the_billing_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    retries: list[datetime] = []

    def retry(*, exc: Exception, eta: datetime) -> Exception:
        retries.append(eta)
        return RuntimeError("retry")

    monkeypatch.setattr(report_build_monthly_task, "retry", retry)
    this_month = month_start(selectors.billing_today())
    with pytest.raises(RuntimeError, match="retry"):
        report_build_monthly_task.run(month=f"{this_month:%Y-%m}")
    next_month = (this_month + timedelta(days=32)).replace(day=1)
    assert retries == [selectors.month_begins_at(next_month) + timedelta(minutes=15)]


def test_beat_builds_last_months_report_at_0015_on_the_first() -> None:
    from cascadeops.celery import app

    entry = app.conf.beat_schedule["report_build_monthly"]
    assert entry["task"] == report_build_monthly_task.name
    assert entry["schedule"] == crontab(minute=15, hour=0, day_of_month=1)


def test_month_to_date_report_is_live_from_the_ledger() -> None:
    today = selectors.billing_today()
    store([LedgerRow(today, "growth", "support-bot", "default", "mixtral", requests=3, cost=Decimal("0.75"))])
    data = selectors.month_to_date_report(today=today)
    assert data["period"]["complete"] is False and data["period"]["end"] == today.isoformat()
    assert data["totals"]["cost"] == "0.750000"
    assert not MonthlyReport.objects.exists()


def test_pdf_shows_the_month_and_the_totals(ledger: None) -> None:
    report = report_build_monthly(month=FEB)
    text = "\n".join(page.extract_text() for page in PdfReader(BytesIO(report_pdf(report.data, stored=report))).pages)
    assert "February 2025" in text
    assert f"price book version {report.price_book_version}" in text
    for figure in ("$84.00", "$294.00", "$210.00", "71.4 %", "$33.60", "672", "18.8 %", "$191.11"):
        assert figure in text, figure
    for name in ("growth", "search", "support-bot", "strict", "mixtral", "gpt-4"):
        assert name in text, name


def test_quality_checks_flow_from_the_ledger_into_the_report_and_the_pdf(ledger: None) -> None:
    store([quality_check_row()])
    row = next(r for r in selectors.ledger_rows_for_month(month=FEB) if r.quality_checks)
    assert (row.day, row.team, row.model, row.requests) == (date(2025, 2, 10), "growth", "gpt-4", 2)
    assert (row.quality_checks, row.quality_cost, row.cost) == (1, Decimal("0.0123"), Decimal("0.8123"))
    assert isinstance(row.quality_checks, int) and isinstance(row.quality_cost, Decimal)

    report = report_build_monthly(month=FEB)
    totals = report.data["totals"]
    assert (totals["quality_checks"], totals["quality_cost"], totals["cost"], totals["savings"]) == (
        1,
        "0.012300",
        "84.012300",
        "209.987700",
    )
    assert report.data["by_team"][0]["quality_cost"] == "0.012300"  # growth
    text = "\n".join(page.extract_text() for page in PdfReader(BytesIO(report_pdf(report.data, stored=report))).pages)
    for figure in ("Quality checks", "1 check run, part of the spend", "$84.01", "$209.99", "Checks"):
        assert figure in text, figure
