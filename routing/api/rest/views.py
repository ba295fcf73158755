"""REST viewsets for the management API: one per model, NetBox-style.

Reading needs the model's `view` permission and writing its `add`/`change`/`delete`
permission. Deleting a row that others still point at answers 409 instead of 500.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from common.drf import ChangeModelPermissions, ViewModelPermissions, destroy_unless_protected
from routing.api.rest.filters import RequestRecordFilterSet
from routing.api.rest.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    CategoryLadderSerializer,
    ExperimentEndSerializer,
    ExperimentSerializer,
    GoalWeightsSerializer,
    ModelEndpointSerializer,
    PolicySerializer,
    PolicyVersionSerializer,
    QualityLabelSerializer,
    RequestRecordSerializer,
    ScorerVersionSerializer,
    ShadowEvaluationSerializer,
    TaskCategorySerializer,
)
from routing.choices import ExperimentStatus
from routing.experiments.services import experiment_end
from routing.models import (
    ApiKey,
    CategoryLadder,
    Experiment,
    GoalWeights,
    ModelEndpoint,
    Policy,
    PolicyVersion,
    QualityLabel,
    RequestRecord,
    ScorerVersion,
    ShadowEvaluation,
    TaskCategory,
)
from routing.policies import ladders, services, versions


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


class PolicyChangePermission(BasePermission):
    """Restoring a version changes its policy: the policy's `change` permission, as in the admin."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("routing.change_policy"))


class PolicyVersionViewSet(viewsets.ReadOnlyModelViewSet[PolicyVersion]):
    """Every stored version of every policy, whole; restore one as a new version."""

    queryset = PolicyVersion.objects.all()
    serializer_class = PolicyVersionSerializer
    permission_classes = [ViewModelPermissions]
    filterset_fields = ["policy", "number"]

    @extend_schema(request=None, responses={201: PolicyVersionSerializer})
    @action(detail=True, methods=["post"], permission_classes=[ViewModelPermissions, PolicyChangePermission])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        """Make this version's configuration current again, as a new version."""
        try:
            restored = versions.policy_version_restore(version=self.get_object())
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"detail": exc.messages}) from exc
        body = self.get_serializer(restored).data
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyViewSet(viewsets.ModelViewSet[ApiKey]):
    """API keys: the key is shown once, in the answer to its creation; revoke one with `revoke`."""

    queryset = ApiKey.objects.all()
    serializer_class = ApiKeySerializer
    permission_classes = [ViewModelPermissions]
    filterset_fields = ["team", "app", "policy"]

    def get_serializer_class(self) -> type[ApiKeySerializer]:
        return ApiKeyCreatedSerializer if self.action == "create" else ApiKeySerializer

    def perform_destroy(self, instance: ApiKey) -> None:
        destroy_unless_protected(instance)

    @extend_schema(request=None, responses={200: ApiKeySerializer})
    @action(detail=True, methods=["post"], permission_classes=[ChangeModelPermissions])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Revoke the key from now (a key already revoked stays as it is)."""
        key = self.get_object()
        services.api_key_revoke(key=key)
        return Response(self.get_serializer(key).data)


class RequestRecordViewSet(viewsets.ReadOnlyModelViewSet[RequestRecord]):
    """Routed requests with their attempts, newest first; filterable by query parameters."""

    queryset = RequestRecord.objects.prefetch_related("attempts")
    serializer_class = RequestRecordSerializer
    permission_classes = [ViewModelPermissions]
    filterset_class = RequestRecordFilterSet

    @extend_schema(responses={200: PolicyVersionSerializer})
    @action(detail=True, methods=["get"], url_path="policy-version", serializer_class=PolicyVersionSerializer)
    def policy_version(self, request: Request, pk: str | None = None) -> Response:
        """The stored policy version that routed this request (404 if it was routed before versions were kept)."""
        version = versions.policy_version_for_record(self.get_object())
        if version is None:
            raise Http404("No stored version of this record's policy.")
        return Response(PolicyVersionSerializer(version, context=self.get_serializer_context()).data)


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


# --- Categories, ladders, goal weights and experiments ------------------------------------------


class TaskCategoryViewSet(viewsets.ModelViewSet[TaskCategory]):
    """Task categories: what names a request's kind, tried in `position` order."""

    queryset = TaskCategory.objects.all()
    serializer_class = TaskCategorySerializer
    permission_classes = [ViewModelPermissions]

    def perform_destroy(self, instance: TaskCategory) -> None:
        destroy_unless_protected(instance)


class GoalWeightsViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet[GoalWeights]
):
    """The weight profile of each optimisation goal: one row per goal, edited, never added or removed."""

    queryset = GoalWeights.objects.all()
    serializer_class = GoalWeightsSerializer
    permission_classes = [ViewModelPermissions]


class CategoryLadderViewSet(viewsets.ModelViewSet[CategoryLadder]):
    """Policies' ladders per category, with their rungs nested; each write is a new policy version."""

    queryset = CategoryLadder.objects.select_related("category").prefetch_related("tiers")
    serializer_class = CategoryLadderSerializer
    permission_classes = [ViewModelPermissions]
    filterset_fields = ["policy", "category"]

    def perform_destroy(self, instance: CategoryLadder) -> None:
        ladders.ladder_delete(ladder=instance)


class ExperimentViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[Experiment],
):
    """A/B experiments with their arms; `end` stops one and can promote its winner (audited)."""

    queryset = Experiment.objects.prefetch_related("arms")
    serializer_class = ExperimentSerializer
    permission_classes = [ViewModelPermissions]
    filterset_fields = ["status", "team", "api_key"]

    @extend_schema(request=ExperimentEndSerializer, responses={200: ExperimentSerializer})
    @action(detail=True, methods=["post"], permission_classes=[ChangeModelPermissions])
    def end(self, request: Request, pk: str | None = None) -> Response:
        """End the experiment; with `winner`, the experiment's keys route through that arm's policy from now on."""
        experiment = self.get_object()
        if experiment.status != ExperimentStatus.RUNNING:
            raise serializers.ValidationError({"detail": "This experiment has ended already."})
        ask = ExperimentEndSerializer(data=request.data)
        ask.is_valid(raise_exception=True)
        winner_id = ask.validated_data["winner"]
        winner = None if winner_id is None else experiment.arms.filter(pk=winner_id).first()
        if winner_id is not None and winner is None:
            raise serializers.ValidationError({"winner": "Not an arm of this experiment."})
        experiment_end(experiment=experiment, winner=winner)
        return Response(self.get_serializer(experiment).data)
