"""Requests and tokens per minute per API key, shared by every worker.

GCRA (a token bucket kept as one number per limit): a key may spend its whole minute's
allowance at once and gets it back at an even rate. Tokens are charged at an estimate
before the call and corrected to what was used when the request is recorded. Redis (one
Lua script per step) in production, a dict in embedded mode; when Redis fails, each worker
enforces the limits in its own dict meanwhile. See docs/limits.md and docs/redis-outage.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio
from django.conf import settings
from django.http import HttpResponseBase
from redis.commands.core import AsyncScript

from common import redis as shared_redis
from common.lua import lua_script
from routing import metrics
from routing.config.snapshots import KeyInfo
from routing.engine.costing import resolve_max_tokens
from routing.engine.tokens import estimate_prompt_tokens
from routing.engine.types import ChatRequest, PolicySnapshot
from routing.exceptions import RateLimited

logger = logging.getLogger(__name__)

PERIOD_MS = 60_000.0
REQUESTS, TOKENS = "requests", "tokens"
# A failing Redis is logged at most this often per worker, not once per request.
FAILURE_LOG_INTERVAL_S = 10.0
# Floating-point slack when turning a time left into whole units left.
EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request costs against one limit of its key."""

    kind: str  # REQUESTS or TOKENS
    counter: str  # the limit's name in the store
    limit: int  # per minute
    cost: int


@dataclass(frozen=True, slots=True)
class Standing:
    """One limit as a decision left it: OpenAI's `x-ratelimit-*` values, and the wait if refused."""

    kind: str
    limit: int
    remaining: int
    reset_ms: float  # until the bucket is full again
    retry_ms: float = 0.0  # until this request would fit (0: it was admitted)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    standings: tuple[Standing, ...]


class LimitStore(Protocol):
    """Where the keys' TATs live: Redis in production, this process in embedded mode."""

    async def charge(self, charges: Sequence[Charge]) -> Decision: ...

    async def adjust(self, counter: str, limit: int, delta: int) -> None: ...


# --- the algorithm ------------------------------------------------------------------------


def gcra(tat: float, now: float, charge: Charge) -> tuple[float | None, Standing]:
    """The limit's new TAT (None: refused) and its standing, after `charge` at `now`.

    Times are milliseconds. The Lua script below is this function, line for line.
    """
    interval = PERIOD_MS / charge.limit
    tat = max(tat, now)
    new_tat = tat + charge.cost * interval
    ahead = new_tat - now
    if ahead > PERIOD_MS:
        left = max(0, math.floor((PERIOD_MS - (tat - now)) / interval + EPSILON))
        return None, Standing(charge.kind, charge.limit, left, tat - now, ahead - PERIOD_MS)
    left = math.floor((PERIOD_MS - ahead) / interval + EPSILON)
    return new_tat, Standing(charge.kind, charge.limit, left, ahead)


def adjusted_tat(tat: float, now: float, limit: int, delta: int) -> float:
    """The TAT after correcting a charge by `delta` units (a refund is negative)."""
    return max(tat, now) + delta * (PERIOD_MS / limit)


# KEYS: one TAT per limit. ARGV: per limit, its limit per minute and this request's cost.
# Returns {allowed (1/0), then per limit: remaining, ms until full, ms until it would fit}.
# Redis turns Lua numbers into integers, hence the floor/ceil before returning.
CHARGE_LUA = lua_script("routing.limits", "ratelimit_charge")

# KEYS: one TAT. ARGV: its limit per minute, the correction in units (negative: a refund).
ADJUST_LUA = lua_script("routing.limits", "ratelimit_adjust")


def charge_args(charges: Sequence[Charge]) -> list[int]:
    """`CHARGE_LUA`'s ARGV for `charges` (its KEYS are their counters)."""
    args: list[int] = []
    for c in charges:
        args += [c.limit, c.cost]
    return args


def decision_from(raw: Sequence[Any], charges: Sequence[Charge]) -> Decision:
    """`CHARGE_LUA`'s reply, read."""
    standings = tuple(
        Standing(c.kind, c.limit, int(raw[1 + 3 * i]), float(raw[2 + 3 * i]), float(raw[3 + 3 * i]))
        for i, c in enumerate(charges)
    )
    return Decision(allowed=int(raw[0]) == 1, standings=standings)


# --- stores -------------------------------------------------------------------------------


