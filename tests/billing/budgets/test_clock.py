"""Holds in Redis expire on Redis's clock, so a worker whose clock is behind cannot overspend."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from billing.budgets.rules import HOLD_TTL_S, BudgetExhausted, BudgetRule
from billing.budgets.store import RedisBudgetStore
from billing.models import Budget

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL is not set (CI sets it)")
# Mid-month of the real month: both clocks below fall in one period, and the counters'
# key lifetimes (counted from these instants) are real ones.
NOW = timezone.now().replace(day=15, hour=12)


def test_a_hold_taken_by_a_worker_whose_clock_is_behind_still_counts(db, budget_keys_cleared):
    row = Budget.objects.create(name="team", scope="team", scope_value="growth", limit=Decimal("1.00"))
    rule = BudgetRule(row.id, row.name, row.scope, row.scope_value, row.period, row.limit, 80, "alert", 0.5, "reject")
    store = RedisBudgetStore()
    # Far enough behind that a hold timed by this worker's clock would be over already.
    lagging = NOW - timedelta(seconds=HOLD_TTL_S + 60)

    async_to_sync(store.reserve)([rule], Decimal("0.90"), "slow-clock", lagging)

    with pytest.raises(BudgetExhausted):
        async_to_sync(store.reserve)([rule], Decimal("0.90"), "right-clock", NOW)
