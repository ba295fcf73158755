"""Operator pages: the live dashboard for every policy and for one, and its JSON refresh."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard.alerts import services
from dashboard.live import charts, groups, selectors
from dashboard.live.cache_panel import FalseHitRate, semantic_false_hits_get
from dashboard.models import AlertEvent
from dashboard.rollups.compute import WINDOWS, Window, window_between, window_get
from routing.models import Policy

CHART_NAMES = ["cost", "today", "escalation", "tiers", "cache", "latency", "quality", "errors"]
ACKNOWLEDGE_PERMISSION = "dashboard.change_alertevent"


def operator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in (else to the login page) and allowed to watch the dashboard (else 403)."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not groups.may_watch(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(checked)


def _board(request: HttpRequest, policy_id: int | None) -> selectors.Board:
    window, now = _window_and_end(request)
    try:
        return selectors.board_get(policy_id=policy_id, window=window, now=now)
    except Policy.DoesNotExist as exc:
        raise Http404("No such policy.") from exc


def _window_and_end(request: HttpRequest) -> tuple[Window, datetime]:
    """A preset window ending now, or the custom range `since`–`until` (local times); 400 if that is wrong."""
    since, until = request.GET.get("since"), request.GET.get("until")
    if not since and not until:
        return window_get(request.GET.get("window")), timezone.now()
    try:
        start, end = _local_time(since), _local_time(until)
        # The last bucket is the one before `until`: the range's end is exclusive.
        return window_between(start, end), end - timedelta(microseconds=1)
    except ValueError as exc:
        raise BadRequest(f"Bad time range: {exc}") from exc


def _local_time(value: str | None) -> datetime:
    moment = datetime.fromisoformat(value or "")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def _figures(board: selectors.Board) -> dict[str, charts.Figure]:
    return charts.figures(
        board.points,
        today=board.today,
        targets=board.targets,
        budget=board.budget,
        frame=charts.Frame.of(board.window, board.now),
        markers=board.markers,
    )


def _config(board: selectors.Board) -> dict[str, Any]:
    """What live.js needs to know about the page."""
    policy_id = board.policy.id if board.policy else None
    scope = {"subscribe": "policy", "policy": policy_id} if policy_id else {"subscribe": "all"}
    data_url = reverse("dashboard:policy-data", args=[policy_id]) if policy_id else reverse("dashboard:data")
    return {
        "scope": policy_id or "all",
        "subscriptions": [scope, {"subscribe": "alerts"}],
        "resolution": board.window.resolution,
        "windowMinutes": int(board.window.span.total_seconds() // 60),
        "stepMinutes": int(board.window.step.total_seconds() // 60),
        "wsPath": "/ws/dashboard/",
        "dataUrl": f"{data_url}?{_range_query(board)}",
        "live": board.window.key != "custom",
    }


def _range_query(board: selectors.Board) -> str:
    if board.window.key != "custom":
        return urlencode({"window": board.window.key})
    since = board.window.since(board.now)
    until = since + board.window.span
    return urlencode({"since": _local_text(since), "until": _local_text(until)})


def _local_text(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%dT%H:%M}"


def _targets_url(request: HttpRequest) -> str | None:
    return (
        reverse("admin:dashboard_slatarget_changelist") if request.user.has_perm("dashboard.change_slatarget") else None
    )


def _false_hits(board: selectors.Board) -> list[FalseHitRate]:
    policy_id = board.policy.id if board.policy else None
    return semantic_false_hits_get(policy_id=policy_id, since=board.window.since(board.now))


def _render_board(request: HttpRequest, policy_id: int | None) -> HttpResponse:
    board = _board(request, policy_id)
    context = {
        "board": board,
        "false_hits": _false_hits(board),
        "figures": _figures(board),
        "config": _config(board),
        "chart_names": CHART_NAMES,
        "windows": WINDOWS.values(),
        "range_since": _local_text(board.window.since(board.now)),
        "range_until": _local_text(board.window.since(board.now) + board.window.span),
        "targets_url": _targets_url(request),
    }
    return render(request, "dashboard/board.html", context)


@operator_required
def home(request: HttpRequest) -> HttpResponse:
    """Every policy, live: charts, today's tiles, alerts, top spenders and SLA compliance."""
    return _render_board(request, None)


@operator_required
def policy_board(request: HttpRequest, policy_id: int) -> HttpResponse:
    """One policy, live: the same charts, against that policy's SLA targets."""
    return _render_board(request, policy_id)


@operator_required
def board_data(request: HttpRequest, policy_id: int | None = None) -> JsonResponse:
    """The page's figures and panels, for a page that reconnected or refreshes compliance."""
    board = _board(request, policy_id)
    html = {
        "tiles": render_to_string("dashboard/_tiles.html", {"tiles": board.tiles}),
        "top": render_to_string(
            "dashboard/_top.html", {"top_apps": board.top_apps, "top_end_users": board.top_end_users}
        ),
        "alerts": render_to_string("dashboard/_alerts.html", {"alerts": board.alerts}),
        "compliance": render_to_string(
            "dashboard/_compliance.html",
            {"checks": board.compliance, "window": board.window, "targets_url": _targets_url(request)},
        ),
        "semantic": render_to_string(
            "dashboard/_semantic_cache.html", {"rates": _false_hits(board), "window": board.window}
        ),
    }
    return JsonResponse({"figures": _figures(board), "html": html})


@require_POST
@operator_required
def alert_acknowledge(request: HttpRequest, event_id: int) -> JsonResponse:
    """Acknowledge a firing event: no more reminders for it."""
    if not request.user.has_perm(ACKNOWLEDGE_PERMISSION):
        raise PermissionDenied
    event = get_object_or_404(AlertEvent, id=event_id)
    services.alert_event_acknowledge(event=event, user=request.user)
    return JsonResponse({"acknowledged": True, "by": request.user.get_username()})
