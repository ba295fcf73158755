"""The request log's pages: the filtered list and one request."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render

from dashboard.requests import selectors
from dashboard.requests.filters import RequestLogFilterSet
from routing.models import RequestRecord

VIEW_RECORDS = "routing.view_requestrecord"


@login_required
@permission_required(VIEW_RECORDS, raise_exception=True)
def request_log(request: HttpRequest) -> HttpResponse:
    """Routed requests newest first, filtered; a bad filter or cursor is a 400 with the form's errors."""
    filters = RequestLogFilterSet(request.GET or None, queryset=RequestRecord.objects.all())
    after, cursor_error = _cursor(request.GET.get("after", ""))
    if (filters.is_bound and not filters.form.is_valid()) or cursor_error:
        context: dict[str, Any] = {"filters": filters, "page": None, "cursor_error": cursor_error}
        return render(request, "dashboard/requests/list.html", context, status=400)
    page = selectors.request_log_page(filters.qs, after=after, size=settings.CASCADEOPS_REQUEST_LOG_PAGE_SIZE)
    query = urlencode(filters.active())
    context = {
        "filters": filters,
        "page": page,
        "query": query,
        "next_query": urlencode({**filters.active(), "after": page.next.encode()}) if page.next else None,
        "paged": after is not None,
    }
    return render(request, "dashboard/requests/list.html", context)


def _cursor(value: str) -> tuple[selectors.Cursor | None, bool]:
    if not value:
        return None, False
    try:
        return selectors.Cursor.decode(value), False
    except selectors.CursorInvalid:
        return None, True


@login_required
@permission_required(VIEW_RECORDS, raise_exception=True)
def request_detail(request: HttpRequest, record_id: uuid.UUID) -> HttpResponse:
    """One request: each tier's attempt and, where the policy keeps text, the prompt and answers."""
    try:
        detail = selectors.request_detail_get(record_id)
    except RequestRecord.DoesNotExist as exc:
        raise Http404("No such request.") from exc
    # The list's filters, re-encoded: only ever a query string on the list, never a URL of the caller's.
    back = QueryDict(request.GET.get("back", "")).urlencode()
    return render(request, "dashboard/requests/detail.html", {"detail": detail, "back": back})
