"""Monthly reports in the admin: read-only snapshots, and a form to build one on demand.

"Add monthly report" opens the build form: a report is never typed in, only built from
the ledger (`report_build_monthly`), and once ready it can be neither changed nor deleted.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from billing.choices import ReportStatus
from billing.models import MonthlyReport
from billing.reports import compute as reports
from billing.reports import selectors
from billing.reports.build import ReportMonthNotOver, report_build_monthly


class BuildReportForm(forms.Form):
    month = forms.DateField(
        input_formats=["%Y-%m"],
        widget=forms.DateInput(attrs={"type": "month"}, format="%Y-%m"),
        help_text="A month that is over. A month with a ready report keeps it: reports are immutable.",
    )
    force = forms.BooleanField(
        required=False, label="Take over a build left in “building” (its worker died)", initial=False
    )


if TYPE_CHECKING:
    ReportAdminBase = admin.ModelAdmin[MonthlyReport]
else:  # ModelAdmin is generic only in django-stubs
    ReportAdminBase = admin.ModelAdmin

FIELDS = ("month", "status", "summary", "price_book_version", "generated_at", "error", "created")


@admin.register(MonthlyReport)
class MonthlyReportAdmin(ReportAdminBase):
    list_display = ["month_label", "status", "summary", "price_book_version", "generated_at"]
    list_filter = ["status"]
    fields = FIELDS
    readonly_fields = FIELDS
    actions = ["build_selected"]

    @admin.display(description="month", ordering="month")
    def month_label(self, obj: MonthlyReport) -> str:
        return f"{obj.month:%B %Y}"

    @admin.display(description="spend and savings")
    def summary(self, obj: MonthlyReport) -> str:
        totals = obj.data.get("totals")
        if not totals:
            return "–"
        saved = reports.percent(totals["savings_rate"])
        return f"{reports.dollars(totals['cost'])} spent, {reports.dollars(totals['savings'])} saved ({saved})"

    def view_on_site(self, obj: MonthlyReport) -> str:
        return reverse("billing:report", args=[obj.month])

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """Build a month's report on demand (the admin's "Add" button leads here)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        last_month = reports.month_before(selectors.billing_today())
        form = BuildReportForm(request.POST or None, initial={"month": last_month})
        if request.method == "POST" and form.is_valid():
            self._build(request, form.cleaned_data["month"], force=form.cleaned_data["force"])
            return HttpResponseRedirect(reverse("admin:billing_monthlyreport_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Build a monthly report",
            "form": form,
        }
        return render(request, "billing/admin_build_report.html", context)

    @admin.action(description="Build the selected reports (failed or pending ones are retried)", permissions=["add"])
    def build_selected(self, request: HttpRequest, queryset: QuerySet[MonthlyReport]) -> None:
        for month in queryset.values_list("month", flat=True):
            self._build(request, month)

    def _build(self, request: HttpRequest, month: date, *, force: bool = False) -> None:
        label = f"{month:%B %Y}"
        try:
            report = report_build_monthly(month=month, force=force)
        except ReportMonthNotOver as exc:
            self.message_user(request, f"{label} is not over yet ({exc}).", messages.ERROR)
        except Exception as exc:  # the report is marked failed with the error; say so here
            self.message_user(request, f"Building {label} failed: {exc}", messages.ERROR)
        else:
            level = messages.SUCCESS if report.status == ReportStatus.READY else messages.WARNING
            self.message_user(request, f"{label}: {report.get_status_display().lower()}.", level)
