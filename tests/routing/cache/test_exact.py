"""The exact-match cache's parts: request directives, keys, stores, and Redis failing."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

import pytest

from routing.cache.exact import CachedAnswer, LocalStore, Status, answer_store, exact_key
from routing.cache.lookup import CacheControl, cache_control, cache_lookup, cache_store
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Completion, Message, Outcome
from testing.fakes import chat, policy, tier

SNAPSHOT = dataclasses.replace(policy(tier(0, 0.0), tier(1, 1.0)), cache_ttl_s=60)


def answered(cost: str = "0.0042", *, text: str = "Paris.") -> CascadeResult:
    attempts = (
        Attempt(tier=0, endpoint_id=1, model="model-1", outcome=Outcome.ESCALATED, cost=Decimal("0.0002")),
        Attempt(
            tier=1,
            endpoint_id=2,
            model="model-2",
            outcome=Outcome.ACCEPTED,
            input_tokens=12,
            output_tokens=3,
            cost=Decimal(cost) - Decimal("0.0002"),
            score=0.9,
        ),
    )
    return CascadeResult(task="faq", attempts=attempts, completion=Completion(text, "stop", 12, 3, 5.0))


def fell_back() -> CascadeResult:
    """The cheap tier's low-scoring answer, accepted because the strong tier failed."""
    escalated, _ = answered().attempts
    attempts = (
        dataclasses.replace(escalated, outcome=Outcome.ACCEPTED, score=0.3),
        Attempt(tier=1, endpoint_id=2, model="model-2", outcome=Outcome.FAILED, error_kind="timeout"),
    )
    return CascadeResult(task="faq", attempts=attempts, completion=Completion("Lyon?", "stop", 12, 3, 5.0))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("headers", "read", "write"),
    [
        ({}, True, True),
        ({"Cache-Control": "no-store"}, False, False),
        ({"Cache-Control": "no-cache"}, False, True),
        ({"Cache-Control": "max-age=0, No-Cache"}, False, True),
        ({"x-cascadeops-cache": "no-store"}, False, False),
        ({"x-cascadeops-cache": "no-cache"}, False, True),
        ({"Cache-Control": "no-cache", "x-cascadeops-cache": "no-store"}, False, False),
        ({"Cache-Control": "max-age=60"}, True, True),
    ],
)
def test_requests_opt_out_with_cache_control_or_the_gateway_header(headers, read, write):
    assert cache_control(headers) == CacheControl(read=read, write=write)


@pytest.mark.parametrize(
    "other",
    [
        chat("What is the capital of Spain?"),
        dataclasses.replace(chat(), max_tokens=50),
        dataclasses.replace(chat(), temperature=0.7),
        dataclasses.replace(chat(), logprobs=True),
        ChatRequest((Message("system", "Answer in French."), Message("user", "What is the capital of France?"))),
        ChatRequest((Message("assistant", "What is the capital of France?"),)),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(other):
    assert exact_key(SNAPSHOT, other) != exact_key(SNAPSHOT, chat())


def test_who_asks_and_how_the_answer_is_delivered_do_not_change_the_key():
    same = dataclasses.replace(chat(), user="customer-7", metadata={"feature": "faq"}, stream=True, include_usage=True)

    assert exact_key(SNAPSHOT, same) == exact_key(SNAPSHOT, chat())


def test_a_new_policy_version_or_an_edited_endpoint_changes_the_key():
    edited_tier = dataclasses.replace(
        SNAPSHOT.tiers[1], endpoint=dataclasses.replace(SNAPSHOT.tiers[1].endpoint, model_id="model-2-2025")
    )

    assert exact_key(dataclasses.replace(SNAPSHOT, version=2), chat()) != exact_key(SNAPSHOT, chat())
    assert exact_key(dataclasses.replace(SNAPSHOT, tiers=(SNAPSHOT.tiers[0], edited_tier)), chat()) != exact_key(
        SNAPSHOT, chat()
    )


async def test_an_entry_expires_after_its_ttl():
    clock, answer = Clock(), CachedAnswer.of(answered())
    store = LocalStore(10, clock=clock)
    await store.set("k", answer, 60)

    clock.now += 59.9
    assert await store.get("k") == answer
    clock.now += 0.2
    assert await store.get("k") is None


async def test_the_local_store_drops_the_least_recently_used_entry_beyond_its_size():
    paris, rome, oslo = (CachedAnswer.of(answered(text=t)) for t in ("Paris.", "Rome.", "Oslo."))
    store = LocalStore(2)
    await store.set("a", paris, 60)
    await store.set("b", rome, 60)
    await store.get("a")
    await store.set("c", oslo, 60)

    assert [await store.get(k) for k in "abc"] == [paris, None, oslo]


def test_a_cached_answer_survives_its_round_trip_through_json():
    answer = CachedAnswer.of(answered("0.0042"))

    assert answer is not None
    assert CachedAnswer.loads(answer.dumps()) == answer
    assert answer.cost == Decimal("0.0042") and answer.model == "model-2" and answer.tier == 1


async def test_a_stored_answer_is_a_hit_that_remembers_what_it_cost(settings):
    miss = await cache_lookup(SNAPSHOT, chat())
    await cache_store(miss, SNAPSHOT, answered("0.0042"))

    lookup = await cache_lookup(SNAPSHOT, chat())

    assert miss.status == Status.MISS
    assert lookup.status == Status.HIT_EXACT and lookup.hit is not None
    assert lookup.hit.answer.text == "Paris." and lookup.hit.answer.cost == Decimal("0.0042")
    result = lookup.hit.result()
    assert result.cost == 0 and result.final is not None and result.final.model == "model-2"


@pytest.mark.parametrize(
    ("control", "result", "degraded"),
    [
        (CacheControl(read=True, write=True), CascadeResult(task="faq", attempts=()), False),  # every tier failed
        (CacheControl(read=True, write=True), answered(), True),  # a budget degraded the routing
        (CacheControl(read=False, write=False), answered(), False),  # no-store
        (CacheControl(read=True, write=True), fell_back(), False),  # the stronger tier failed
    ],
)
async def test_failed_degraded_and_no_store_answers_are_not_kept(control, result, degraded):
    lookup = await cache_lookup(SNAPSHOT, chat(), control)
    await cache_store(lookup, SNAPSHOT, result, degraded=degraded)

    assert (await cache_lookup(SNAPSHOT, chat())).hit is None


async def test_a_policy_with_ttl_zero_caches_nothing():
    off = dataclasses.replace(SNAPSHOT, cache_ttl_s=0)
    lookup = await cache_lookup(off, chat())
    await cache_store(lookup, off, answered())

    assert lookup.status == Status.OFF
    assert (await cache_lookup(off, chat())).hit is None


async def test_a_failing_redis_is_a_miss_and_a_skipped_store_never_an_error(settings, caplog):
    caplog.set_level(logging.WARNING, logger="routing.cache.exact")
    real_redis = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        lookup = await cache_lookup(SNAPSHOT, chat())
        await cache_store(lookup, SNAPSHOT, answered())
        again = await answer_store().get(lookup.key)
    finally:
        settings.REDIS_URL = real_redis  # before the shared fixtures clean up in Redis

    assert lookup.status == Status.MISS and lookup.hit is None
    assert again is None
    assert "answering without the cache" in caplog.text
    # Logged once, and Redis is left alone a while: later requests do not wait for it again.
    assert len([r for r in caplog.records if r.name == "routing.cache.exact"]) == 1
