"""The process's circuit breakers: in Redis, shared by every worker, or in-process when embedded.

`breaker_board()` is what the hot path passes to `run_cascade`. In production each
endpoint's breaker is one Redis hash changed only by a Lua script (the rules of
`routing.engine.breaker`, on Redis's clock); workers answer `allow` locally from the last
reply and batch successes, so the hot path rarely pays a round trip. An unreachable Redis
allows every call. See docs/limits.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio
from asgiref.sync import async_to_sync
from django.conf import settings
from redis.commands.core import AsyncScript

from common import redis as shared_redis
from common.lua import lua_script
from routing.config.snapshots import config_cache
from routing.engine.breaker import BreakerState, MemoryBreakers, trial_lease_s
from routing.engine.ports import Breakers
from routing.engine.types import EndpointSnapshot, PolicySnapshot

logger = logging.getLogger(__name__)

# How long a worker trusts the state Redis last told it, while that state is closed.
LOCAL_VIEW_S = 1.0
# A breaker round trip slower than this is given up on (the call is allowed).
REDIS_TIMEOUT_S = 0.5
# After Redis failed, calls are allowed without asking it for this long.
REDIS_RETRY_S = 1.0
# Successes in a closed breaker are sent at most this often (failures at once).
SUCCESS_BATCH_S = 0.1

# KEYS[1]: one endpoint's breaker hash. ARGV: op ("allow" | "record"), successes and
# failures to record, failure rate, minimum requests, window s, open s, trial lease ms.
# Returns {allowed (1 | 0), state, ms before the state can change by itself (0: any time)}.
# The hash holds "state", "until" (end of the open period) and "trial_until" (the trial
# call's lease) when open or half-open, and only the window's buckets when closed:
# "c<n>" calls and "f<n>" failures in bucket n (Redis time // bucket width).
BREAKER_LUA = lua_script("routing.limits", "breaker_record")

# KEYS: breaker hashes. Returns each one's state as a dashboard shows it: an open breaker
# whose wait is over is half-open (the next call will be its trial).
STATES_LUA = lua_script("routing.limits", "breaker_states")


class BreakerBoard(Breakers, Protocol):
    """The process's breakers, and their states for the dashboard and metrics."""

    async def states(self, endpoint_ids: Iterable[int]) -> dict[int, BreakerState]: ...


@dataclass(frozen=True, slots=True)
class _View:
    """What Redis last said about one breaker, and until when (worker clock) to trust it."""

    allowed: bool
    until: float


