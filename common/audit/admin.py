"""The audit trail in the admin: read-only for operators and finance; nobody adds, changes or deletes."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from common.admin import ViewOnlyAdmin
from common.audit.export import audit_csv_response
from common.audit.models import SHOWN_FIELDS, AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ViewOnlyAdmin):
    list_display = ["created", "actor", "source", "address", "action", "object_type", "object_repr"]
    list_filter = ["source", "action", "object_type"]
    search_fields = ["actor", "object_repr", "object_id"]
    date_hierarchy = "created"
    actions = ["export_csv"]
    fields = SHOWN_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), "changes"]

    @admin.display(description="changed values")
    def changes(self, entry: AuditEntry) -> SafeString | str:
        changed = entry.changes()
        if not changed:
            return "—"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", ((k, a, b) for k, (a, b) in changed.items())
        )
        return format_html("<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>", rows)

    @admin.action(description="Export the selected entries as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> StreamingHttpResponse:
        return audit_csv_response(queryset)