class RedisLimitStore:
    """TATs in Redis strings, changed only by the scripts above (atomic across workers)."""

    def __init__(self, client: redis.asyncio.Redis | None = None) -> None:
        # None: the process's shared client for the running event loop.
        self._client = client
        self._scripts: weakref.WeakKeyDictionary[object, tuple[AsyncScript, AsyncScript]] = weakref.WeakKeyDictionary()

    def _loaded(self) -> tuple[AsyncScript, AsyncScript]:
        """The scripts registered on this event loop's client (EVALSHA, loaded on first use)."""
        client = self._client or shared_redis.async_client()
        scripts = self._scripts.get(client)
        if scripts is None:
            scripts = self._scripts[client] = (client.register_script(CHARGE_LUA), client.register_script(ADJUST_LUA))
        return scripts

    async def charge(self, charges: Sequence[Charge]) -> Decision:
        raw = await self._loaded()[0](keys=[c.counter for c in charges], args=charge_args(charges))
        return decision_from(raw, charges)

    async def adjust(self, counter: str, limit: int, delta: int) -> None:
        await self._loaded()[1](keys=[counter], args=[limit, delta])

    def adjust_queued(self, pipe: Any, counter: str, limit: int, delta: int) -> None:
        """`adjust` queued on `pipe` (EVALSHA alone, as `billing.budgets.store.RedisBudgetStore.settle_queued`)."""
        pipe.evalsha(self._loaded()[1].sha, 1, counter, limit, delta)


class LocalLimitStore:
    """TATs in a dictionary of this process (embedded mode). The event loop makes each step atomic."""

    def __init__(self) -> None:
        self.tats: dict[str, float] = {}

    async def charge(self, charges: Sequence[Charge]) -> Decision:
        now = time.time() * 1000
        decided = [gcra(self.tats.get(c.counter, 0.0), now, c) for c in charges]
        new_tats = [tat for tat, _ in decided if tat is not None]
        allowed = len(new_tats) == len(charges)
        if allowed:
            for tat, c in zip(new_tats, charges, strict=True):
                self.tats[c.counter] = tat
        self._forget_full(now)
        return Decision(allowed=allowed, standings=tuple(standing for _, standing in decided))

    async def adjust(self, counter: str, limit: int, delta: int) -> None:
        now = time.time() * 1000
        self.tats[counter] = adjusted_tat(self.tats.get(counter, 0.0), now, limit, delta)

    def _forget_full(self, now: float) -> None:
        # A bucket that is full again needs no entry; keeps the dict at the busy keys.
        if len(self.tats) > 1_000:
            self.tats = {k: v for k, v in self.tats.items() if v > now}


_redis_store = RedisLimitStore()
_local_store = LocalLimitStore()


def limit_store() -> LimitStore:
    """The store for this mode."""
    return _redis_store if settings.REDIS_URL else _local_store


# --- the hot path's view of it ------------------------------------------------------------


@dataclass
class Admission:
    """A request let through: the headers to answer with, and its token charge to correct."""

    standings: tuple[Standing, ...]
    tokens: Charge | None  # None: the key has no token limit
    store: LimitStore
    settled: bool = False

    def headers(self) -> dict[str, str]:
        return standing_headers(self.standings)

    async def settle(self, used_tokens: int) -> None:
        """Correct the token charge to what the request used; once, and never raising."""
        if self.settled or self.tokens is None:
            return
        self.settled = True
        delta = used_tokens - self.tokens.cost
        if delta:
            await _guarded(self.store.adjust(self.tokens.counter, self.tokens.limit, delta), "correct a token charge")

    def settle_queued(self, pipe: Any, used_tokens: int) -> bool:
        """Queue the correction on `pipe` when the charge is in Redis; whether a command was queued.

        Its reply goes to `queued_settle_failed` when it is an error.
        """
        if self.settled or self.tokens is None or not isinstance(self.store, RedisLimitStore):
            return False
        self.settled = True
        delta = used_tokens - self.tokens.cost
        if not delta:
            return False
        self.store.adjust_queued(pipe, self.tokens.counter, self.tokens.limit, delta)
        return True

    def queued_settle_failed(self) -> None:
        """The queued correction did not run (Redis had lost its script, or the pipeline broke):
        `settle` may correct the charge again, through the script object that reloads it."""
        self.settled = False


# How long a rate-limit step may wait for Redis before this worker's own counters decide.
STORE_TIMEOUT_S = 0.5

# The admission of the request this task is serving: set by `admit`, read when the
# request is recorded (`settle_recorded`), which happens in the same task or one it started.
_current: contextvars.ContextVar[Admission | None] = contextvars.ContextVar("cascadeops_admission", default=None)


def charges_for(key: KeyInfo, policy: PolicySnapshot, chat: ChatRequest) -> list[Charge]:
    """What the request costs against each limit its key has (none: no limit)."""
    charges = []
    if key.requests_per_minute is not None:
        charges.append(Charge(REQUESTS, counter_name(key, REQUESTS), key.requests_per_minute, 1))
    if key.tokens_per_minute is not None:
        cost = min(estimated_tokens(policy, chat), key.tokens_per_minute)
        charges.append(Charge(TOKENS, counter_name(key, TOKENS), key.tokens_per_minute, cost))
    return charges


