"""A key's rate limits and its budget hold, charged in one Redis script on a cache miss."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.budgets.rules import BudgetRule, Usage
from billing.budgets.store import RedisBudgetStore, budget_rules_load
from billing.models import Budget
from common.redis import sync_client
from routing.config.snapshots import KeyInfo, load_policies
from routing.engine.types import ChatRequest, Message, PolicySnapshot
from routing.exceptions import BudgetExceeded, RateLimited
from routing.limits import admission, ratelimit
from routing.limits.budget_holds import budget_hold
from routing.limits.ratelimit import RedisLimitStore
from testing.factories import make_policy, replay_endpoints

CHAT = ChatRequest(messages=(Message(role="user", content="What is 2 + 2?"),), max_tokens=64)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def needs_redis(settings: object, budget_keys_cleared: None) -> Iterator[None]:
    if not settings.REDIS_URL:  # type: ignore[attr-defined]
        pytest.skip("needs Redis: in embedded mode the limits and budgets live in two stores")

    def clear() -> None:
        for name in sync_client().scan_iter("cascadeops:ratelimit:*"):
            sync_client().delete(name)

    clear()
    yield
    clear()


def key_info(rpm: int) -> KeyInfo:
    return KeyInfo(
        id=41, prefix="co-admit", policy_id=1, team="growth", app="a", expires_at=None, revoked=False,
        requests_per_minute=rpm, tokens_per_minute=100_000,
    )  # fmt: skip


def team_budget(limit: str) -> tuple[list[BudgetRule], PolicySnapshot]:
    mixtral, gpt4 = replay_endpoints()
    make_policy("admitted", [(mixtral, 0.0), (gpt4, 1.0)])
    Budget.objects.create(name="team", scope="team", scope_value="growth", limit=Decimal(limit))
    (policy,) = load_policies()
    return budget_rules_load(), policy


def admit_and_settle(rules: list[BudgetRule], policy: PolicySnapshot, key: KeyInfo, hold_id: str) -> None:
    async def scenario() -> None:
        async with budget_hold(rules, policy, CHAT, hold_id, key=key) as plan:
            plan.actual = Decimal("0.01")

    async_to_sync(scenario)()


def usage(rules: list[BudgetRule]) -> Usage:
    (found,) = async_to_sync(RedisBudgetStore().usage)(rules, timezone.now())
    return found


def requests_left() -> int:
    admitted = ratelimit.current_admission()
    assert admitted is not None
    return next(s.remaining for s in admitted.standings if s.kind == ratelimit.REQUESTS)


@pytest.fixture
def one_script_only(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if the limits or the budgets are charged by scripts of their own."""

    async def apart(*args: object) -> None:
        raise AssertionError("charged apart, not in the admission script")

    monkeypatch.setattr(RedisLimitStore, "charge", apart)
    monkeypatch.setattr(RedisBudgetStore, "admit", apart)
    calls: list[int] = []
    script = admission._script

    def counted() -> object:
        calls.append(1)
        return script()

    monkeypatch.setattr(admission, "_script", counted)
    return calls


def test_the_limit_is_charged_and_the_budget_held_in_one_script(one_script_only):
    rules, policy = team_budget("100")
    admit_and_settle(rules, policy, key_info(rpm=5), "new-period")  # its counter is started from the ledger
    one_script_only.clear()

    async def scenario() -> tuple[int, Usage]:
        async with budget_hold(rules, policy, CHAT, "one-trip", key=key_info(rpm=5)) as plan:
            (held,) = await RedisBudgetStore().usage(rules, timezone.now())
            plan.actual = Decimal("0.01")
        return requests_left(), held

    left, held = async_to_sync(scenario)()

    assert one_script_only == [1]
    assert left == 3
    assert held.held > 0
    assert usage(rules).spent == Decimal("0.02") and usage(rules).held == 0


def test_a_request_over_its_rate_limit_holds_no_budget():
    rules, policy = team_budget("100")
    admit_and_settle(rules, policy, key_info(rpm=1), "first")

    async def refused() -> None:
        async with budget_hold(rules, policy, CHAT, "second", key=key_info(rpm=1)):
            raise AssertionError("admitted past its rate limit")

    with pytest.raises(RateLimited):
        async_to_sync(refused)()
    assert usage(rules).held == 0
    assert usage(rules).spent == Decimal("0.01")


def test_a_refused_budget_keeps_the_rate_limit_charge():
    rules, policy = team_budget("0.0000001")

    async def refused() -> None:
        async with budget_hold(rules, policy, CHAT, "too-dear", key=key_info(rpm=3)):
            raise AssertionError("admitted past its budget")

    with pytest.raises(BudgetExceeded):
        async_to_sync(refused)()
    # As when the two were charged apart: the request reached the gateway and was counted.
    assert requests_left() == 2


def test_counters_redis_lost_are_rebuilt_and_the_limit_charged_once(one_script_only):
    rules, policy = team_budget("100")
    admit_and_settle(rules, policy, key_info(rpm=5), "before")
    for name in sync_client().scan_iter("cascadeops:budget:*"):
        sync_client().delete(name)
    one_script_only.clear()

    admit_and_settle(rules, policy, key_info(rpm=5), "after")

    assert one_script_only == [1, 1]  # the run that found the counters lost, and its rerun
    assert requests_left() == 3
    assert usage(rules).held == 0


def test_when_the_script_fails_the_limits_and_budgets_are_charged_apart(monkeypatch, caplog):
    rules, policy = team_budget("100")

    def broken() -> object:
        raise redis.ConnectionError("the script's connection broke")

    monkeypatch.setattr(admission, "_script", broken)
    admit_and_settle(rules, policy, key_info(rpm=5), "apart")

    assert requests_left() == 4
    assert usage(rules).spent == Decimal("0.01")
    assert "charging the rate limits and the budgets apart" in caplog.text
