"""The response cache, exact matches: the same request through the same policy gets its answer again.

The key hashes every answer-changing request field with the policy's version and cascade
fingerprint. `cache_lookup` runs before any budget hold (a hit costs nothing) and
`cache_store` keeps an answered, undegraded result for the policy's `cache_ttl_s`, in Redis
when `REDIS_URL` is set, else in an in-process LRU; Redis failing is a miss, never an error.
See docs/cache.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings

from common import redis as shared_redis
from routing.config.snapshots import config_cache
from routing.engine.types import (
    DELIVERY_FIELDS,
    Attempt,
    CascadeResult,
    ChatRequest,
    Completion,
    Outcome,
    PolicySnapshot,
    ToolCall,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

HEADER = "x-cascadeops-cache"
# ChatRequest fields that do not change the answer: how it is delivered, how it is recorded.
ANSWER_NEUTRAL_FIELDS = DELIVERY_FIELDS | {"user", "metadata"}
KEY_FIELDS = tuple(f.name for f in dataclasses.fields(ChatRequest) if f.name not in ANSWER_NEUTRAL_FIELDS)
# A cache round trip slower than this is given up on (a miss, or a store skipped).
REDIS_TIMEOUT_S = 0.1
# After Redis failed, the cache does not ask it again for this long.
REDIS_RETRY_S = 1.0
# An outage is logged once a minute, not once a request.
LOG_EVERY_S = 60.0
# Fingerprints of the snapshots in use; rebuilt snapshots are new objects, so this only
# ever holds a few generations, and it is emptied when it grows past this.
MAX_FINGERPRINTS = 1_000


class Status:
    """The `x-cascadeops-cache` response header's values."""

    HIT_EXACT = "hit-exact"
    HIT_SEMANTIC = "hit-semantic"
    MISS = "miss"
    BYPASS = "bypass"  # the request said no-cache or no-store
    OFF = "off"  # the policy's cache TTL is 0
    SKIP = "skip"  # the request asks for what a cached answer lacks (logprobs)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer as the cache keeps it, with what it cost when it was routed."""

    text: str
    finish_reason: str
    model: str
    endpoint_id: int
    tier: int
    task: str
    input_tokens: int
    output_tokens: int
    cost: Decimal
    score: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    upstream_model: str = ""  # the provider's model id, the answer's `model`

    @classmethod
    def of(cls, result: CascadeResult) -> CachedAnswer | None:
        """The answer of a fresh result, or None when it has none to keep."""
        final, completion = result.final, result.completion
        if final is None or completion is None:
            return None
        return cls(
            text=completion.text,
            finish_reason=completion.finish_reason,
            model=final.model,
            endpoint_id=final.endpoint_id,
            tier=final.tier,
            task=result.task,
            input_tokens=final.input_tokens,
            output_tokens=final.output_tokens,
            cost=result.cost,
            score=final.score,
            tool_calls=completion.tool_calls,
            upstream_model=completion.model,
        )

    def dumps(self) -> bytes:
        return json.dumps(
            {
                "text": self.text,
                "finish": self.finish_reason,
                "model": self.model,
                "endpoint": self.endpoint_id,
                "tier": self.tier,
                "task": self.task,
                "in": self.input_tokens,
                "out": self.output_tokens,
                "cost": str(self.cost),
                "score": self.score,
                "calls": [[c.id, c.name, c.arguments] for c in self.tool_calls],
                "upstream": self.upstream_model,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def loads(cls, raw: bytes | str) -> CachedAnswer:
        data = json.loads(raw)
        return cls(
            text=data["text"],
            finish_reason=data["finish"],
            model=data["model"],
            endpoint_id=data["endpoint"],
            tier=data["tier"],
            task=data["task"],
            input_tokens=data["in"],
            output_tokens=data["out"],
            cost=Decimal(data["cost"]),
            score=data["score"],
            # Entries stored before tool calls were cached have neither.
            tool_calls=tuple(ToolCall(*call) for call in data.get("calls", ())),
            upstream_model=data.get("upstream", ""),
        )


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A request answered from the cache."""

    kind: str  # "exact" or "semantic" (RequestRecord.cache)
    answer: CachedAnswer
    lookup_ms: float
    similarity: float | None = None  # semantic hits: cosine of the prompts
    verify: bool = False  # semantic hits drawn for re-asking (Policy.semantic_verify_rate)

    def result(self) -> CascadeResult:
        """The cached answer in the shape the response builders read: one free, accepted attempt."""
        answer = self.answer
        attempt = Attempt(
            tier=answer.tier,
            endpoint_id=answer.endpoint_id,
            model=answer.model,
            outcome=Outcome.ACCEPTED,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            score=answer.score,
        )
        completion = Completion(
            text=answer.text,
            finish_reason=answer.finish_reason,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            latency_ms=0.0,
            model=answer.upstream_model or answer.model,
            tool_calls=answer.tool_calls,
        )
        return CascadeResult(task=answer.task, attempts=(attempt,), completion=completion, latency_ms=self.lookup_ms)

    def headers(self) -> dict[str, str]:
        """Headers that replace or add to the routing headers of the cached result."""
        headers = {
            HEADER: Status.HIT_SEMANTIC if self.kind == "semantic" else Status.HIT_EXACT,
            "x-cascadeops-attempts": "0",
            "x-cascadeops-cost-avoided-usd": str(self.answer.cost),
        }
        if self.similarity is not None:
            headers["x-cascadeops-cache-similarity"] = f"{self.similarity:.4f}"
        return headers


# --- Keys --------------------------------------------------------------------------------

_fingerprints: dict[int, tuple[PolicySnapshot, str]] = {}


def policy_fingerprint(policy: PolicySnapshot) -> str:
    """A hash of what decides a policy's answers: tiers, endpoints, rules, scorer and router.

    Computed once per snapshot: any configuration change (a learned scorer or router
    activated included) rebuilds every snapshot, so a stale fingerprint is never reused.
    """
    known = _fingerprints.get(id(policy))
    if known is not None and known[0] is policy:
        return known[1]
    if len(_fingerprints) >= MAX_FINGERPRINTS:
        _fingerprints.clear()
    quality = config_cache.quality.get(policy.id)
    # The learned scorer and prompt router in use decide which tier answers, like the tiers do.
    learned = (quality.scorer_version, quality.router_version, quality.router_threshold) if quality else None
    cascade = (policy.tiers, policy.task_rules, policy.scorer, policy.max_escalations, policy.short_prompt_tokens)
    parts = (cascade, learned)
    fingerprint = hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    # The snapshot is kept with its hash: an id is only unique while its object lives.
    _fingerprints[id(policy)] = (policy, fingerprint)
    return fingerprint


def policy_namespace(policy: PolicySnapshot) -> str:
    """Keys of entries that are valid for this policy as configured now."""
    return f"{policy.id}:{policy.version}:{policy_fingerprint(policy)}"


def request_digest(chat: ChatRequest) -> str:
    """A hash of the request's answer-changing fields.

    Of their `repr`: exact and unambiguous for the strings, numbers, booleans and frozen
    `Message`s they are, and several times cheaper than JSON on the hot path.
    """
    values = tuple(getattr(chat, name) for name in KEY_FIELDS)
    return hashlib.blake2b(repr(values).encode(), digest_size=20).hexdigest()


def exact_key(policy: PolicySnapshot, chat: ChatRequest) -> str:
    return f"{settings.CASCADEOPS_CACHE_PREFIX}:exact:{policy_namespace(policy)}:{request_digest(chat)}"


# --- Stores ------------------------------------------------------------------------------


class AnswerStore(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def set(self, key: str, answer: CachedAnswer, ttl_s: int) -> None: ...


class LocalStore:
    """A bounded in-process LRU whose entries expire (embedded mode).

    It keeps the answers as objects: a hit parses nothing.
    """

    def __init__(self, max_entries: int, clock: Any = time.monotonic) -> None:
        self.max_entries = max(max_entries, 1)
        self.clock = clock
        self.entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry[1]

    async def set(self, key: str, answer: CachedAnswer, ttl_s: int) -> None:
        self.entries[key] = (self.clock() + ttl_s, answer)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


class RedisGuard:
    """Runs cache commands against Redis with a timeout; after a failure, skips Redis a while."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.logged_at = float("-inf")

    async def run(self, what: str, command: Any) -> Any:
        """`await command()`, or None when Redis failed or is being left alone."""
        if time.monotonic() < self.down_until:
            return None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                return await command()
        except Exception as exc:
            # A cache is an optimisation: its failure must never fail the request.
            self._failed(what, exc)
            return None

    def _failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_S:
            self.logged_at = now
            logger.warning("Response cache: Redis %s failed (%r); answering without the cache", what, exc)
        self.down_until = now + REDIS_RETRY_S


class RedisStore:
    """Entries in Redis, shared by every worker: one GET per lookup, one SET EX per store."""

    def __init__(self, guard: RedisGuard) -> None:
        self.guard = guard

    async def get(self, key: str) -> CachedAnswer | None:
        value = await self.guard.run("GET", lambda: shared_redis.async_client().get(key))
        return answer_loads(value) if isinstance(value, bytes) else None

    async def set(self, key: str, answer: CachedAnswer, ttl_s: int) -> None:
        value = answer.dumps()
        await self.guard.run("SET", lambda: shared_redis.async_client().set(key, value, ex=ttl_s))


def answer_loads(raw: bytes) -> CachedAnswer | None:
    """A stored answer, or None (and a warning) for one this version cannot read."""
    try:
        return CachedAnswer.loads(raw)
    except (ValueError, KeyError, TypeError, ArithmeticError):
        logger.warning("Response cache: an unreadable entry was ignored")
        return None


_stores: dict[tuple[str, bool], AnswerStore] = {}
redis_guard = RedisGuard()


def answer_store() -> AnswerStore:
    """This process's exact-match store: Redis when `REDIS_URL` is set, else in-process.

    One store per key prefix, so tests can give each test its own.
    """
    key = (settings.CASCADEOPS_CACHE_PREFIX, bool(settings.REDIS_URL))
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = RedisStore(redis_guard) if key[1] else LocalStore(settings.CASCADEOPS_CACHE_MAX_ENTRIES)
    return store


# --- The hot path's two calls -------------------------------------------------------------


def cache_clear() -> None:
    """Forget every in-process store (tests; Redis entries expire by themselves)."""
    _stores.clear()
    _fingerprints.clear()
    redis_guard.__init__()  # type: ignore[misc]
