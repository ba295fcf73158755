"""The shared Redis clients queue a burst beyond their pool instead of failing it."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from common import redis as shared_redis

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


def test_a_burst_larger_than_the_async_pool_waits_for_free_connections(settings: object) -> None:
    settings.REDIS_MAX_CONNECTIONS = 2  # type: ignore[attr-defined]

    async def burst() -> list[object]:
        client = shared_redis.async_client()
        assert client.connection_pool.max_connections == 2
        # Each BLPOP holds its connection for 50 ms; 20 of them need 10 rounds of 2.
        return await asyncio.gather(*(client.blpop(["cascadeops:test:never-filled"], timeout=0.05) for _ in range(20)))

    # A new loop gets a new client, built with the setting above.
    assert asyncio.run(burst()) == [None] * 20
