"""REST viewsets for the management API: one per model, NetBox-style.

Reading needs the model's `view` permission and writing its `add`/`change`/`delete`
permission. Deleting a row that others still point at answers 409 instead of 500.
"""

from __future__ import annotations

from rest_framework import viewsets

from common.drf import ViewModelPermissions, destroy_unless_protected
from routing.api.rest.filters import RequestRecordFilterSet
from routing.api.rest.serializers import (
    ModelEndpointSerializer,
    PolicySerializer,
    QualityLabelSerializer,
    RequestRecordSerializer,
    ScorerVersionSerializer,
    ShadowEvaluationSerializer,
)
from routing.models import ModelEndpoint, Policy, QualityLabel, RequestRecord, ScorerVersion, ShadowEvaluation


class ModelEndpointViewSet(viewsets.ModelViewSet[ModelEndpoint]):
    """The model registry, with each endpoint's price-book entries (prices in force, next scheduled)."""

    queryset = ModelEndpoint.objects.prefetch_related("prices")
    serializer_class = ModelEndpointSerializer
    permission_classes = [ViewModelPermissions]

    def perform_destroy(self, instance: ModelEndpoint) -> None:
        destroy_unless_protected(instance)


class PolicyViewSet(viewsets.ModelViewSet[Policy]):
    """Routing policies with their tiers and task rules nested."""

    queryset = Policy.objects.prefetch_related("tiers__peers", "task_rules")
    serializer_class = PolicySerializer
    permission_classes = [ViewModelPermissions]

    def perform_destroy(self, instance: Policy) -> None:
        destroy_unless_protected(instance)


class RequestRecordViewSet(viewsets.ReadOnlyModelViewSet[RequestRecord]):
    """Routed requests with their attempts, newest first; filterable by query parameters."""

    queryset = RequestRecord.objects.prefetch_related("attempts")
    serializer_class = RequestRecordSerializer
    permission_classes = [ViewModelPermissions]
    filterset_class = RequestRecordFilterSet


# --- Quality loop -------------------------------------------------------------------------


class QualityLabelViewSet(viewsets.ReadOnlyModelViewSet[QualityLabel]):
    """Labels of requests' answers: app feedback, shadow verdicts and replay grades."""

    queryset = QualityLabel.objects.all()
    serializer_class = QualityLabelSerializer
    permission_classes = [ViewModelPermissions]


class ShadowEvaluationViewSet(viewsets.ReadOnlyModelViewSet[ShadowEvaluation]):
    """Shadow evaluations with their verdict and cost, newest first."""

    queryset = ShadowEvaluation.objects.select_related("record")
    serializer_class = ShadowEvaluationSerializer
    permission_classes = [ViewModelPermissions]


class ScorerVersionViewSet(viewsets.ReadOnlyModelViewSet[ScorerVersion]):
    """Trained scorer versions per policy; activate one in the admin or through tuning."""

    queryset = ScorerVersion.objects.defer("model")
    serializer_class = ScorerVersionSerializer
    permission_classes = [ViewModelPermissions]
