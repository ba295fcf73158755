"""The audit trail in the management API: a filtered list, one entry, and the same list as CSV."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from common.audit.export import audit_csv_response
from common.audit.filters import AuditEntryFilterSet
from common.audit.models import SHOWN_FIELDS, AuditEntry
from common.drf import ViewModelPermissions

# {"field": {"before": value, "after": value}, ...}
CHANGES_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "object", "properties": {"before": {}, "after": {}}},
}


class AuditEntrySerializer(serializers.ModelSerializer[AuditEntry]):
    """One configuration change; `changes` maps each changed field to its value before and after."""

    changes = serializers.SerializerMethodField()

    class Meta:
        model = AuditEntry
        fields = ["id", *SHOWN_FIELDS]
        read_only_fields = fields

    @extend_schema_field(CHANGES_SCHEMA)
    def get_changes(self, entry: AuditEntry) -> dict[str, dict[str, object]]:
        return {field: {"before": a, "after": b} for field, (a, b) in entry.changes().items()}


class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet[AuditEntry]):
    """The audit trail, newest first: read-only, for whoever may view it (operators and finance)."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntrySerializer
    permission_classes = [ViewModelPermissions]
    filterset_class = AuditEntryFilterSet

    @extend_schema(
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="Oldest first.")},
        description="The entries the same filters select, as CSV, oldest first (not paginated).",
    )
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request: Request) -> Response:
        entries = self.filter_queryset(self.get_queryset())
        return audit_csv_response(entries)  # type: ignore[return-value]


router = DefaultRouter()
router.register("entries", AuditEntryViewSet, basename="audit-entry")
