"""Rate limits per API key: the algorithm, both stores, and the 429 through the real HTTP API.

Store tests run against this mode's store (the process's in embedded mode, Redis with
`REDIS_URL`); the ones about sharing a limit across workers need Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import openai
import pytest
import redis.asyncio

from routing.config.snapshots import KeyInfo
from routing.engine.types import ChatRequest, EndpointSnapshot, Message, PolicySnapshot, ProviderType, Tier
from routing.exceptions import RateLimited
from routing.limits import ratelimit
from routing.limits.ratelimit import PERIOD_MS, Charge, LocalLimitStore, RedisLimitStore, gcra, openai_duration
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import running_upstream

# testing.upstream reports these tokens for every call.
UPSTREAM_PROMPT_TOKENS, UPSTREAM_COMPLETION_TOKENS = 20, 6


@pytest.fixture(autouse=True)
def rate_limits_cleared(settings: object) -> Iterator[None]:
    """Counters are keyed by API key id, which a new test database hands out again."""

    def clear() -> None:
        ratelimit._local_store.tats.clear()
        if settings.REDIS_URL:  # type: ignore[attr-defined]
            from common.redis import sync_client

            for key in sync_client().scan_iter("cascadeops:ratelimit:*"):
                sync_client().delete(key)

    clear()
    yield
    clear()


def key_info(key_id: int = 1, *, rpm: int | None = None, tpm: int | None = None) -> KeyInfo:
    return KeyInfo(
        id=key_id, prefix="co-test", policy_id=1, team="t", app="a", expires_at=None, revoked=False,
        requests_per_minute=rpm, tokens_per_minute=tpm,
    )  # fmt: skip


def policy(max_tokens: int = 100) -> PolicySnapshot:
    endpoint = EndpointSnapshot(
        id=1, name="cheap", provider_kind=ProviderType.OPENAI_COMPAT, model_id="cheap",
        input_price_per_m=0, output_price_per_m=0, max_tokens=max_tokens,
    )  # type: ignore[arg-type]  # fmt: skip
    return PolicySnapshot(id=1, name="p", version=1, tiers=(Tier(position=0, endpoint=endpoint, threshold=0.0),))


def chat(text: str = "12345678", max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), max_tokens=max_tokens)


def current_store() -> ratelimit.LimitStore:
    return ratelimit.limit_store()


# --- the algorithm ------------------------------------------------------------------------


def test_a_minutes_allowance_passes_at_once_and_then_comes_back_at_an_even_rate():
    charge = Charge("requests", "k", limit=3, cost=1)
    tat, now = 0.0, 1_000_000.0
    for expected_left in (2, 1, 0):
        new_tat, standing = gcra(tat, now, charge)
        assert new_tat is not None and standing.remaining == expected_left
        tat = new_tat

    refused, standing = gcra(tat, now, charge)
    assert refused is None
    assert standing.retry_ms == pytest.approx(PERIOD_MS / 3)  # one request's worth
    assert standing.reset_ms == pytest.approx(PERIOD_MS)  # until all three are back

    later, standing = gcra(tat, now + PERIOD_MS / 3, charge)
    assert later is not None and standing.remaining == 0


def test_a_refused_request_changes_nothing_and_a_refund_is_never_banked():
    charge = Charge("tokens", "k", limit=600, cost=500)
    now = 1_000_000.0
    tat, _ = gcra(0.0, now, charge)
    assert tat is not None
    assert gcra(tat, now, charge)[0] is None

    refunded = ratelimit.adjusted_tat(tat, now, 600, -5_000)
    assert refunded < now  # below now: the bucket is simply full
    _, standing = gcra(refunded, now, Charge("tokens", "k", limit=600, cost=0))
    assert standing.remaining == 600


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.02, "20ms"), (1, "1s"), (8.64, "8.64s"), (360, "6m0s"), (61.5, "1m1.5s")]
)
def test_durations_are_written_as_openai_writes_them(seconds, text):
    assert openai_duration(seconds) == text


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert RateLimited("x", limit_type="requests", retry_after_s=0.2, headers={}).headers()["Retry-After"] == "1"
    assert RateLimited("x", limit_type="tokens", retry_after_s=20.01, headers={}).headers()["Retry-After"] == "21"


def test_the_token_estimate_is_the_prompt_and_the_requests_or_the_cheap_tiers_max_tokens():
    # "12345678": 2 tokens + 4 for the message.
    assert ratelimit.estimated_tokens(policy(max_tokens=100), chat(max_tokens=30)) == 6 + 30
    assert ratelimit.estimated_tokens(policy(max_tokens=100), chat()) == 6 + 100


# --- the stores ---------------------------------------------------------------------------


async def test_the_store_admits_up_to_the_limit_then_refuses_without_charging():
    key = key_info(rpm=2, tpm=60)  # a token a second comes back
    for _ in range(2):
        admission = await ratelimit.admit(key, policy(), chat(max_tokens=10))
        assert admission is not None

    with pytest.raises(RateLimited) as refused:
        await ratelimit.admit(key, policy(), chat(max_tokens=10))

    assert refused.value.status == 429
    assert refused.value.as_openai()["error"]["type"] == "requests"
    assert refused.value.as_openai()["error"]["code"] == "rate_limit_exceeded"
    # The refused request took no tokens: only the two admitted ones' 16 each are gone.
    tokens = Charge("tokens", ratelimit.counter_name(key, "tokens"), 60, 0)
    decision = await current_store().charge([tokens])
    assert decision.standings[0].remaining >= 60 - 32


async def test_a_token_refusal_names_tokens_and_leaves_the_request_count_alone():
    key = key_info(rpm=2, tpm=100)
    assert await ratelimit.admit(key, policy(), chat(max_tokens=90)) is not None

    with pytest.raises(RateLimited) as refused:
        await ratelimit.admit(key, policy(), chat(max_tokens=90))

    assert refused.value.type == "tokens"
    assert "tokens per min (TPM): Limit 100" in refused.value.message
    assert refused.value.headers()["x-ratelimit-limit-requests"] == "2"
    requests = Charge("requests", ratelimit.counter_name(key, "requests"), 2, 0)
    assert (await current_store().charge([requests])).standings[0].remaining == 1


async def test_settling_corrects_the_token_charge_to_what_was_used():
    key = key_info(tpm=1_000)
    wide = policy(max_tokens=2_000)
    admission = await ratelimit.admit(key, wide, chat(max_tokens=900))
    assert admission is not None and admission.tokens is not None and admission.tokens.cost == 906
    with pytest.raises(RateLimited):
        await ratelimit.admit(key, wide, chat(max_tokens=900))

    await admission.settle(30)

    assert await ratelimit.admit(key, wide, chat(max_tokens=900)) is not None


async def test_an_estimate_over_the_whole_minute_passes_only_on_a_full_bucket():
    key = key_info(tpm=60)
    admission = await ratelimit.admit(key, policy(max_tokens=4_000), chat())
    assert admission is not None and admission.tokens is not None and admission.tokens.cost == 60

    with pytest.raises(RateLimited):
        await ratelimit.admit(key, policy(max_tokens=4_000), chat(max_tokens=50))


async def test_a_key_without_limits_touches_no_counter(settings):
    assert await ratelimit.admit(key_info(), policy(), chat()) is None

    assert ratelimit._local_store.tats == {}
    if settings.REDIS_URL:
        from common.redis import sync_client

        assert list(sync_client().scan_iter("cascadeops:ratelimit:*")) == []


async def test_when_redis_is_down_this_worker_enforces_the_limit_and_logs_it(monkeypatch, caplog):
    unreachable = RedisLimitStore(redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0"))  # nothing listens there
    monkeypatch.setattr(ratelimit, "limit_store", lambda: unreachable)
    monkeypatch.setattr(ratelimit, "_local_store", LocalLimitStore())
    ratelimit._last_failure_logged = float("-inf")
    caplog.set_level(logging.ERROR, logger="routing.limits.ratelimit")

    admitted = await ratelimit.admit(key_info(rpm=1), policy(), chat())
    assert admitted is not None and admitted.store is ratelimit._local_store
    with pytest.raises(RateLimited):
        await ratelimit.admit(key_info(rpm=1), policy(), chat())  # the minute's one request was used

    assert "Could not check a rate limit in Redis" in caplog.text


async def test_the_local_store_keeps_the_same_arithmetic_as_the_lua_script(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis")
    local, shared = LocalLimitStore(), RedisLimitStore()
    charges = [Charge("requests", "cascadeops:ratelimit:0:requests", 5, 1),
               Charge("tokens", "cascadeops:ratelimit:0:tokens", 1_000, 300)]  # fmt: skip
    for _ in range(4):
        mine, theirs = await local.charge(charges), await shared.charge(charges)
        assert mine.allowed == theirs.allowed
        assert [s.remaining for s in mine.standings] == [s.remaining for s in theirs.standings]


async def test_two_limiter_instances_with_their_own_connections_share_one_limit(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: in embedded mode a limit is per process")
    first = RedisLimitStore(redis.asyncio.Redis.from_url(settings.REDIS_URL))
    second = RedisLimitStore(redis.asyncio.Redis.from_url(settings.REDIS_URL))
    charge = [Charge("requests", ratelimit.counter_name(key_info(7), "requests"), 3, 1)]

    outcomes = [(await store.charge(charge)).allowed for store in (first, second, first, second)]

    assert outcomes == [True, True, True, False]


# --- through the HTTP API -----------------------------------------------------------------


@pytest.fixture
def limited_key(live_gateway):
    """A key whose policy's one tier is the local upstream; set its limits, then call `client`."""
    with running_upstream() as upstream:
        endpoint = openai_endpoint("limits-cheap", upstream.base_url, "cheap", max_tokens=2_000)
        key, plaintext = make_key(make_policy("limited", [(endpoint, 0.0)]))
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=plaintext, max_retries=0)
        yield key, client


