"""REST viewsets for the dashboard's API: one per model, NetBox-style.

Rollups, events and deliveries are read-only (the system writes them); events have an
`acknowledge` action. Permissions are the models' (`view` to read), as in routing's API.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.drf import ChangeModelPermissions, ViewModelPermissions
from dashboard.alerts import services
from dashboard.api.filters import RollupFilterSet
from dashboard.api.serializers import (
    AlertDeliverySerializer,
    AlertEventSerializer,
    AlertRuleSerializer,
    RollupSerializer,
    SlaTargetSerializer,
)
from dashboard.models import AlertDelivery, AlertEvent, AlertRule, Rollup, SlaTarget


class RollupViewSet(viewsets.ReadOnlyModelViewSet[Rollup]):
    """Per-minute and per-hour rollups, oldest first; filterable by query parameters."""

    queryset = Rollup.objects.order_by("resolution", "bucket", "policy_id", "tier", "model")
    serializer_class = RollupSerializer
    permission_classes = [ViewModelPermissions]
    filterset_class = RollupFilterSet


class SlaTargetViewSet(viewsets.ModelViewSet[SlaTarget]):
    """SLA targets per policy, and the default row (`policy` null)."""

    queryset = SlaTarget.objects.order_by("id")
    serializer_class = SlaTargetSerializer
    permission_classes = [ViewModelPermissions]


class AlertRuleViewSet(viewsets.ModelViewSet[AlertRule]):
    """Alert rules."""

    queryset = AlertRule.objects.order_by("name")
    serializer_class = AlertRuleSerializer
    permission_classes = [ViewModelPermissions]


class AlertEventViewSet(viewsets.ReadOnlyModelViewSet[AlertEvent]):
    """Alert events, newest first, with their deliveries; `POST …/acknowledge/` acknowledges one."""

    queryset = AlertEvent.objects.prefetch_related("deliveries").order_by("-started_at")
    serializer_class = AlertEventSerializer
    permission_classes = [ViewModelPermissions]

    @extend_schema(request=None, responses=AlertEventSerializer)
    # Acknowledging changes the event: the `change` permission, which operators hold (a POST
    # would otherwise ask for `add`, which nobody has on events).
    @action(detail=True, methods=["post"], permission_classes=[ChangeModelPermissions])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        services.alert_event_acknowledge(event=event, user=request.user)
        return Response(self.get_serializer(event).data)


class AlertDeliveryViewSet(viewsets.ReadOnlyModelViewSet[AlertDelivery]):
    """Notifications sent (or failing), newest first."""

    queryset = AlertDelivery.objects.order_by("-created")
    serializer_class = AlertDeliverySerializer
    permission_classes = [ViewModelPermissions]
