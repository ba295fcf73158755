"""The finance pages, mounted at /finance/: months are written yyyy-mm."""

from __future__ import annotations

from datetime import date

from django.urls import path, register_converter

from billing.reports import views


class MonthConverter:
    """`2025-02` ↔ date(2025, 2, 1); an impossible month (2025-13) matches nothing, so 404."""

    regex = r"\d{4}-\d{2}"

    def to_python(self, value: str) -> date:
        return date.fromisoformat(f"{value}-01")

    def to_url(self, value: date) -> str:
        return f"{value:%Y-%m}"


register_converter(MonthConverter, "yyyy_mm")

app_name = "billing"
urlpatterns = [
    path("", views.index, name="index"),
    path("budgets/", views.budgets, name="budgets"),
    path("<yyyy_mm:month>/", views.report, name="report"),
    path("<yyyy_mm:month>/report.csv", views.report_csv, name="report-csv"),
    path("<yyyy_mm:month>/report.pdf", views.report_pdf, name="report-pdf"),
]
