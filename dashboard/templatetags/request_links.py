"""Links from dashboard panels to the request log, filtered to what the panel shows."""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.urls import reverse

register = template.Library()


@register.simple_tag
def requests_url(**filters: object) -> str:
    """The request log with these filters (empty ones left out)."""
    query = urlencode({name: value for name, value in filters.items() if value not in (None, "")})
    return f"{reverse('dashboard:requests')}?{query}" if query else reverse("dashboard:requests")


@register.simple_tag
def app_requests_url(name: str) -> str:
    """The log filtered to one app, named `team/app` as the spend rollups name it."""
    team, _, app = name.partition("/")
    return requests_url(team=team, app=app)
