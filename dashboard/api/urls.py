"""The dashboard API's routes: one router line per model, kebab-case plurals."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from dashboard.api import views
from dashboard.tuning import api as tuning

router = DefaultRouter()
router.register("rollups", views.RollupViewSet, basename="rollup")
router.register("sla-targets", views.SlaTargetViewSet, basename="sla-target")
router.register("alert-rules", views.AlertRuleViewSet, basename="alert-rule")
router.register("alert-events", views.AlertEventViewSet, basename="alert-event")
router.register("alert-deliveries", views.AlertDeliveryViewSet, basename="alert-delivery")
# Auto-tuning.
router.register("tuning-configs", tuning.TuningConfigViewSet, basename="tuning-config")
router.register("tuning-proposals", tuning.TuningProposalViewSet, basename="tuning-proposal")

urlpatterns = [*router.urls, path("what-if/", tuning.WhatIfApi.as_view(), name="what-if")]
