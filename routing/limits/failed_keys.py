"""A brake on guessing API keys: failed authentications per client address.

After `CASCADEOPS_FAILED_KEY_LIMIT` failed keys from one address within a window of
`CASCADEOPS_FAILED_KEY_WINDOW_SECONDS` (a fixed window, from its first failure), its further
failures are answered 429 with `Retry-After` until the window ends. Only failures touch the
counter (Redis in production, a dict in embedded mode): a request with a good key costs
nothing here. A worker that has seen an address go over the limit also refuses it before
authenticating, from memory, so a guess that happens to be right is refused as well; another
worker learns it at that address's next failure there. IPv6 clients are counted per /64,
which one of them usually holds whole. When Redis fails, failures are not counted (logged).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Protocol

import redis
import redis.asyncio
from django.conf import settings

from common import redis as shared_redis
from routing.exceptions import RateLimited
from routing.limits.ratelimit import REQUESTS, STORE_TIMEOUT_S, openai_duration

logger = logging.getLogger(__name__)

KEY_PREFIX = "cascadeops:failed-keys"
# Addresses this worker refuses without asking the store; more than this and it forgets the expired.
MAX_REMEMBERED = 10_000


class FailureStore(Protocol):
    async def count(self, client: str, window_s: int) -> tuple[int, float]:
        """Count one failure; the failures in the client's window, and seconds until it ends."""
        ...


class RedisFailureStore:
    """One counter per client in Redis, made with the window's expiry (shared by every worker)."""

    async def count(self, client: str, window_s: int) -> tuple[int, float]:
        key = f"{KEY_PREFIX}:{client}"
        async with shared_redis.async_client().pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=window_s, nx=True)
            pipe.incr(key)
            pipe.pttl(key)
            _, failures, left_ms = await pipe.execute()
        return int(failures), max(int(left_ms), 0) / 1000


class LocalFailureStore:
    """Counters in this process (embedded mode): client → (failures, when the window ends)."""

    def __init__(self) -> None:
        self.windows: dict[str, tuple[int, float]] = {}

    async def count(self, client: str, window_s: int) -> tuple[int, float]:
        now = time.time()
        failures, ends = self.windows.get(client, (0, 0.0))
        if ends <= now:
            failures, ends = 0, now + window_s
        self.windows[client] = (failures + 1, ends)
        if len(self.windows) > MAX_REMEMBERED:
            self.windows = {c: w for c, w in self.windows.items() if w[1] > now}
        return failures + 1, ends - now


_redis_store = RedisFailureStore()
_local_store = LocalFailureStore()
# Clients over the limit, as this worker saw them: client → when their window ends.
_refused: dict[str, float] = {}


def failure_store() -> FailureStore:
    return _redis_store if settings.REDIS_URL else _local_store


def client_of(address: str) -> str:
    """The counter's name for an address: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def refuse_if_over(address: str) -> None:
    """Raise the 429 if this worker saw `address` go over the limit; no I/O."""
    client = client_of(address)
    ends = _refused.get(client)
    if ends is None:
        return
    left = ends - time.time()
    if left > 0:
        raise too_many_failures(left)
    del _refused[client]


async def failed_key(address: str) -> None:
    """Count a failed key from `address`; raise the 429 once its window holds more than the limit."""
    limit = settings.CASCADEOPS_FAILED_KEY_LIMIT
    if limit <= 0:
        return
    client = client_of(address)
    window_s = settings.CASCADEOPS_FAILED_KEY_WINDOW_SECONDS
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            failures, left = await failure_store().count(client, window_s)
    except (redis.RedisError, OSError) as exc:
        # Redis is away: this worker counts on its own meanwhile (docs/redis-outage.md).
        if not isinstance(exc, shared_redis.RedisUnavailable):  # that one is logged once, by common.redis
            logger.warning("Could not count a failed API key in Redis (%r); counted in this worker", exc)
        failures, left = await _local_store.count(client, window_s)
    if failures > limit:
        _remember(client, time.time() + left)
        raise too_many_failures(left)


def too_many_failures(left_s: float) -> RateLimited:
    return RateLimited(
        f"Too many requests with an invalid API key from your address. Please try again in {openai_duration(left_s)}.",
        limit_type=REQUESTS,
        retry_after_s=left_s,
        headers={},
    )


def forget() -> None:
    """Drop every count and refusal this process holds (tests)."""
    _refused.clear()
    _local_store.windows.clear()


def _remember(client: str, ends: float) -> None:
    if len(_refused) >= MAX_REMEMBERED:
        now = time.time()
        for stale in [c for c, e in _refused.items() if e <= now]:
            del _refused[stale]
    _refused[client] = ends
