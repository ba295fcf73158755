"""Reads for the operator pages, the live pushes and the alert rules: rollups only.

Nothing here reads request records, so a page costs the same few queries with ten
records or ten million; `tests/dashboard/live/test_views.py` pins how many.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from common.audit.models import AuditEntry
from dashboard.alerts import sla
from dashboard.choices import DeliveryStatus, EventState, Resolution, SpendKind
from dashboard.live.charts import Marker
from dashboard.models import AlertDelivery, AlertEvent, Rollup, SlaTarget, SpendRollup
from dashboard.rollups.compute import (
    ALL_POLICIES,
    COUNTERS,
    Point,
    Totals,
    Window,
    hour_start,
    points_from_rows,
    totals_of,
)
from dashboard.rollups.selectors import budget_daily_get, rollup_rows, today_start
from routing.models import Policy

TOP_SPENDERS = 10
ALERT_PANEL_EVENTS = 20
ALERT_PANEL_DELIVERIES = 10
ALERT_PANEL_HOURS = 24


# Every column but the latency sketch: what counting needs, without the JSON to parse.
LIGHT_FIELDS = ["resolution", "bucket", "policy_id", "tier", "model", *COUNTERS, "updated"]


def light_rows(rows: QuerySet[Rollup]) -> list[Any]:
    """The rows' counters without their sketches (cheap to read and merge; no percentiles)."""
    return [SimpleNamespace(**values, latency={}) for values in rows.values(*LIGHT_FIELDS)]


# Configuration changes the charts mark: policies (thresholds live on their tiers), task
# rules, experiments and auto-tuning's decisions. At most MAX_MARKERS, the newest.
MARKED_TYPES = {
    "routing.policy": "policy",
    "routing.policytier": "tier",
    "routing.taskrule": "task rule",
    "routing.experiment": "experiment",
    "dashboard.tuningproposal": "tuning",
}
MAX_MARKERS = 50


def markers_get(*, since: datetime, policy: Policy | None) -> list[Marker]:
    """The changes to mark on a page's charts since `since` (one query, from the audit trail)."""
    entries = AuditEntry.objects.filter(created__gte=since, object_type__in=MARKED_TYPES)
    if policy is not None:  # its own saves, and changes to its parts (named after it)
        entries = entries.filter(
            Q(object_type="routing.policy", object_id=str(policy.id))
            | (~Q(object_type="routing.policy") & Q(object_repr__icontains=policy.name))
        )
    rows = entries.order_by("-created").values_list("created", "action", "object_type", "object_repr")
    return [
        Marker(at=created, text=f"{action} {MARKED_TYPES[kind]} {name}")
        for created, action, kind, name in reversed(rows[:MAX_MARKERS])
    ]


def top_spenders(*, day: date, scope: int | None, kind: str, limit: int = TOP_SPENDERS) -> list[SpendRollup]:
    spend_scope = ALL_POLICIES if scope is None else scope
    return list(SpendRollup.objects.filter(day=day, scope=spend_scope, kind=kind).order_by("-cost")[:limit])


def sla_targets_get(*, policy_id: int | None) -> sla.Targets:
    """The policy's own targets, else the default row, else MangaAssist's defaults."""
    scope = Q(policy__isnull=True) | Q(policy_id=policy_id) if policy_id else Q(policy__isnull=True)
    rows = {row.policy_id: row for row in SlaTarget.objects.filter(scope)}
    row = rows.get(policy_id) or rows.get(None)
    return sla.Targets.from_row(row) if row else sla.Targets()


@dataclass(frozen=True)
class Tiles:
    """Today's totals at a glance; latency is this hour's, a day's p95 hides a bad hour."""

    today: Totals
    p95_this_hour: float | None
    budget: Decimal | None


def tiles_of(*, today: list[Point], this_hour: Point | None, budget: Decimal | None) -> Tiles:
    p95 = this_hour.totals.quantile(0.95) if this_hour is not None else None
    return Tiles(today=totals_of(today), p95_this_hour=p95, budget=budget)


def current_hour(points: list[Point], now: datetime) -> Point | None:
    return next((p for p in reversed(points) if p.bucket == hour_start(now)), None)


@dataclass(frozen=True)
class AlertPanel:
    """Events firing or resolved lately, and notifications that are failing."""

    events: list[AlertEvent]
    failing: list[AlertDelivery]

    @property
    def firing(self) -> int:
        return sum(1 for event in self.events if event.state == EventState.FIRING)


def alert_panel_get(*, now: datetime) -> AlertPanel:
    since = now - timedelta(hours=ALERT_PANEL_HOURS)
    events = (
        AlertEvent.objects.filter(Q(state=EventState.FIRING) | Q(resolved_at__gte=since))
        .select_related("rule__policy", "acknowledged_by", "budget_alert__budget")
        .order_by("state", "-started_at")[:ALERT_PANEL_EVENTS]
    )
    failing = (
        AlertDelivery.objects.filter(status__in=[DeliveryStatus.RETRYING, DeliveryStatus.FAILED], updated__gte=since)
        .select_related("event__rule")
        .order_by("-updated")[:ALERT_PANEL_DELIVERIES]
    )
    return AlertPanel(events=list(events), failing=list(failing))


@dataclass(frozen=True)
class Board:
    """Everything one dashboard page shows, for every policy (`policy` None) or one."""

    now: datetime
    window: Window
    policies: list[Policy]
    policy: Policy | None
    points: list[Point]
    today: list[Point]
    top_apps: list[SpendRollup]
    top_end_users: list[SpendRollup]
    targets: sla.Targets
    budget: Decimal | None
    alerts: AlertPanel
    markers: list[Marker] = field(default_factory=list)
    window_totals: Totals = field(init=False)
    tiles: Tiles = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_totals", totals_of(self.points))
        tiles = tiles_of(today=self.today, this_hour=current_hour(self.today, self.now), budget=self.budget)
        object.__setattr__(self, "tiles", tiles)

    @property
    def compliance(self) -> list[sla.Check]:
        return sla.compliance(self.targets, self.window_totals)


def board_get(*, policy_id: int | None, window: Window, now: datetime) -> Board:
    """One page's data in a fixed number of queries; `Policy.DoesNotExist` for an unknown id."""
    policies = list(Policy.objects.only("id", "name", "enabled").order_by("name"))
    policy = None
    if policy_id is not None:
        policy = next((p for p in policies if p.id == policy_id), None)
        if policy is None:
            raise Policy.DoesNotExist(f"No policy {policy_id}")
    since = window.since(now)
    rows = rollup_rows(resolution=window.resolution, since=since, until=since + window.span, policy_id=policy_id)
    # Today up to `now`'s hour: a custom range in the past shows that day's totals so far.
    today_rows = rollup_rows(
        resolution=Resolution.HOUR,
        since=today_start(now),
        until=hour_start(now) + timedelta(hours=1),
        policy_id=policy_id,
    )
    day = timezone.localdate(now)
    return Board(
        now=now,
        window=window,
        policies=policies,
        policy=policy,
        points=points_from_rows(rows),
        today=points_from_rows(today_rows),
        top_apps=top_spenders(day=day, scope=policy_id, kind=SpendKind.APP),
        top_end_users=top_spenders(day=day, scope=policy_id, kind=SpendKind.END_USER),
        targets=sla_targets_get(policy_id=policy_id),
        budget=budget_daily_get(policy_id=policy_id),
        alerts=alert_panel_get(now=now),
        markers=markers_get(since=window.since(now), policy=policy),
    )
