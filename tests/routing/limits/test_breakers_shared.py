"""Circuit breakers as workers share them: through Redis with `REDIS_URL`, in-process when embedded.

"Two workers" are two `RedisBreakers` with their own connections in production mode, and
the process's one board in embedded mode (where every request is served by one process).
Breaker settings below make transitions immediate (`breaker_open_s=0`) where Redis's own
clock would otherwise have to be waited for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio
from asgiref.sync import async_to_sync
from django.utils import timezone

from routing.config.snapshots import endpoint_snapshot
from routing.engine.breaker import BreakerState, MemoryBreakers
from routing.engine.types import EndpointSnapshot
from routing.limits import breakers
from routing.limits.breakers import SUCCESS_BATCH_S, RedisBreakers, breaker_board, breaker_states
from testing.factories import make_policy, replay_endpoints
from testing.fakes import FakeClock, endpoint

# Opens when at least 4 calls in the window failed at a share of 50 % or more.
EP = endpoint(41, breaker_failure_rate=0.5, breaker_min_requests=4, breaker_window_s=30, breaker_open_s=30)
# Half-open as soon as it opened: the next call is its trial.
AT_ONCE = dataclasses.replace(EP, breaker_open_s=0)

Board = RedisBreakers | MemoryBreakers


@pytest.fixture(autouse=True)
def breaker_prefix(settings: object) -> Iterator[str]:
    """Each test gets breakers of its own (endpoint ids repeat across test databases)."""
    prefix = f"cascadeops:test:breaker:{uuid.uuid4().hex}"
    settings.CASCADEOPS_BREAKER_PREFIX = prefix  # type: ignore[attr-defined]
    yield prefix
    if settings.REDIS_URL:  # type: ignore[attr-defined]
        from common.redis import sync_client

        for key in sync_client().scan_iter(f"{prefix}:*"):
            sync_client().delete(key)


@pytest.fixture
async def two_workers(settings: object, breaker_prefix: str) -> AsyncIterator[tuple[Board, Board]]:
    """Two workers' boards: separate Redis connections, or the one in-process board."""
    if not settings.REDIS_URL:  # type: ignore[attr-defined]
        board = breaker_board()
        assert isinstance(board, MemoryBreakers)
        yield board, board
        return
    url = settings.REDIS_URL  # type: ignore[attr-defined]
    clients = [redis.asyncio.Redis.from_url(url), redis.asyncio.Redis.from_url(url)]
    # view_s=0: each call asks Redis, so what one worker did is seen by the other at once.
    yield (
        RedisBreakers(breaker_prefix, client=clients[0], view_s=0),
        RedisBreakers(breaker_prefix, client=clients[1], view_s=0),
    )
    for client in clients:
        await client.aclose()


async def record_all(board: Board, ep: EndpointSnapshot, outcomes: str) -> list[bool]:
    """Record 'o' (ok) and 'x' (failure) outcomes; what each record answered."""
    return [await board.record(ep, outcome == "o") for outcome in outcomes]


def test_the_board_is_in_redis_in_production_and_in_process_when_embedded(settings):
    board = breaker_board()

    assert board is breaker_board()
    assert isinstance(board, RedisBreakers if settings.REDIS_URL else MemoryBreakers)


async def test_it_opens_only_on_the_minimum_requests_at_the_failure_rate(two_workers):
    first, second = two_workers

    assert await record_all(first, EP, "ooooxx") == [True] * 6  # 2 of 6 failed
    assert await record_all(second, EP, "x") == [True]  # 3 of 7: under half
    assert await second.allow(EP)

    assert await record_all(second, EP, "x") == [False]  # 4 of 8: half
    assert not await first.allow(EP)


async def test_failures_older_than_the_window_are_forgotten(two_workers):
    first, second = two_workers
    one_second = dataclasses.replace(EP, breaker_window_s=1)
    await record_all(first, one_second, "xxx")

    await asyncio.sleep(1.5)  # Redis's clock cannot be moved: wait the window out (not the key's 2 s expiry)

    assert await record_all(second, one_second, "x") == [True]
    assert await record_all(second, one_second, "xxx") == [True, True, False]


async def test_a_breaker_opened_by_one_worker_refuses_calls_on_another(two_workers):
    first, second = two_workers
    await record_all(first, EP, "xxx")
    assert await second.allow(EP)  # three failures are under the minimum

    await record_all(first, EP, "x")

    assert not await second.allow(EP)
    assert await second.states([EP.id, 99]) == {EP.id: BreakerState.OPEN, 99: BreakerState.CLOSED}


