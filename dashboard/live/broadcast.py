"""Live dashboard pushes: one `group_send` per group per tick, never one per request.

A ticker runs in each web process with a dashboard websocket open; every tick it reads the
latest rollups (three indexed queries) and sends each group whose data changed one message
of absolute bucket values. With the Redis channel layer only the holder of a Redis lease
sends; the others take over within three ticks. See docs/dashboard.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from common import redis as shared_redis
from dashboard.choices import Resolution, SpendKind
from dashboard.live import charts, groups, selectors
from dashboard.models import Rollup
from dashboard.rollups.compute import hour_start, minute_start, points_from_rows
from dashboard.rollups.selectors import budget_daily_get, rollup_rows, today_start

logger = logging.getLogger(__name__)

# Minute buckets sent per tick: the current one and the two before it, which records
# delayed in the buffer (a flush interval, a flusher restart) still land in.
LIVE_MINUTES = 3
LIVE_HOURS = 2
LEASE_KEY = "cascadeops:dashboard:ticker"
LEASE_TICKS = 3
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(frozen=True)
class Outgoing:
    """One group's message for this tick, and the fingerprint of the data it was built from."""

    group: str
    message: dict[str, Any]
    fingerprint: Any


@dataclass
class TickState:
    """What the ticker has sent, per group: the fingerprint of the data behind it."""

    sent: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveRows:
    """What one tick reads: three indexed range queries, however much traffic there is."""

    recent: list[Rollup]  # minute rows of the last LIVE_MINUTES minutes, with sketches
    hours: list[Rollup]  # hour rows of the last LIVE_HOURS hours, with sketches
    today: list[Any]  # today's hour rows without sketches: counting only

    @classmethod
    def read(cls, now: datetime) -> LiveRows:
        minutes_since = minute_start(now) - timedelta(minutes=LIVE_MINUTES - 1)
        hours_since = hour_start(now) - timedelta(hours=LIVE_HOURS - 1)
        return cls(
            recent=list(rollup_rows(resolution=Resolution.MINUTE, since=minutes_since)),
            hours=list(rollup_rows(resolution=Resolution.HOUR, since=hours_since)),
            today=selectors.light_rows(rollup_rows(resolution=Resolution.HOUR, since=today_start(now))),
        )

    def of(self, policy_id: int | None) -> LiveRows:
        """Only one policy's rows (all of them for `None`)."""
        if policy_id is None:
            return self
        return LiveRows(
            *([r for r in rows if r.policy_id == policy_id] for rows in (self.recent, self.hours, self.today))
        )

    def policy_ids(self) -> list[int]:
        return sorted({row.policy_id for row in [*self.recent, *self.today]})

    def fingerprint(self) -> tuple[int, datetime | None]:
        # Minute and hour rows of a record change in one transaction: today's hour rows
        # (and the recent minutes, around midnight) tell whether anything did.
        rows = [*self.recent, *self.today]
        return len(rows), max((row.updated for row in rows), default=None)


def tick_messages(*, now: datetime, state: TickState) -> list[Outgoing]:
    """The messages of this tick: one per group whose data changed since `state`."""
    live = LiveRows.read(now)
    outgoing = []
    for policy_id in [None, *live.policy_ids()]:
        rows, group = live.of(policy_id), groups.for_scope(policy_id)
        if state.sent.get(group) != rows.fingerprint():
            message = scope_message(policy_id=policy_id, rows=rows, now=now)
            outgoing.append(Outgoing(group, message, rows.fingerprint()))
    panel = selectors.alert_panel_get(now=now)
    fingerprint = _alerts_fingerprint(panel)
    if state.sent.get(groups.ALERTS) != fingerprint:
        outgoing.append(Outgoing(groups.ALERTS, alerts_message(panel), fingerprint))
    return outgoing


def _alerts_fingerprint(panel: selectors.AlertPanel) -> tuple[Any, ...]:
    events = tuple((e.id, e.state, e.acknowledged_at, e.last_value) for e in panel.events)
    return events, tuple((d.id, d.status, d.attempts) for d in panel.failing)


