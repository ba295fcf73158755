"""REST viewsets for the management API: one per model, NetBox-style.

Reading needs the model's `view` permission and writing its `add`/`change`/`delete`
permission. Deleting a row that others still point at answers 409 instead of 500.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, viewsets

from common.drf import ViewModelPermissions, destroy_unless_protected
from routing.api.rest.serializers import (
    ModelEndpointSerializer,
    PolicySerializer,
    QualityLabelSerializer,
    RequestRecordSerializer,
    ScorerVersionSerializer,
    ShadowEvaluationSerializer,
)
from routing.choices import RecordStatus
from routing.models import ModelEndpoint, Policy, QualityLabel, RequestRecord, ScorerVersion, ShadowEvaluation

TRUE_VALUES = {"true", "1", "yes"}
FALSE_VALUES = {"false", "0", "no"}


class ModelEndpointViewSet(viewsets.ModelViewSet):
    """The model registry."""

    queryset = ModelEndpoint.objects.all()
    serializer_class = ModelEndpointSerializer
    permission_classes = [ViewModelPermissions]

    def perform_destroy(self, instance: ModelEndpoint) -> None:
        destroy_unless_protected(instance)


class PolicyViewSet(viewsets.ModelViewSet):
    """Routing policies with their tiers and task rules nested."""

    queryset = Policy.objects.prefetch_related("tiers", "task_rules")
    serializer_class = PolicySerializer
    permission_classes = [ViewModelPermissions]

    def perform_destroy(self, instance: Policy) -> None:
        destroy_unless_protected(instance)


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in TRUE_VALUES | FALSE_VALUES:
        return lowered in TRUE_VALUES
    raise ValueError("Must be true or false.")


def _parse_status(value: str) -> str:
    if value in RecordStatus.values:
        return value
    raise ValueError(f"Must be one of: {', '.join(RecordStatus.values)}.")


def _parse_datetime(value: str) -> datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError("Must be an ISO 8601 date-time, e.g. 2025-01-31T00:00:00Z.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def _exact(value: str) -> str:
    return value


# query parameter → (ORM lookup, parser that raises ValueError with the message to show)
RECORD_FILTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "policy": ("policy_name", _exact),
    "team": ("team", _exact),
    "app": ("app", _exact),
    "status": ("status", _parse_status),
    "escalated": ("escalated", _parse_bool),
    "created_after": ("created__gte", _parse_datetime),
    "created_before": ("created__lt", _parse_datetime),
}


def record_filters(params: Any) -> dict[str, Any]:
    """ORM lookups for the filter query parameters given; 400 naming each bad one."""
    lookups: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for param, (lookup, parse) in RECORD_FILTERS.items():
        value = params.get(param, "")
        if value == "":
            continue
        try:
            lookups[lookup] = parse(value)
        except ValueError as exc:
            errors[param] = [str(exc)]
    if errors:
        raise exceptions.ValidationError(errors)
    return lookups


RECORD_FILTER_PARAMETERS = [
    OpenApiParameter("policy", str, description="Policy name, as recorded."),
    OpenApiParameter("team", str),
    OpenApiParameter("app", str),
    OpenApiParameter("status", str, enum=RecordStatus.values),
    OpenApiParameter("escalated", bool),
    OpenApiParameter("created_after", OpenApiTypes.DATETIME, description="Created at or after (ISO 8601)."),
    OpenApiParameter("created_before", OpenApiTypes.DATETIME, description="Created before (ISO 8601)."),
]


@extend_schema_view(list=extend_schema(parameters=RECORD_FILTER_PARAMETERS))
class RequestRecordViewSet(viewsets.ReadOnlyModelViewSet):
    """Routed requests with their attempts, newest first; filterable by query parameters."""

    queryset = RequestRecord.objects.prefetch_related("attempts")
    serializer_class = RequestRecordSerializer
    permission_classes = [ViewModelPermissions]

    def filter_queryset(self, queryset: QuerySet[RequestRecord]) -> QuerySet[RequestRecord]:
        # Filtering here, not in get_queryset(): DjangoModelPermissions calls get_queryset()
        # to find the model, so a bad filter would answer 400 before the 403 it deserves.
        queryset = super().filter_queryset(queryset)
        if self.action != "list":
            return queryset
        return queryset.filter(**record_filters(self.request.query_params))


# --- Quality loop (issue 6) -----------------------------------------------------------------


class QualityLabelViewSet(viewsets.ReadOnlyModelViewSet):
    """Labels of requests' answers: app feedback, shadow verdicts and replay grades."""

    queryset = QualityLabel.objects.all()
    serializer_class = QualityLabelSerializer
    permission_classes = [ViewModelPermissions]


class ShadowEvaluationViewSet(viewsets.ReadOnlyModelViewSet):
    """Shadow evaluations with their verdict and cost, newest first."""

    queryset = ShadowEvaluation.objects.select_related("record")
    serializer_class = ShadowEvaluationSerializer
    permission_classes = [ViewModelPermissions]


class ScorerVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Trained scorer versions per policy; activate one in the admin or through tuning."""

    queryset = ScorerVersion.objects.defer("model")
    serializer_class = ScorerVersionSerializer
    permission_classes = [ViewModelPermissions]
