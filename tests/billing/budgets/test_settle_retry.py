"""A settle the budget store refused is tried again, so the request's spend still reaches its counter.

The store is the mode's real one (Redis with `REDIS_URL`, else the database), wrapped so
that its first settles fail the way an unreachable store does.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.budgets.rules import Admitted, BudgetRule, BudgetStore, Hold, Usage, WorstCase
from billing.budgets.store import budget_rules_load, budget_store
from billing.models import Budget
from routing.config.snapshots import load_policies
from routing.engine.types import ChatRequest, Message
from routing.limits import budget_holds as budgeting
from routing.limits.budget_holds import budget_hold
from testing.factories import make_policy, replay_endpoints

CHAT = ChatRequest(messages=(Message(role="user", content="What is 2 + 2?"),), max_tokens=64)
ACTUAL = Decimal("0.25")


class FlakyStore:
    """`store`, except that its first `failures` settles raise as a store that cannot be reached does."""

    def __init__(self, store: BudgetStore, failures: int) -> None:
        self.store, self.failures, self.settles = store, failures, 0

    async def usage(self, rules: list[BudgetRule], now: datetime) -> list[Usage]:
        return await self.store.usage(rules, now)

    async def reserve(self, rules: list[BudgetRule], amount: Decimal, hold_id: str, now: datetime) -> Hold:
        return await self.store.reserve(rules, amount, hold_id, now)

    async def admit(self, rules: list[BudgetRule], worst: WorstCase, hold_id: str, now: datetime) -> Admitted:
        return await self.store.admit(rules, worst, hold_id, now)

    async def settle(self, hold: Hold, actual: Decimal, now: datetime) -> None:
        self.settles += 1
        if self.settles <= self.failures:
            raise ConnectionError("the budget store cannot be reached")
        await self.store.settle(hold, actual, now)


@pytest.fixture
def flaky(request, monkeypatch, transactional_db, budget_keys_cleared) -> FlakyStore:
    monkeypatch.setattr(budgeting, "SETTLE_RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    store = FlakyStore(budget_store(), failures=request.param)
    monkeypatch.setattr(budgeting, "budget_store", lambda: store)
    return store


def spend_once_settled(store: FlakyStore) -> Usage:
    """Hold, answer at `ACTUAL`, leave the hold; then wait for the retries and read the counter."""
    mixtral, gpt4 = replay_endpoints()
    make_policy("settled", [(mixtral, 0.0), (gpt4, 1.0)])
    Budget.objects.create(name="team", scope="team", scope_value="growth", limit=Decimal("100"))
    rules, (policy,) = budget_rules_load(), load_policies()

    async def scenario() -> Usage:
        async with budget_hold(rules, policy, CHAT, "flaky-hold") as plan:
            plan.actual = ACTUAL
        await asyncio.gather(*list(budgeting._settles_retrying))
        (usage,) = await store.store.usage(rules, timezone.now())
        return usage

    return async_to_sync(scenario)()


@pytest.mark.parametrize("flaky", [2], indirect=True)
def test_a_settle_the_store_refused_reaches_the_counter_on_a_retry(flaky):
    usage = spend_once_settled(flaky)

    assert flaky.settles == 3  # the settle, a failed retry, the retry that went through
    assert (usage.spent, usage.held) == (ACTUAL, 0)


@pytest.mark.parametrize("flaky", [10], indirect=True)
def test_a_settle_that_never_goes_through_gives_up_loudly(flaky, caplog):
    with caplog.at_level(logging.ERROR, logger="routing.limits.budget_holds"):
        usage = spend_once_settled(flaky)

    assert flaky.settles == 4  # the settle and its three retries
    assert usage.spent == 0
    assert "Gave up settling hold flaky-hold at $0.25" in caplog.text