def scope_message(*, policy_id: int | None, rows: LiveRows, now: datetime) -> dict[str, Any]:
    """Every policy's (or one policy's) latest buckets, today's cost so far, tiles and top spenders."""
    hours, today = points_from_rows(rows.hours), points_from_rows(rows.today)
    budget = budget_daily_get(policy_id=policy_id)
    tiles = selectors.tiles_of(today=today, this_hour=selectors.current_hour(hours, now), budget=budget)
    day = timezone.localdate(now)
    top = {
        "top_apps": selectors.top_spenders(day=day, scope=policy_id, kind=SpendKind.APP),
        "top_end_users": selectors.top_spenders(day=day, scope=policy_id, kind=SpendKind.END_USER),
    }
    return {
        "type": "tick",
        "scope": "all" if policy_id is None else policy_id,
        # The current buckets: the pages slide their time axes to end there.
        "now": {"minute": charts.x_label(minute_start(now)), "hour": charts.x_label(hour_start(now))},
        "minute": [charts.point_values(p) for p in points_from_rows(rows.recent)],
        "hour": [charts.point_values(p) for p in hours],
        "today": charts.cumulative(today),
        "html": {
            "tiles": render_to_string("dashboard/_tiles.html", {"tiles": tiles}),
            "top": render_to_string("dashboard/_top.html", top),
        },
    }


def alerts_message(panel: selectors.AlertPanel) -> dict[str, Any]:
    return {
        "type": "alerts",
        "firing": panel.firing,
        "html": render_to_string("dashboard/_alerts.html", {"alerts": panel}),
    }


class RedisLease:
    """Which web worker ticks, when they share the Redis channel layer: the lease holder."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"

    async def hold(self) -> bool:
        """Extend the lease if this ticker holds it, else try to take it."""
        client = shared_redis.async_client()
        if await client.eval(_EXTEND, 1, LEASE_KEY, self.token, self.ttl_ms):
            return True
        return bool(await client.set(LEASE_KEY, self.token, nx=True, px=self.ttl_ms))

    async def release(self) -> None:
        await shared_redis.async_client().eval(_RELEASE, 1, LEASE_KEY, self.token)


class LiveTicker:
    """Sends each tick's messages while at least one consumer of this event loop is attached."""

    def __init__(self) -> None:
        self.watchers = 0
        self.task: asyncio.Task[None] | None = None
        self.state = TickState()
        self.interval = settings.CASCADEOPS_DASHBOARD_TICK_SECONDS
        self.lease = RedisLease(self.interval * LEASE_TICKS) if settings.REDIS_URL else None

    def attach(self) -> None:
        self.watchers += 1
        if self.task is None or self.task.done():
            self._start()

    def detach(self) -> None:
        self.watchers = max(0, self.watchers - 1)  # the loop ends at its next tick

    def _start(self) -> None:
        # A fresh run sends every group once: pages that reconnected after a restart
        # catch up at the first tick.
        self.state = TickState()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="dashboard-ticker")

    async def _run(self) -> None:
        try:
            while self.watchers:
                started = time.monotonic()
                try:
                    if self.lease is None or await self.lease.hold():
                        await self.tick()
                except Exception:
                    logger.exception("The dashboard's live tick failed; trying again next tick.")
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            await self._release()
        if self.watchers:  # someone attached while this run was ending
            self._start()

    async def tick(self) -> int:
        """Send this tick's messages, one per changed group; returns how many were sent."""
        outgoing = await database_sync_to_async(tick_messages)(now=timezone.now(), state=self.state)
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS is always configured"
        for out in outgoing:
            await layer.group_send(out.group, {"type": "live.update", "payload": out.message})
            self.state.sent[out.group] = out.fingerprint
        return len(outgoing)

    async def _release(self) -> None:
        if self.lease is not None:
            try:
                await self.lease.release()
            except Exception:
                logger.warning("Could not release the dashboard ticker's lease; it expires by itself.")


# One per event loop: the test suite and the live test server run several in one process.
_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveTicker] = weakref.WeakKeyDictionary()


def ticker() -> LiveTicker:
    """This event loop's ticker."""
    loop = asyncio.get_running_loop()
    if loop not in _tickers:
        _tickers[loop] = LiveTicker()
    return _tickers[loop]
