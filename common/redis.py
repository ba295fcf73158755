"""Shared Redis clients, one sync client per process and one async client per event loop.

Both draw from a blocking pool: a burst of requests waits up to `REDIS_POOL_TIMEOUT_S` for
a free connection instead of failing. (redis-py 8's default pool holds 100 connections and
raises "Too many connections" at once, which turned a burst into 503s from the budget store.)

An outage is noticed once and then skipped: after a connection fails, every connection attempt
in this process raises `RedisUnavailable` at once for `REDIS_OUTAGE_COOLDOWN_S`, instead of
each call paying a connect timeout; the first attempt after the cool-down tries for real.
`RedisUnavailable` is a `redis.ConnectionError`, so every caller's existing handling of a
failed Redis applies. `is_down()` tells the header and the gauge. See docs/redis-outage.md.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from prometheus_client import Gauge

logger = logging.getLogger(__name__)

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = weakref.WeakKeyDictionary()


# 1 while this process skips Redis; the highest of the live processes is shown.
_down_gauge = Gauge(
    "cascadeops_redis_down", "1 while Redis is unreachable (skipped for a cool-down)", multiprocess_mode="livemax"
)
_down_until = float("-inf")


class RedisUnavailable(redis.ConnectionError):
    """Redis failed moments ago; not asked again until the cool-down ends."""


def is_down() -> bool:
    """Whether this process is skipping Redis right now."""
    return time.monotonic() < _down_until


def _went_down(exc: BaseException) -> None:
    global _down_until
    if not is_down():
        logger.warning("Redis is unreachable (%s); skipping it for %.1f s at a time", exc, _cool_down_s())
    _down_until = time.monotonic() + _cool_down_s()
    _down_gauge.set(1)


def _came_back() -> None:
    global _down_until
    if _down_until != float("-inf"):
        logger.warning("Redis answers again")
        _down_until = float("-inf")
        _down_gauge.set(0)


def _cool_down_s() -> float:
    return float(settings.REDIS_OUTAGE_COOLDOWN_S)


def _skipped() -> RedisUnavailable:
    return RedisUnavailable(f"Redis is unreachable; skipped until its cool-down ends ({_cool_down_s():.1f} s)")


def _outage_aware_sync(base: type[Any]) -> type[Any]:
    class OutageAwareConnection(base):  # type: ignore[misc]
        def connect(self) -> None:
            if self._sock:
                return
            if is_down():
                raise _skipped()
            try:
                super().connect()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                _went_down(exc)
                raise
            _came_back()

    return OutageAwareConnection


def _outage_aware_async(base: type[Any]) -> type[Any]:
    class OutageAwareConnection(base):  # type: ignore[misc]
        async def connect(self) -> None:
            if self.is_connected:
                return
            if is_down():
                raise _skipped()
            try:
                await super().connect()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                _went_down(exc)
                raise
            _came_back()

    return OutageAwareConnection


@functools.cache
def sync_client() -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(settings.REDIS_URL, **_pool_options())
    pool.connection_class = _outage_aware_sync(pool.connection_class)
    return redis.Redis(connection_pool=pool)


def async_client() -> redis.asyncio.Redis:
    # An asyncio connection belongs to the loop that opened it; tests run many loops.
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(settings.REDIS_URL, **_pool_options())
        pool.connection_class = _outage_aware_async(pool.connection_class)
        client = _async_clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client


def _pool_options() -> dict[str, float]:
    return {
        "max_connections": settings.REDIS_MAX_CONNECTIONS,
        "timeout": settings.REDIS_POOL_TIMEOUT_S,
        # A Redis host that drops packets must not hold a request for the OS's connect timeout.
        "socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT_S,
    }
