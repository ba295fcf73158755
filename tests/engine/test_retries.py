"""Calling one tier: retries with backoff, deadlines, breakers, fallback endpoints, billed failures."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from routing.engine import Outcome, Tier, attempt_cost, run_cascade
from routing.engine.breaker import MemoryBreakers
from routing.engine.errors import (
    ProviderBadRequest,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.tiers import Backoff
from routing.engine.types import Attempt, EndpointSnapshot
from testing.fakes import (
    FakeClock,
    FakeProvider,
    FixedScorer,
    HangingProvider,
    SleepLog,
    chat,
    completion,
    endpoint,
    policy,
    tier,
)

CHEAP = completion("cheap answer", input_tokens=1000, output_tokens=200)
STRONG = completion("strong answer", input_tokens=1000, output_tokens=400)
STRONG_TIER = tier(1)


def backoff(sleep: SleepLog, jitter: float = 0.5) -> Backoff:
    return Backoff(base_s=0.1, cap_s=2.0, sleep=sleep, jitter=lambda: jitter)


def first(ep: EndpointSnapshot) -> Tier:
    return Tier(0, ep, 0.7)


async def route(
    ep: EndpointSnapshot,
    *script: object,
    sleep: SleepLog | None = None,
    breakers: MemoryBreakers | None = None,
    extra: dict[int, object] | None = None,
    clock: FakeClock | None = None,
):
    """Run a two-tier cascade whose first tier is `ep` playing `script`; the strong tier answers."""
    cheap = FakeProvider(ep, *script, clock=clock, seconds=0.0 if clock is None else 0.5)  # type: ignore[arg-type]
    providers = {ep.id: cheap, 2: FakeProvider(STRONG_TIER.endpoint, STRONG), **(extra or {})}
    result = await run_cascade(
        chat(),
        policy(first(ep), STRONG_TIER),
        providers,  # type: ignore[arg-type]
        FixedScorer({}),
        breakers=breakers,
        backoff=backoff(sleep or SleepLog()),
        **({} if clock is None else {"clock": clock}),
    )
    return result, cheap


# --- Retries --------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_jitters_below_it() -> None:
    top = Backoff(base_s=0.1, cap_s=2.0, jitter=lambda: 1.0)
    none = Backoff(base_s=0.1, cap_s=2.0, jitter=lambda: 0.0)
    half = Backoff(base_s=0.1, cap_s=2.0, jitter=lambda: 0.5)

    assert [top.delay_s(n) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert [half.delay_s(n) for n in range(3)] == pytest.approx([0.05, 0.1, 0.2])
    assert none.delay_s(3) == 0.0


def test_a_retry_after_is_a_floor_and_one_past_the_cap_is_not_waited_for() -> None:
    quick = Backoff(base_s=0.1, cap_s=2.0, jitter=lambda: 0.0)

    assert quick.delay_s(0, retry_after_s=1.5) == 1.5
    assert quick.delay_s(0, retry_after_s=2.5) is None


async def test_a_timeout_is_retried_after_growing_waits_then_the_tier_falls_through() -> None:
    sleep = SleepLog()
    result, cheap = await route(endpoint(1, max_retries=3), ProviderTimeout("slow"), sleep=sleep)

    assert len(cheap.calls) == 4
    assert sleep.waits == pytest.approx([0.05, 0.1, 0.2])
    failed, accepted = result.attempts
    assert (failed.outcome, failed.error_kind, failed.tier) == (Outcome.FAILED, "timeout", 0)
    assert accepted.model == "model-2"


async def test_a_retry_that_succeeds_answers_from_the_same_tier_and_its_latency_spans_every_try() -> None:
    clock = FakeClock()
    sleep = SleepLog(clock)
    result, cheap = await route(endpoint(1, max_retries=2), ProviderUnavailable("503"), CHEAP, sleep=sleep, clock=clock)

    assert len(cheap.calls) == 2
    (accepted,) = result.attempts
    assert (accepted.outcome, accepted.model) == (Outcome.ACCEPTED, "model-1")
    assert accepted.latency_ms == pytest.approx((0.5 + 0.05 + 0.5) * 1000)
    assert result.completion is CHEAP


@pytest.mark.parametrize(
    "error",
    [ProviderBadRequest("too long"), ProviderRefused("filtered"), ProviderMisconfigured("no key"), RuntimeError("bug")],
)
async def test_errors_that_are_not_retryable_are_not_retried(error: Exception) -> None:
    sleep = SleepLog()
    result, cheap = await route(endpoint(1, max_retries=3), error, sleep=sleep)

    assert len(cheap.calls) == 1
    assert sleep.waits == []
    assert result.attempts[0].outcome is Outcome.FAILED


async def test_a_provider_retry_after_is_waited_for() -> None:
    sleep = SleepLog()
    _, cheap = await route(endpoint(1, max_retries=1), ProviderUnavailable("429", retry_after_s=1.5), sleep=sleep)

    assert len(cheap.calls) == 2
    assert sleep.waits == [1.5]


async def test_an_endpoint_that_asks_for_a_long_wait_is_not_retried() -> None:
    sleep = SleepLog()
    result, cheap = await route(endpoint(1, max_retries=3), ProviderUnavailable("429", retry_after_s=30), sleep=sleep)

    assert len(cheap.calls) == 1
    assert sleep.waits == []
    assert result.completion is STRONG


async def test_a_call_past_the_endpoints_timeouts_is_cut_off_as_a_timeout() -> None:
    quick = endpoint(1, connect_timeout_s=0.01, read_timeout_s=0.02)
    hanging = HangingProvider(quick)
    result, _ = await route(quick, CHEAP, extra={1: hanging})

    failed = result.attempts[0]
    assert (failed.error_kind, failed.error) == ("timeout", "model-1: no answer within 0.03s")
    assert result.completion is STRONG


# --- Breakers -------------------------------------------------------------------------


async def opened(board: MemoryBreakers, ep: EndpointSnapshot) -> MemoryBreakers:
    for _ in range(ep.breaker_min_requests):
        await board.record(ep, False)
    assert not await board.allow(ep)
    return board


async def test_every_try_counts_towards_the_breaker_and_an_open_breaker_skips_the_tier() -> None:
    ep = endpoint(1, max_retries=2, breaker_min_requests=3, breaker_failure_rate=1.0)
    board = MemoryBreakers(FakeClock())
    await route(ep, ProviderTimeout("slow"), breakers=board)

    result, cheap = await route(ep, CHEAP, breakers=board)

    assert cheap.calls == []
    skipped, accepted = result.attempts
    assert (skipped.outcome, skipped.error_kind, skipped.error) == (
        Outcome.FAILED,
        "breaker_open",
        "circuit breaker open for model-1",
    )
    assert (skipped.latency_ms, skipped.cost, skipped.tier) == (0.0, Decimal(0), 0)
    assert accepted.model == "model-2"


async def test_retries_stop_once_the_breaker_opens() -> None:
    ep = endpoint(1, max_retries=5, breaker_min_requests=2, breaker_failure_rate=1.0)
    sleep = SleepLog()
    _, cheap = await route(ep, ProviderUnavailable("503"), sleep=sleep, breakers=MemoryBreakers(FakeClock()))

    assert len(cheap.calls) == 2
    assert len(sleep.waits) == 1


async def test_bad_requests_and_refusals_are_not_the_endpoints_failures() -> None:
    ep = endpoint(1, breaker_min_requests=1, breaker_failure_rate=0.0)
    board = MemoryBreakers(FakeClock())
    await route(ep, ProviderBadRequest("context too long"), breakers=board)
    await route(ep, ProviderRefused("content filter"), breakers=board)

    assert await board.allow(ep)
    await route(ep, ProviderUnavailable("503"), breakers=board)
    assert not await board.allow(ep)


async def test_a_half_open_breaker_lets_one_trial_through_and_its_success_closes_it() -> None:
    clock = FakeClock()
    ep = endpoint(1, breaker_min_requests=1, breaker_open_s=30)
    board = await opened(MemoryBreakers(clock), ep)
    clock.advance(30)

    result, cheap = await route(ep, CHEAP, breakers=board)

    assert len(cheap.calls) == 1
    assert result.completion is CHEAP
    assert await board.allow(ep) and await board.allow(ep)  # closed: everyone may call


async def test_an_open_breaker_sends_the_tier_to_its_fallback_at_the_fallbacks_prices() -> None:
    fallback = endpoint(10, input_price="3.00", output_price="6.00")
    ep = endpoint(1, breaker_min_requests=1, fallback=fallback)
    board = await opened(MemoryBreakers(FakeClock()), ep)
    stand_in = FakeProvider(fallback, CHEAP)

    result, cheap = await route(ep, CHEAP, breakers=board, extra={10: stand_in})

    assert cheap.calls == [] and stand_in.calls == [1024]
    (accepted,) = result.attempts
    assert (accepted.tier, accepted.endpoint_id, accepted.model) == (0, 10, "model-10")
    assert accepted.cost == attempt_cost(fallback, 1000, 200) == Decimal("0.0042")
    assert result.cost == accepted.cost


async def test_a_fallback_whose_own_breaker_is_open_is_skipped_too() -> None:
    fallback = endpoint(10, breaker_min_requests=1)
    ep = endpoint(1, breaker_min_requests=1, fallback=fallback)
    board = await opened(await opened(MemoryBreakers(FakeClock()), fallback), ep)
    stand_in = FakeProvider(fallback, CHEAP)

    result, _ = await route(ep, CHEAP, breakers=board, extra={10: stand_in})

    assert stand_in.calls == []
    assert result.attempts[0].error == "circuit breaker open for model-1 and its fallback model-10"
    assert result.completion is STRONG


async def test_a_fallback_this_worker_has_no_provider_for_is_skipped() -> None:
    ep = endpoint(1, breaker_min_requests=1, fallback=endpoint(10))
    board = await opened(MemoryBreakers(FakeClock()), ep)

    result, _ = await route(ep, CHEAP, breakers=board)

    assert [a.error_kind for a in result.attempts] == ["breaker_open", ""]


async def test_without_breakers_every_endpoint_is_called() -> None:
    ep = endpoint(1, breaker_min_requests=1)
    await opened(MemoryBreakers(FakeClock()), ep)

    result, cheap = await route(ep, CHEAP, breakers=None)

    assert len(cheap.calls) == 1
    assert result.completion is CHEAP


# --- What failed tries cost -----------------------------------------------------------


async def test_a_refusal_the_provider_billed_costs_its_tokens_at_the_tiers_prices() -> None:
    ep = endpoint(1, input_price="1.00", output_price="2.00")
    result, _ = await route(ep, ProviderRefused("content filter", input_tokens=1000, output_tokens=20))

    refused, accepted = result.attempts
    assert (refused.outcome, refused.error_kind) == (Outcome.FAILED, "refused")
    assert (refused.input_tokens, refused.output_tokens) == (1000, 20)
    assert refused.cost == attempt_cost(ep, 1000, 20) == Decimal("0.00104")
    assert result.cost == refused.cost + accepted.cost


async def test_usage_billed_for_a_failed_try_is_added_to_the_answer_of_the_retry() -> None:
    ep = endpoint(1, max_retries=1)
    broken = ProviderUnavailable("stream broke", input_tokens=1000, output_tokens=50)
    result, _ = await route(ep, broken, CHEAP)

    (accepted,) = result.attempts
    assert (accepted.input_tokens, accepted.output_tokens) == (2000, 250)
    assert accepted.cost == attempt_cost(ep, 2000, 250)


# --- Progress -------------------------------------------------------------------------


async def test_a_cancelled_cascade_leaves_the_attempts_already_made_in_progress() -> None:
    strong = HangingProvider(STRONG_TIER.endpoint)
    providers = {1: FakeProvider(tier(0).endpoint, CHEAP), 2: strong}
    progress: list[Attempt] = []
    task = asyncio.create_task(
        run_cascade(chat(), policy(tier(0), STRONG_TIER), providers, FixedScorer({}, default=0.1), progress=progress)
    )
    await strong.entered.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(a.model, a.outcome, a.cost) for a in progress] == [
        ("model-1", Outcome.ESCALATED, attempt_cost(tier(0).endpoint, 1000, 200))
    ]
