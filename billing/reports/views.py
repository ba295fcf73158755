"""The finance pages: months, each month's report with charts and tables, CSV and PDF downloads.

Everyone here needs `billing.view_finance` (the `finance` and `operator` groups have it).
The current month is computed live from the ledger; past months show their stored report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from billing.budgets.selectors import budget_states
from billing.reports import compute as reports
from billing.reports import pdf, selectors
from common.spreadsheets import CsvWriter

VIEW_FINANCE = "billing.view_finance"
VIEW_BUDGET = "billing.view_budget"

View = Callable[..., HttpResponse]


def finance_page(view: View) -> View:
    """Log in first (a redirect), then 403 for an account without `billing.view_finance`."""
    return login_required(permission_required(VIEW_FINANCE, raise_exception=True)(view))


@finance_page
def index(request: HttpRequest) -> HttpResponse:
    """This month so far, and every stored monthly report."""
    today = selectors.billing_today()
    current = selectors.month_to_date_report(today=today)
    context = {
        "current": current,
        "tiles": reports.summary_tiles(current),
        "month": reports.month_start(today),
        "stored": selectors.monthly_report_list(),
        "budgets": budget_states(),
    }
    return render(request, "billing/index.html", context)


@login_required
@permission_required(VIEW_BUDGET, raise_exception=True)
def budgets(request: HttpRequest) -> HttpResponse:
    """Every budget and where it stands this period, for whoever may view budgets."""
    return render(request, "billing/budgets.html", {"budgets": budget_states()})


@finance_page
def report(request: HttpRequest, month: date) -> HttpResponse:
    """One month: headline figures, charts, projections and the breakdown tables."""
    found = _finance_report(month)
    if found.data is None:
        return render(request, "billing/report_missing.html", {"found": found}, status=404)
    context = {
        "found": found,
        "data": found.data,
        "tiles": reports.summary_tiles(found.data),
        "projections": reports.projection_rows(found.data),
        "tables": reports.breakdown_tables(found.data),
        "headers": reports.BREAKDOWN_HEADERS,
        "figures": reports.figures(found.data),
    }
    return render(request, "billing/report.html", context)


@finance_page
def report_csv(request: HttpRequest, month: date) -> HttpResponse:
    """The report as one CSV table (columns: `reports.CSV_COLUMNS`)."""
    data = _ready_data(month)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="cascadeops-finance-{data["month"]}.csv"'
    CsvWriter(response).writerows(reports.csv_rows(data))  # names are escaped: common.spreadsheets
    return response


@finance_page
def report_pdf(request: HttpRequest, month: date) -> HttpResponse:
    """The report as a PDF (ReportLab)."""
    found = _finance_report(month)
    data = _ready_data(month, found)
    response = HttpResponse(pdf.report_pdf(data, stored=found.stored), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="cascadeops-finance-{data["month"]}.pdf"'
    return response


def _finance_report(month: date) -> selectors.FinanceReport:
    found = selectors.finance_report_get(month=month, today=selectors.billing_today())
    if found is None:
        raise Http404(f"No report for {month:%B %Y}.")
    return found


def _ready_data(month: date, found: selectors.FinanceReport | None = None) -> reports.Json:
    found = found or _finance_report(month)
    if found.data is None:
        raise Http404(f"The report for {month:%B %Y} is not ready.")
    return found.data
