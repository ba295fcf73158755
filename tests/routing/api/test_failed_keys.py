"""Guessing API keys: too many failed keys from one address are answered 429 (routing/limits/failed_keys.py)."""

from __future__ import annotations

import time

import pytest
import redis.asyncio
import time_machine

from common import redis as shared_redis
from routing.limits import failed_keys
from testing.factories import make_key, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db

URL = "/v1/models"


@pytest.fixture
def good_key() -> str:
    mixtral, gpt4 = replay_endpoints()
    _, plaintext = make_key(make_policy("demo", [(mixtral, 0.0), (gpt4, 1.0)]))
    return plaintext


@pytest.fixture
def limit(settings) -> int:
    settings.CASCADEOPS_FAILED_KEY_LIMIT = 5
    return 5


def get(client, key: str | None, address: str = "127.0.0.1"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.get(URL, REMOTE_ADDR=address, **headers)


def test_three_hundred_wrong_keys_meet_a_429_with_the_default_settings(client) -> None:
    statuses = [get(client, f"co-wrong-{i}").status_code for i in range(300)]

    assert 429 in statuses
    assert statuses.index(429) == 20  # CASCADEOPS_FAILED_KEY_LIMIT's default


def test_past_the_limit_a_wrong_key_gets_an_openai_429_with_retry_after(client, limit) -> None:
    for _ in range(limit):
        assert get(client, "co-wrong").status_code == 401

    response = get(client, "co-wrong")

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"
    assert "invalid API key" in error["message"]
    assert 1 <= int(response["Retry-After"]) <= 300


def test_a_locked_out_address_is_refused_even_with_a_good_key(client, limit, good_key) -> None:
    for _ in range(limit + 1):
        get(client, "co-wrong")

    assert get(client, good_key).status_code == 429


def test_other_addresses_are_not_affected(client, limit, good_key) -> None:
    for _ in range(limit + 1):
        get(client, "co-wrong", address="203.0.113.9")

    assert get(client, "co-wrong", address="203.0.113.10").status_code == 401
    assert get(client, good_key, address="203.0.113.10").status_code == 200


def test_ipv6_clients_are_counted_per_slash_64(client, limit) -> None:
    for i in range(limit):
        get(client, "co-wrong", address=f"2001:db8:1:2::{i + 1}")

    assert get(client, "co-wrong", address="2001:db8:1:2:ffff::1").status_code == 429
    assert get(client, "co-wrong", address="2001:db8:1:3::1").status_code == 401


def test_a_request_without_a_key_guesses_nothing_and_is_not_counted(client, limit) -> None:
    for _ in range(limit * 2):
        assert get(client, None).status_code == 401

    assert get(client, "co-wrong").status_code == 401


def test_good_keys_never_touch_the_failure_store(client, limit, good_key, monkeypatch) -> None:
    class Untouchable:
        async def count(self, client: str, window_s: int) -> tuple[int, float]:
            raise AssertionError("a good key must cost no failure-store round trip")

    monkeypatch.setattr(failed_keys, "failure_store", Untouchable)

    for _ in range(limit * 3):
        assert get(client, good_key).status_code == 200


async def test_the_in_process_window_ends_and_counting_starts_again() -> None:
    store = failed_keys.LocalFailureStore()
    with time_machine.travel(time.time(), tick=False) as traveller:
        assert await store.count("198.51.100.1", 60) == (1, 60.0)
        assert (await store.count("198.51.100.1", 60))[0] == 2
        traveller.shift(61)
        assert await store.count("198.51.100.1", 60) == (1, 60.0)


def test_while_redis_is_unreachable_this_worker_counts_on_its_own(client, limit, monkeypatch) -> None:
    unreachable = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    monkeypatch.setattr(shared_redis, "async_client", lambda: unreachable)
    monkeypatch.setattr(failed_keys, "failure_store", lambda: failed_keys._redis_store)

    statuses = [get(client, "co-wrong", address="198.51.100.9").status_code for _ in range(limit + 1)]

    assert statuses == [401] * limit + [429]
