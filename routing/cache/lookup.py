"""The response cache as the hot path sees it: look up before the cascade, store after. See docs/cache.md."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from routing.cache import semantic as semantic_cache
from routing.cache.exact import HEADER, CachedAnswer, CacheHit, Status, answer_store, exact_key
from routing.cache.semantic import Probe, semantic_store
from routing.cache.verify import check_payload
from routing.engine.types import (
    CascadeResult,
    ChatRequest,
    PolicySnapshot,
)
from routing.records.payload import RecordPayload

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """What one request lets the cache do."""

    read: bool = True
    write: bool = True


DEFAULT_CONTROL = CacheControl()


def cache_control(headers: Mapping[str, str]) -> CacheControl:
    """The request's cache directives, from `Cache-Control` and `x-cascadeops-cache`."""
    directives: set[str] = set()
    for name in ("Cache-Control", HEADER):
        value = headers.get(name)
        if value:
            directives.update(part.strip().lower() for part in value.split(","))
    if "no-store" in directives:
        return CacheControl(read=False, write=False)
    if "no-cache" in directives:
        return CacheControl(read=False, write=True)
    return DEFAULT_CONTROL


def hit_payload(payload: RecordPayload, hit: CacheHit, chat: ChatRequest) -> RecordPayload:
    """A hit's record: no attempts, no tokens billed, cost 0, and the cost it avoided.

    `payload` is `recorder.record_payload` of `hit.result()`: its baseline cost is the
    cached answer's on the policy's strongest tier, as for any request. A semantic hit
    drawn for verification carries what re-asking it needs (`semantic_check`).
    """
    payload.update(
        {
            "cache": hit.kind,
            "cost_avoided": str(hit.answer.cost),
            "attempts": [],
            "input_tokens": 0,
            "output_tokens": 0,
            "escalations": 0,
            "escalated": False,
            "cost": "0",
            "sample": None,  # a cached answer is not a new observation of the model
        }
    )
    if hit.verify:
        payload["semantic_check"] = check_payload(hit, chat)
    return payload


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a lookup found, and what storing the fresh answer later needs."""

    status: str
    control: CacheControl
    key: str = ""
    hit: CacheHit | None = None
    semantic: Probe | None = None  # the prompt's embedding, when the policy caches by meaning


async def cache_lookup(policy: PolicySnapshot, chat: ChatRequest, control: CacheControl = DEFAULT_CONTROL) -> Lookup:
    """The cached answer to `chat`, if any: exact first, then (when on) the nearest prompt.

    No thread hop and no database read; in embedded mode an exact hit awaits nothing.
    The embedding a semantic lookup needs runs in a thread, and only after an exact miss.
    """
    if policy.cache_ttl_s <= 0:
        return Lookup(status=Status.OFF, control=control)
    if not control.read and not control.write:
        return Lookup(status=Status.BYPASS, control=control)
    if chat.logprobs:
        # A cached answer keeps no log-probabilities: such requests always go to a model.
        return Lookup(status=Status.SKIP, control=control)
    started = time.perf_counter()
    key = exact_key(policy, chat)
    if control.read:
        answer = await answer_store().get(key)
        if answer is not None:
            hit = CacheHit(kind="exact", answer=answer, lookup_ms=(time.perf_counter() - started) * 1000.0)
            return Lookup(status=Status.HIT_EXACT, control=control, key=key, hit=hit)

    probe = await semantic_cache.probe(policy, chat)
    if probe is not None and control.read:
        near = await semantic_cache.semantic_lookup(policy, probe, started)
        if near is not None:
            return Lookup(status=Status.HIT_SEMANTIC, control=control, key=key, hit=near, semantic=probe)
    return Lookup(status=Status.MISS if control.read else Status.BYPASS, control=control, key=key, semantic=probe)


async def cache_store(lookup: Lookup, policy: PolicySnapshot, result: CascadeResult, *, degraded: bool = False) -> None:
    """Keep a fresh answer for the policy's TTL, when the request and the result allow it."""
    if not lookup.key or not lookup.control.write or degraded or lookup.hit is not None:
        return
    if result.final is None or result.final is not result.attempts[-1]:
        # The stronger tiers failed and the cascade fell back to an answer that scored
        # below its threshold: good enough for now, not for the cache's whole TTL.
        return
    answer = CachedAnswer.of(result)
    if answer is None:
        return
    await answer_store().set(lookup.key, answer, policy.cache_ttl_s)
    if lookup.semantic is not None:
        await semantic_store(policy, lookup.semantic, answer)
