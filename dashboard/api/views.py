"""REST viewsets for the dashboard's API: one per model, NetBox-style.

Rollups, events and deliveries are read-only (the system writes them); events have an
`acknowledge` action. Permissions are the models' (`view` to read), as in routing's API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.drf import ViewModelPermissions
from dashboard.alerts import services
from dashboard.api.serializers import (
    AlertDeliverySerializer,
    AlertEventSerializer,
    AlertRuleSerializer,
    RollupSerializer,
    SlaTargetSerializer,
)
from dashboard.choices import Resolution
from dashboard.models import AlertDelivery, AlertEvent, AlertRule, Rollup, SlaTarget


def _parse_datetime(value: str) -> datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError("Must be an ISO 8601 date-time, e.g. 2025-01-31T00:00:00Z.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def _rollup_filters(params: Any) -> dict[str, Any]:
    lookups: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    resolution = params.get("resolution", "")
    if resolution and resolution not in Resolution.values:
        errors["resolution"] = [f"Must be one of: {', '.join(Resolution.values)}."]
    elif resolution:
        lookups["resolution"] = resolution
    if params.get("policy", ""):
        lookups["policy_name"] = params["policy"]
    for param, lookup in (("since", "bucket__gte"), ("until", "bucket__lt")):
        if params.get(param, ""):
            try:
                lookups[lookup] = _parse_datetime(params[param])
            except ValueError as exc:
                errors[param] = [str(exc)]
    if errors:
        raise exceptions.ValidationError(errors)
    return lookups


ROLLUP_PARAMETERS = [
    OpenApiParameter("resolution", str, enum=Resolution.values),
    OpenApiParameter("policy", str, description="Policy name, as recorded."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="Buckets starting at or after (ISO 8601)."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Buckets starting before (ISO 8601)."),
]


@extend_schema_view(list=extend_schema(parameters=ROLLUP_PARAMETERS))
class RollupViewSet(viewsets.ReadOnlyModelViewSet):
    """Per-minute and per-hour rollups, oldest first; filterable by query parameters."""

    queryset = Rollup.objects.order_by("resolution", "bucket", "policy_id", "tier", "model")
    serializer_class = RollupSerializer
    permission_classes = [ViewModelPermissions]

    def filter_queryset(self, queryset: QuerySet[Rollup]) -> QuerySet[Rollup]:
        queryset = super().filter_queryset(queryset)
        if self.action != "list":
            return queryset
        return queryset.filter(**_rollup_filters(self.request.query_params))


class SlaTargetViewSet(viewsets.ModelViewSet):
    """SLA targets per policy, and the default row (`policy` null)."""

    queryset = SlaTarget.objects.order_by("id")
    serializer_class = SlaTargetSerializer
    permission_classes = [ViewModelPermissions]


class AlertRuleViewSet(viewsets.ModelViewSet):
    """Alert rules."""

    queryset = AlertRule.objects.order_by("name")
    serializer_class = AlertRuleSerializer
    permission_classes = [ViewModelPermissions]


class AlertEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Alert events, newest first, with their deliveries; `POST …/acknowledge/` acknowledges one."""

    queryset = AlertEvent.objects.prefetch_related("deliveries").order_by("-started_at")
    serializer_class = AlertEventSerializer
    permission_classes = [ViewModelPermissions]

    @extend_schema(request=None, responses=AlertEventSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        if not request.user.has_perm("dashboard.change_alertevent"):
            raise exceptions.PermissionDenied()
        event = self.get_object()
        services.alert_event_acknowledge(event=event, user=request.user)
        return Response(self.get_serializer(event).data)


class AlertDeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Notifications sent (or failing), newest first."""

    queryset = AlertDelivery.objects.order_by("-created")
    serializer_class = AlertDeliverySerializer
    permission_classes = [ViewModelPermissions]
