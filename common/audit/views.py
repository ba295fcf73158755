"""The audit trail as a page: filtered, newest first, a page at a time, with its CSV one click away."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from common.audit.filters import AuditEntryFilterSet
from common.audit.models import AuditEntry

PAGE_SIZE = 50


@login_required
@permission_required("audit.view_auditentry", raise_exception=True)
def audit_list(request: HttpRequest) -> HttpResponse:
    """Entries the filters select; a filter the form refuses answers 400 with its message."""
    filters = AuditEntryFilterSet(request.GET, queryset=AuditEntry.objects.all())
    valid = filters.is_valid()
    entries = filters.qs if valid else AuditEntry.objects.none()
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filters": filters,
        "page": page,
        "query": query.urlencode(),
        "export_url": f"{reverse('audit-entry-export')}?{query.urlencode()}",
    }
    return render(request, "audit/list.html", context, status=200 if valid else 400)