async def test_only_one_worker_gets_the_half_open_trial(two_workers):
    first, second = two_workers
    await record_all(first, AT_ONCE, "xxxx")
    assert await first.states([AT_ONCE.id]) == {AT_ONCE.id: BreakerState.HALF_OPEN}

    granted = [await second.allow(AT_ONCE), await first.allow(AT_ONCE), await second.allow(AT_ONCE)]

    assert granted == [True, False, False]


async def test_a_successful_trial_closes_it_for_every_worker(two_workers):
    first, second = two_workers
    await record_all(first, AT_ONCE, "xxxx")
    assert await first.allow(AT_ONCE)

    assert await first.record(AT_ONCE, True) is True

    assert await second.allow(AT_ONCE) and await second.allow(AT_ONCE)
    assert await record_all(second, AT_ONCE, "xxx") == [True] * 3  # a fresh window


async def test_a_failed_trial_opens_it_again_for_every_worker(two_workers):
    first, second = two_workers
    await record_all(first, AT_ONCE, "xxxx")
    assert await first.allow(AT_ONCE)

    reopened = dataclasses.replace(AT_ONCE, breaker_open_s=30)
    assert await first.record(reopened, False) is False

    assert not await second.allow(reopened)
    assert await second.states([EP.id]) == {EP.id: BreakerState.OPEN}


@pytest.fixture
async def redis_clients(settings: object) -> AsyncIterator[list[redis.asyncio.Redis]]:
    """Two connections of their own, as two worker processes would have."""
    if not settings.REDIS_URL:  # type: ignore[attr-defined]
        pytest.skip("needs Redis: an embedded process has one board")
    clients = [redis.asyncio.Redis.from_url(settings.REDIS_URL) for _ in range(2)]  # type: ignore[attr-defined]
    yield clients
    for client in clients:
        await client.aclose()


async def test_a_worker_learns_that_another_opened_the_breaker_from_its_next_failure(redis_clients, breaker_prefix):
    remembering = RedisBreakers(breaker_prefix, client=redis_clients[0])  # trusts a closed state for a second
    other = RedisBreakers(breaker_prefix, client=redis_clients[1], view_s=0)
    await remembering.record(EP, True)

    await record_all(other, EP, "xxxx")

    assert await remembering.allow(EP)  # still the closed state it was told
    assert await remembering.record(EP, False) is False  # a failure is sent at once, and brings the news
    assert not await remembering.allow(EP)


async def test_successes_in_a_closed_breaker_are_sent_in_batches(redis_clients, breaker_prefix):
    clock = FakeClock()
    batching = RedisBreakers(breaker_prefix, client=redis_clients[0], clock=clock)
    other = RedisBreakers(breaker_prefix, client=redis_clients[1], view_s=0)
    await batching.record(EP, True)  # sent: nothing was known about this breaker yet
    assert await record_all(batching, EP, "oooo") == [True] * 4  # held back

    # Redis has 1 success: the 3rd failure makes 3 of 4. With the 4 held back it would be 3 of 8.
    assert await record_all(other, EP, "xxx") == [True, True, False]

    clock.advance(2 * SUCCESS_BATCH_S)
    assert await batching.record(EP, True) is False  # the batch goes out and brings the news


async def test_when_redis_is_unreachable_each_worker_keeps_its_own_breakers_and_it_is_logged_once(
    caplog, breaker_prefix
):
    unreachable = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    board = RedisBreakers(breaker_prefix, client=unreachable)
    caplog.set_level(logging.WARNING, logger="routing.limits.breakers")

    # 4 failures of 4 open this worker's own breaker, as the shared one would have opened.
    assert await record_all(board, EP, "xxxxxx") == [True, True, True, False, False, False]

    assert not await board.allow(EP)
    assert await board.states([EP.id]) == {}
    warnings = [r for r in caplog.records if r.name == "routing.limits.breakers"]
    assert len(warnings) == 1 and "each worker keeps its own" in warnings[0].getMessage()
    await unreachable.aclose()


@pytest.mark.django_db
def test_breaker_states_name_every_endpoint_a_policy_may_call(settings):
    mixtral, gpt4 = replay_endpoints()
    make_policy("guarded", [(mixtral, 0.5), (gpt4, 1.0)])
    broken = endpoint_snapshot(mixtral, timezone.now())
    opened_now = dataclasses.replace(broken, breaker_min_requests=1)

    async_to_sync(breakers.breaker_board().record)(opened_now, False)

    assert async_to_sync(breaker_states)() == {"replay-mixtral": "open", "replay-gpt-4": "closed"}
