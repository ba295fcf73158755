"""Admin for selection and experiments: task categories, their ladders, goal weights, measures, experiments.

Imported by `routing.admin`, which the admin site discovers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from common.admin import ViewOnlyAdmin
from routing.models import (
    CategoryLadder,
    EndpointMeasure,
    Experiment,
    ExperimentArm,
    GoalWeights,
    LadderTier,
    TaskCategory,
)

if TYPE_CHECKING:
    TaskCategoryAdminBase = admin.ModelAdmin[TaskCategory]
    CategoryLadderAdminBase = admin.ModelAdmin[CategoryLadder]
    LadderTierInlineBase = admin.TabularInline[LadderTier, CategoryLadder]
    GoalWeightsAdminBase = admin.ModelAdmin[GoalWeights]
    ExperimentAdminBase = admin.ModelAdmin[Experiment]
    ExperimentArmInlineBase = admin.TabularInline[ExperimentArm, Experiment]
else:  # generic only in django-stubs
    TaskCategoryAdminBase = CategoryLadderAdminBase = GoalWeightsAdminBase = ExperimentAdminBase = admin.ModelAdmin
    LadderTierInlineBase = ExperimentArmInlineBase = admin.TabularInline


@admin.register(TaskCategory)
class TaskCategoryAdmin(TaskCategoryAdminBase):
    list_display = ["name", "position", "enabled", "description"]
    list_filter = ["enabled"]
    search_fields = ["name", "description", "keywords", "examples"]


class LadderTierInline(LadderTierInlineBase):
    model = LadderTier
    extra = 0
    min_num = 1
    fields = ["position", "endpoint", "threshold", "max_tokens"]


@admin.register(CategoryLadder)
class CategoryLadderAdmin(CategoryLadderAdminBase):
    list_display = ["policy", "category"]
    list_filter = ["policy", "category"]
    inlines = [LadderTierInline]


@admin.register(GoalWeights)
class GoalWeightsAdmin(GoalWeightsAdminBase):
    """One row per goal, seeded: edited, never added or deleted."""

    list_display = ["goal", "cost", "quality", "latency", "fit", "updated"]
    list_editable = ["cost", "quality", "latency", "fit"]
    readonly_fields = ["goal"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EndpointMeasure)
class EndpointMeasureAdmin(ViewOnlyAdmin):
    """Written from traffic (dashboard.rollups.measures); shown so operators see what selection sees."""

    list_display = [
        "endpoint",
        "category",
        "p95_latency_ms",
        "latency_samples",
        "quality",
        "quality_samples",
        "updated",
    ]
    list_filter = ["endpoint"]


class ExperimentArmInline(ExperimentArmInlineBase):
    model = ExperimentArm
    extra = 0
    min_num = 2
    fields = ["name", "policy", "policy_version", "weight"]


@admin.register(Experiment)
class ExperimentAdmin(ExperimentAdminBase):
    """Ending an experiment and promoting its winner happens on its comparison page (one audited action)."""

    list_display = ["name", "scope", "status", "started", "ended", "winner", "comparison"]
    list_filter = ["status"]
    readonly_fields = ["status", "winner", "started", "ended", "comparison"]
    inlines = [ExperimentArmInline]

    @admin.display(description="traffic of")
    def scope(self, obj: Experiment) -> str:
        return f"key {obj.api_key}" if obj.api_key_id else f"team {obj.team}"

    @admin.display(description="comparison")
    def comparison(self, obj: Experiment) -> str:
        if obj.pk is None:
            return "—"
        return format_html('<a href="{}">Compare the arms</a>', reverse("dashboard:experiment", args=[obj.pk]))
