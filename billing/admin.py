"""Billing in the admin: the price book, budgets and the ledger (monthly reports: `billing.reports.admin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import Budget, BudgetAlert, LedgerEntry, LedgerTagEntry, PriceBookEntry
from billing.reports import admin as admin_reports  # noqa: F401  (registers MonthlyReport)
from common.admin import ViewOnlyAdmin

if TYPE_CHECKING:
    BudgetAdminBase = admin.ModelAdmin[Budget]
    PriceBookEntryAdminBase = admin.ModelAdmin[PriceBookEntry]
else:  # generic only in django-stubs: Django's classes take no type arguments at run time
    BudgetAdminBase = PriceBookEntryAdminBase = admin.ModelAdmin


@admin.register(Budget)
class BudgetAdmin(BudgetAdminBase):
    list_display = [
        "name",
        "scope",
        "scope_value",
        "period",
        "limit",
        "soft_limit_percent",
        "soft_action",
        "hard_action",
        "enabled",
    ]
    list_filter = ["scope", "period", "hard_action", "enabled"]
    search_fields = ["name", "scope_value"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "scope", "scope_value", "period", "limit"]}),
        ("As the limit nears", {"fields": ["soft_limit_percent", "soft_action", "degraded_threshold"]}),
        ("At the limit", {"fields": ["hard_action"]}),
    ]


@admin.register(PriceBookEntry)
class PriceBookEntryAdmin(PriceBookEntryAdminBase):
    """Schedule a price change by adding an entry with a future `effective_from`."""

    list_display = [
        "endpoint",
        "effective_from",
        "input_price_per_m",
        "output_price_per_m",
        "cached_input_price_per_m",
        "note",
    ]
    list_filter = ["endpoint"]
    date_hierarchy = "effective_from"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Past costs are stored with the entry they used; editing one would make the
        # record and the book disagree. Add a new entry instead.
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ViewOnlyAdmin):
    list_display = [
        "day",
        "team",
        "app",
        "policy",
        "model",
        "end_user",
        "requests",
        "cost",
        "quality_cost",
        "baseline_cost",
    ]
    list_filter = ["day", "team", "policy", "model"]
    search_fields = ["app", "end_user", "api_key_prefix"]


@admin.register(LedgerTagEntry)
class LedgerTagEntryAdmin(ViewOnlyAdmin):
    list_display = ["day", "key", "value", "team", "requests", "cost"]
    list_filter = ["day", "key"]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ViewOnlyAdmin):
    list_display = ["budget", "level", "period_start", "spent", "created"]
    list_filter = ["level", "budget"]