def counter_name(key: KeyInfo, kind: str) -> str:
    return f"cascadeops:ratelimit:{key.id}:{kind}"


def estimated_tokens(policy: PolicySnapshot, chat: ChatRequest) -> int:
    """The prompt's estimated tokens plus the most the answer may use on the cheap tier."""
    return estimate_prompt_tokens(chat) + resolve_max_tokens(chat, policy.tiers[0])


async def admit(key: KeyInfo, policy: PolicySnapshot, chat: ChatRequest) -> Admission | None:
    """Charge the request to its key's limits, or raise `RateLimited` (a 429).

    None when the key has no limit (no counter touched) or when the store failed.
    """
    forget_admission()
    if key.requests_per_minute is None and key.tokens_per_minute is None:
        return None
    charges = charges_for(key, policy, chat)
    store = limit_store()
    decision = await _guarded(store.charge(charges), "check a rate limit")
    if decision is None and store is not _local_store:
        # Redis is away: this worker enforces the key's limits on its own meanwhile.
        store = _local_store
        decision = await store.charge(charges)
    if decision is None:
        return None
    return admitted(key, charges, decision, store)


def admitted(key: KeyInfo, charges: Sequence[Charge], decision: Decision, store: LimitStore) -> Admission:
    """The request's admission once `store` decided on `charges`; raises `RateLimited` (a 429)."""
    if not decision.allowed:
        raise rate_limited(key, charges, decision)
    tokens = next((c for c in charges if c.kind == TOKENS), None)
    admission = Admission(standings=decision.standings, tokens=tokens, store=store)
    _current.set(admission)
    return admission


def forget_admission() -> None:
    """No admission yet for the request this task serves."""
    _current.set(None)


def current_admission() -> Admission | None:
    """The admission of the request this task is serving (None: no limit, or refused)."""
    return _current.get()


def used_tokens(payload: Mapping[str, Any]) -> int:
    return int(payload.get("input_tokens") or 0) + int(payload.get("output_tokens") or 0)


async def settle_recorded(payload: Mapping[str, Any]) -> None:
    """Correct the recorded request's token charge to the tokens every attempt used.

    `payload` is a `routing.records.payload.RecordPayload`, which this layer may not import.
    """
    admission = _current.get()
    if admission is not None:
        await admission.settle(used_tokens(payload))


def with_headers(response: HttpResponseBase, admission: Admission | None) -> HttpResponseBase:
    """The answer with OpenAI's `x-ratelimit-*` headers for the key's limits."""
    if admission is not None:
        for name, value in admission.headers().items():
            response[name] = value
    return response


def rate_limited(key: KeyInfo, charges: Sequence[Charge], decision: Decision) -> RateLimited:
    """The 429 for the limit that refused (the one that makes the caller wait longest)."""
    refused = max(
        ((s, c) for s, c in zip(decision.standings, charges, strict=True) if s.retry_ms > 0),
        key=lambda pair: pair[0].retry_ms,
    )
    standing, charge = refused
    name = "requests per min (RPM)" if standing.kind == REQUESTS else "tokens per min (TPM)"
    wait = openai_duration(standing.retry_ms / 1000)
    message = (
        f"Rate limit reached for API key {key.prefix}… on {name}: Limit {standing.limit}, "
        f"Used {standing.limit - standing.remaining}, Requested {charge.cost}. Please try again in {wait}."
    )
    metrics.rate_limited(standing.kind)
    return RateLimited(
        message,
        limit_type=standing.kind,
        retry_after_s=standing.retry_ms / 1000,
        headers=standing_headers(decision.standings),
    )


def standing_headers(standings: Sequence[Standing]) -> dict[str, str]:
    headers = {}
    for s in standings:
        headers[f"x-ratelimit-limit-{s.kind}"] = str(s.limit)
        headers[f"x-ratelimit-remaining-{s.kind}"] = str(s.remaining)
        headers[f"x-ratelimit-reset-{s.kind}"] = openai_duration(s.reset_ms / 1000)
    return headers


def openai_duration(seconds: float) -> str:
    """A duration as OpenAI's headers write it: `20ms`, `1s`, `8.64s`, `6m0s`."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{rest:.2f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


_last_failure_logged = float("-inf")


async def _guarded(step: Any, doing: str) -> Any:
    """The step's result, or None when the store failed (logged, at most every few seconds)."""
    global _last_failure_logged
    try:
        # A Redis that stops answering without refusing connections must not hang requests.
        async with asyncio.timeout(STORE_TIMEOUT_S):
            return await step
    except (redis.RedisError, OSError):  # TimeoutError is an OSError
        if time.monotonic() - _last_failure_logged >= FAILURE_LOG_INTERVAL_S:
            _last_failure_logged = time.monotonic()
            logger.exception("Could not %s in Redis", doing)
        return None
