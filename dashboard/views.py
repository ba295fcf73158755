"""Operator pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from routing.models import Policy

from .selectors import traffic_summary_get


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The last 24 hours at a glance, and where to go next."""
    context = {
        "summary": traffic_summary_get(hours=24),
        "policies": Policy.objects.filter(enabled=True).order_by("name"),
    }
    return render(request, "dashboard/home.html", context)
