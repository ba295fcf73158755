"""The live ticker: one message per group per tick, whatever the number of requests."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from dashboard.live import broadcast, groups
from dashboard.live.broadcast import LiveTicker, TickState, tick_messages
from tests.dashboard.traffic import Traffic


def test_the_first_tick_has_a_message_for_every_policy_and_the_alerts(traffic):
    traffic.send(3)

    outgoing = tick_messages(now=timezone.now(), state=TickState())

    assert [o.group for o in outgoing] == [groups.ALL, groups.for_scope(traffic.policy.id), groups.ALERTS]
    everything = outgoing[0].message
    assert everything["type"] == "tick" and everything["scope"] == "all"
    assert [p["requests"] for p in everything["minute"]] == [3]
    assert everything["hour"][-1]["requests"] == 3
    assert everything["today"]["y"][-1] == pytest.approx(0.0003)
    assert "growth/support-bot" in everything["html"]["top"]
    assert outgoing[1].message["scope"] == traffic.policy.id


def test_a_group_whose_data_did_not_change_gets_nothing(traffic):
    traffic.send(1)
    state = TickState()
    for out in tick_messages(now=timezone.now(), state=state):
        state.sent[out.group] = out.fingerprint

    assert tick_messages(now=timezone.now(), state=state) == []


def test_only_the_groups_that_changed_get_a_message(traffic):
    other = Traffic.for_new_policy("other", app="search")
    traffic.send(1)
    other.send(1)
    state = TickState()
    for out in tick_messages(now=timezone.now(), state=state):
        state.sent[out.group] = out.fingerprint

    other.send(2)

    assert [o.group for o in tick_messages(now=timezone.now(), state=state)] == [
        groups.ALL,
        groups.for_scope(other.policy.id),
    ]


class CountingLayer:
    """Counts group_send calls on the real channel layer."""

    def __init__(self, monkeypatch) -> None:
        self.sent: Counter[str] = Counter()
        layer = get_channel_layer()
        original = layer.group_send

        async def group_send(group, message):
            self.sent[group] += 1
            await original(group, message)

        monkeypatch.setattr(layer, "group_send", group_send)


@pytest.mark.django_db(transaction=True)
async def test_fifty_requests_in_fifty_flushes_make_one_message_per_group_in_a_tick(monkeypatch):
    traffic = await database_sync_to_async(Traffic.for_new_policy)()
    counting = CountingLayer(monkeypatch)
    ticker = LiveTicker()
    await ticker.tick()
    counting.sent.clear()

    for _ in range(50):
        await database_sync_to_async(traffic.send)(1)
    await ticker.tick()

    assert counting.sent == {groups.ALL: 1, groups.for_scope(traffic.policy.id): 1}
    assert await ticker.tick() == 0


@pytest.mark.django_db(transaction=True)
async def test_the_ticker_runs_only_while_a_page_is_attached(settings):
    settings.CASCADEOPS_DASHBOARD_TICK_SECONDS = 0.05
    ticker = LiveTicker()

    ticker.attach()
    ticker.attach()
    task = ticker.task
    ticker.detach()
    await asyncio.sleep(0.15)
    assert not task.done()

    ticker.detach()
    await asyncio.wait_for(task, timeout=2)
    assert ticker.watchers == 0


@pytest.mark.django_db(transaction=True)
async def test_one_ticker_per_event_loop():
    assert broadcast.ticker() is broadcast.ticker()


@pytest.mark.django_db(transaction=True)
async def test_with_redis_only_the_lease_holder_ticks(settings):
    if not settings.REDIS_URL:
        pytest.skip("the lease is for the Redis channel layer (production)")
    first, second = broadcast.RedisLease(ttl_s=2), broadcast.RedisLease(ttl_s=2)
    try:
        assert await first.hold()
        assert not await second.hold()
        assert await first.hold()  # renewing
        await first.release()
        assert await second.hold()
    finally:
        await first.release()
        await second.release()