class RedisBreakers:
    """Breakers in Redis hashes under `prefix`, shared by every worker using that prefix."""

    SCRIPTS = {"breaker": BREAKER_LUA, "states": STATES_LUA}

    def __init__(
        self,
        prefix: str,
        *,
        client: redis.asyncio.Redis | None = None,
        view_s: float = LOCAL_VIEW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`client` None uses the process's shared client for the running event loop."""
        self.prefix = prefix
        self._client = client
        self._view_s = view_s
        self._clock = clock
        self._views: dict[int, _View] = {}
        # Successes not yet sent, and when each endpoint's outcomes were last sent.
        self._unsent: dict[int, int] = {}
        self._sent_at: dict[int, float] = {}
        self._scripts: weakref.WeakKeyDictionary[object, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()
        self._down_until = -math.inf
        self._down = False
        # While Redis is unreachable each worker keeps breakers of its own.
        self._local = MemoryBreakers(clock)

    def key(self, endpoint_id: int) -> str:
        return f"{self.prefix}:{endpoint_id}"

    async def allow(self, endpoint: EndpointSnapshot) -> bool:
        now = self._clock()
        view = self._views.get(endpoint.id)
        if view is not None and now < view.until:
            return view.allowed
        reply = await self._breaker("allow", endpoint)
        if reply is None:
            return await self._local.allow(endpoint)
        return self._remember(endpoint.id, reply, now)

    async def record(self, endpoint: EndpointSnapshot, ok: bool) -> bool:
        now = self._clock()
        if now < self._down_until:
            return await self._local.record(endpoint, ok)
        if not ok or not self._known_closed(endpoint.id, now):
            return await self._send(endpoint, now, failed=int(not ok), successes=int(ok))
        # A success cannot change a closed breaker: send them in batches, with the next
        # failure or once `SUCCESS_BATCH_S` has passed.
        self._unsent[endpoint.id] = self._unsent.get(endpoint.id, 0) + 1
        if now - self._sent_at.get(endpoint.id, -math.inf) < SUCCESS_BATCH_S:
            return True
        return await self._send(endpoint, now)

    async def states(self, endpoint_ids: Iterable[int]) -> dict[int, BreakerState]:
        ids = list(endpoint_ids)
        if not ids:
            return {}
        raw = await self._run("states", keys=[self.key(i) for i in ids], args=[])
        if raw is None:
            return {}
        return {i: BreakerState(state.decode()) for i, state in zip(ids, raw, strict=True)}

    def _known_closed(self, endpoint_id: int, now: float) -> bool:
        view = self._views.get(endpoint_id)
        return view is not None and view.allowed and now < view.until

    async def _send(self, endpoint: EndpointSnapshot, now: float, *, failed: int = 0, successes: int = 0) -> bool:
        """Record this worker's unsent outcomes for `endpoint`; whether calls may go out."""
        successes += self._unsent.pop(endpoint.id, 0)
        self._sent_at[endpoint.id] = now
        reply = await self._breaker("record", endpoint, successes=successes, failed=failed)
        if reply is None:
            return await self._local.record(endpoint, ok=not failed)
        return self._remember(endpoint.id, reply, now)

    async def _breaker(
        self, op: str, endpoint: EndpointSnapshot, *, successes: int = 0, failed: int = 0
    ) -> tuple[bool, BreakerState, float] | None:
        args: list[str | int] = [
            op,
            successes,
            failed,
            repr(float(endpoint.breaker_failure_rate)),
            endpoint.breaker_min_requests,
            endpoint.breaker_window_s,
            endpoint.breaker_open_s,
            math.ceil(trial_lease_s(endpoint) * 1000),
        ]
        raw = await self._run("breaker", keys=[self.key(endpoint.id)], args=args)
        if raw is None:
            return None
        return bool(raw[0]), BreakerState(raw[1].decode()), int(raw[2]) / 1000.0

    def _remember(self, endpoint_id: int, reply: tuple[bool, BreakerState, float], now: float) -> bool:
        """Keep Redis's answer for later calls from this worker; return whether calls may go out."""
        allowed, state, left_s = reply
        if state is BreakerState.CLOSED:
            self._views[endpoint_id] = _View(True, now + self._view_s)
        elif state is BreakerState.OPEN:
            # Nothing ends an open period early: trust it to the end.
            self._views[endpoint_id] = _View(False, now + left_s)
        elif allowed:
            # This worker holds the trial; its other requests must ask Redis (and be refused).
            self._views.pop(endpoint_id, None)
        else:
            # The trial may finish at any time: look again soon.
            self._views[endpoint_id] = _View(False, now + min(left_s, self._view_s))
        return allowed

    async def _run(self, name: str, *, keys: list[str], args: list[str | int]) -> list[Any] | None:
        """The script's reply, or None when Redis cannot be asked (callers then fail open)."""
        if self._clock() < self._down_until:
            return None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                raw: list[Any] = await self._script(name)(keys=keys, args=args)
        # Any failure, not only RedisError: a breaker must never be why a request failed.
        except Exception as exc:
            self._went_down(exc)
            return None
        if self._down:
            self._down = False
            logger.warning("Circuit breakers reach Redis again")
        return raw

    def _went_down(self, exc: Exception) -> None:
        self._down_until = self._clock() + REDIS_RETRY_S
        if not self._down:
            self._down = True
            logger.warning(
                "Circuit breakers cannot use Redis (%s: %s); each worker keeps its own until it answers again",
                type(exc).__name__,
                exc,
            )

    def _script(self, name: str) -> AsyncScript:
        """The script registered on this event loop's client (EVALSHA, loaded on first use)."""
        client = self._client or shared_redis.async_client()
        scripts = self._scripts.get(client)
        if scripts is None:
            scripts = self._scripts[client] = {n: client.register_script(lua) for n, lua in self.SCRIPTS.items()}
        return scripts[name]


_boards: dict[tuple[str, bool], BreakerBoard] = {}


def breaker_board() -> BreakerBoard:
    """This process's breakers: in Redis when `REDIS_URL` is set, else in-process.

    One board per key prefix, so tests can give each test its own.
    """
    key = (settings.CASCADEOPS_BREAKER_PREFIX, bool(settings.REDIS_URL))
    board = _boards.get(key)
    if board is None:
        board = _boards[key] = RedisBreakers(key[0]) if key[1] else MemoryBreakers()
    return board


async def breaker_states() -> dict[str, str]:
    """Endpoint name → "closed", "open" or "half_open", for every endpoint a policy may call."""
    await config_cache.ensure_fresh()
    endpoints = callable_endpoints(config_cache.policies_by_id.values())
    states = await breaker_board().states(endpoints)
    return {endpoints[i].name: str(state) for i, state in states.items()}


def breaker_states_by_id(endpoint_ids: Iterable[int]) -> dict[int, str]:
    """Each endpoint's breaker state, from sync code (the admin); empty when Redis cannot be read."""
    states = async_to_sync(breaker_board().states)(list(endpoint_ids))
    return {endpoint_id: str(state) for endpoint_id, state in states.items()}


def callable_endpoints(policies: Iterable[PolicySnapshot]) -> dict[int, EndpointSnapshot]:
    """Every tier's endpoint and fallback endpoint, by id."""
    endpoints: dict[int, EndpointSnapshot] = {}
    for policy in policies:
        for tier in policy.tiers:
            endpoints[tier.endpoint.id] = tier.endpoint
            if tier.endpoint.fallback is not None:
                endpoints.setdefault(tier.endpoint.fallback.id, tier.endpoint.fallback)
    return endpoints