def ask(client: openai.OpenAI, n: int = 0, **fields: object):
    """Prompt `n`: "Hello #n", two estimated tokens; each `n` its own (a cache hit uses no tokens)."""
    return client.chat.completions.with_raw_response.create(
        model="limited", messages=[{"role": "user", "content": f"Hello #{n}"}], **fields
    )


@pytest.mark.live
def test_over_its_requests_per_minute_a_key_gets_openais_429_with_retry_after(limited_key):
    key, client = limited_key
    key.requests_per_minute = 2
    key.save()

    first, second = ask(client), ask(client)
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client)

    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" not in first.headers
    error = refused.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert "Limit 2" in error.message
    assert int(error.response.headers["Retry-After"]) >= 1
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.live
def test_tokens_are_charged_at_the_estimate_then_corrected_to_the_usage_of_the_answer(limited_key):
    key, client = limited_key
    key.tokens_per_minute = 100  # 1.67 tokens a second come back
    key.save()
    # "Hello #n": 2 + 4 estimated prompt tokens, plus max_tokens: 66 of the minute's 100.

    first = ask(client, 1, max_tokens=60)
    # The answer used 26 tokens, so another 66 fit; without the correction they would not.
    second = ask(client, 2, max_tokens=60)
    # Both corrected to 26: 52 + 66 do not fit.
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client, 3, max_tokens=60)

    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    assert 34 <= int(first.headers["x-ratelimit-remaining-tokens"]) < 100
    assert second.headers["x-ratelimit-limit-tokens"] == "100"
    assert refused.value.type == "tokens"
    assert refused.value.code == "rate_limit_exceeded"


@pytest.mark.live
def test_a_streamed_answer_corrects_the_token_charge_too(limited_key):
    key, client = limited_key
    key.tokens_per_minute = 100
    key.save()

    for n in (1, 2):  # the second fits only once the first is corrected to its 26 tokens
        stream = client.chat.completions.create(
            model="limited", messages=[{"role": "user", "content": f"Hello #{n}"}], max_tokens=60, stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="limited", messages=[{"role": "user", "content": "Hello #3"}], max_tokens=60, stream=True
        )
