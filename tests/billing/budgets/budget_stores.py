"""What the budget-store tests share: both stores as parameters, and a way to call them."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from billing.budgets.store import DatabaseBudgetStore, RedisBudgetStore


def stores() -> list[Any]:
    """The database store always; the Redis store when `REDIS_URL` is set (CI sets it)."""
    marks = [] if settings.REDIS_URL else [pytest.mark.skip(reason="REDIS_URL is not set (CI sets it)")]
    return [pytest.param(DatabaseBudgetStore, id="database"), pytest.param(RedisBudgetStore, id="redis", marks=marks)]


def run(coroutine_function: Any, *args: Any) -> Any:
    return async_to_sync(coroutine_function)(*args)
