"""Shared Redis clients, one sync client per process and one async client per event loop.

Both draw from a blocking pool: a burst of requests waits up to `REDIS_POOL_TIMEOUT_S` for
a free connection instead of failing. (redis-py 8's default pool holds 100 connections and
raises "Too many connections" at once, which turned a burst into 503s from the budget store.)
"""

from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio
from django.conf import settings

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = weakref.WeakKeyDictionary()


@functools.cache
def sync_client() -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(settings.REDIS_URL, **_pool_options())
    return redis.Redis(connection_pool=pool)


def async_client() -> redis.asyncio.Redis:
    # An asyncio connection belongs to the loop that opened it; tests run many loops.
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(settings.REDIS_URL, **_pool_options())
        client = _async_clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client


def _pool_options() -> dict[str, float]:
    return {"max_connections": settings.REDIS_MAX_CONNECTIONS, "timeout": settings.REDIS_POOL_TIMEOUT_S}
