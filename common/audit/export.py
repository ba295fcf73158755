"""The audit trail as CSV, for the admin and the REST API (cells escaped by `common.spreadsheets`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from common.audit.models import SHOWN_FIELDS, AuditEntry
from common.spreadsheets import CsvWriter

# The fields an entry shows, in their order; the object's description headed "object".
CSV_COLUMNS = ["object" if name == "object_repr" else name for name in SHOWN_FIELDS]


class _Echo:
    def write(self, text: str) -> str:
        return text


def audit_csv_rows(entries: Iterable[AuditEntry]) -> Iterator[Sequence[object]]:
    yield CSV_COLUMNS
    for e in entries:
        changes = {field: {"before": a, "after": b} for field, (a, b) in e.changes().items()}
        yield [
            e.created.isoformat(),
            e.actor,
            e.source,
            e.address or "",
            e.action,
            e.object_type,
            e.object_id,
            e.object_repr,
            _json(changes),
            _json(e.before),
            _json(e.after),
        ]


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True)


def audit_csv_response(entries: QuerySet[AuditEntry]) -> StreamingHttpResponse:
    """Every entry of `entries`, streamed (the trail only grows), oldest first."""
    writer = CsvWriter(_Echo())
    rows = audit_csv_rows(entries.order_by("created", "id").iterator(chunk_size=2_000))
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit-trail.csv"'
    return response
