"""Fixtures the billing tests share."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.budgets.rules import BudgetRule
from billing.models import Budget


@pytest.fixture
def rule(db: None, budget_keys_cleared: None) -> BudgetRule:
    """Team growth's $1.00 monthly budget, blocking at its limit."""
    row = Budget.objects.create(name="team", scope="team", scope_value="growth", limit=Decimal("1.00"))
    return BudgetRule(row.id, row.name, row.scope, row.scope_value, row.period, row.limit, 80, "alert", 0.5, "reject")
