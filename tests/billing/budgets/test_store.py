"""Both budget stores, directly: atomic reservations, settlement, expiry, exact money."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db.models import F

from billing.budgets.rules import (
    HOLD_TTL_S,
    BudgetExhausted,
    BudgetRule,
    Requester,
    WorstCase,
    applicable,
    hold_keys,
    period_bounds,
)
from billing.budgets.store import DatabaseBudgetStore
from billing.models import BudgetReservation
from common.redis import sync_client
from tests.billing.budgets.budget_stores import run, stores

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("store_class", stores())
def test_a_reservation_that_fits_is_held_until_settled(store_class, rule):
    store = store_class()

    hold = run(store.reserve, [rule], Decimal("0.40"), "a", NOW)
    assert run(store.usage, [rule], NOW)[0].held == Decimal("0.40")

    run(store.settle, hold, Decimal("0.1234567"), NOW)
    usage = run(store.usage, [rule], NOW)[0]
    assert usage.held == 0
    # Exact in the database; Redis counts micro-dollars, rounded up, never down.
    assert Decimal("0.1234567") <= usage.spent <= Decimal("0.123457")


@pytest.mark.parametrize("store_class", stores())
def test_a_reservation_past_the_limit_fails_and_holds_nothing(store_class, rule):
    store = store_class()
    run(store.reserve, [rule], Decimal("0.70"), "a", NOW)

    with pytest.raises(BudgetExhausted) as caught:
        run(store.reserve, [rule], Decimal("0.40"), "b", NOW)

    assert caught.value.usage.held == Decimal("0.70")
    assert run(store.usage, [rule], NOW)[0].held == Decimal("0.70")


def age_holds(store_class, rule: BudgetRule, seconds: int) -> None:
    """Move every hold's expiry back, as if it had been taken `seconds` earlier.

    Redis expires holds on its own clock (TIME in the scripts), which a test cannot move.
    """
    if store_class is DatabaseBudgetStore:
        BudgetReservation.objects.update(expires_at=F("expires_at") - timedelta(seconds=seconds))
        return
    client = sync_client()
    holds = hold_keys([rule], [period_bounds(rule.period, NOW, settings.BILLING_TIME_ZONE)[0]])[1]
    for hold, entry in client.hgetall(holds).items():
        amount, expiry = entry.split()
        client.hset(holds, hold, f"{int(amount)} {int(expiry) - seconds}")


@pytest.mark.parametrize("store_class", stores())
def test_holds_of_a_dead_worker_expire(store_class, rule):
    store = store_class()
    run(store.reserve, [rule], Decimal("0.90"), "dead", NOW)

    age_holds(store_class, rule, HOLD_TTL_S + 1)
    run(store.reserve, [rule], Decimal("0.90"), "alive", NOW)

    assert run(store.usage, [rule], NOW)[0].held == Decimal("0.90")


@pytest.mark.parametrize("store_class", stores())
def test_a_new_period_starts_from_zero(store_class, rule):
    store = store_class()
    hold = run(store.reserve, [rule], Decimal("0.90"), "a", NOW)
    run(store.settle, hold, Decimal("0.90"), NOW)

    next_month = NOW + timedelta(days=10)
    assert run(store.usage, [rule], next_month)[0].spent == 0


def test_periods_follow_the_billing_time_zone():
    start, end = period_bounds("month", NOW, "America/New_York")
    assert (start.isoformat(), end.isoformat()) == ("2026-11-01T00:00:00-04:00", "2026-12-01T00:00:00-05:00")
    start, end = period_bounds("day", datetime(2026, 11, 23, 3, 0, tzinfo=UTC), "America/New_York")
    assert start.isoformat() == "2026-11-22T00:00:00-05:00"


def test_scopes_match_their_own_requests_only():
    def rule(scope: str, value: str) -> BudgetRule:
        return BudgetRule(1, "b", scope, value, "month", Decimal(1), 80, "alert", 0.5, "reject")

    who = Requester(team="growth", app="bot", api_key_prefix="co-abc", policy="demo", end_user="u1")
    rules = [rule("global", ""), rule("team", "growth"), rule("team", "other"), rule("end_user", "u1"),
             rule("end_user", ""), rule("policy", "demo"), rule("api_key", "co-abc"), rule("app", "web")]  # fmt: skip

    matched = [(r.scope, r.scope_value) for r in applicable(rules, who)]

    assert matched == [
        ("global", ""),
        ("team", "growth"),
        ("end_user", "u1"),
        ("policy", "demo"),
        ("api_key", "co-abc"),
    ]


@pytest.mark.parametrize("store_class", stores())
def test_an_admission_under_the_soft_limit_holds_the_full_worst_case(store_class, rule):
    store = store_class()
    cheap_only_rule = dataclasses.replace(rule, soft_action="cheap_only")

    admitted = run(store.admit, [cheap_only_rule], WorstCase(Decimal("0.40"), Decimal("0.10")), "a", NOW)

    assert (admitted.degrade.any, admitted.hold.amount) == (False, Decimal("0.40"))
    assert run(store.usage, [rule], NOW)[0].held == Decimal("0.40")


@pytest.mark.parametrize("store_class", stores())
def test_an_admission_past_a_cheap_only_soft_limit_holds_the_cheap_worst_case_in_the_same_step(store_class, rule):
    store = store_class()
    cheap_only_rule = dataclasses.replace(rule, soft_action="cheap_only")
    run(store.reserve, [rule], Decimal("0.85"), "a", NOW)  # past the 80% soft limit

    # The full worst case would not fit the $1.00 limit; the cheap tier's does.
    admitted = run(store.admit, [cheap_only_rule], WorstCase(Decimal("0.40"), Decimal("0.10")), "b", NOW)

    assert admitted.degrade.cheap_only
    assert admitted.hold.amount == Decimal("0.10")
    assert admitted.hold.usages[0].held == Decimal("0.95")
    assert run(store.usage, [rule], NOW)[0].held == Decimal("0.95")


@pytest.mark.parametrize("store_class", stores())
def test_an_admission_that_does_not_fit_holds_nothing_and_says_how_it_would_have_routed(store_class, rule):
    store = store_class()
    cheap_only_rule = dataclasses.replace(rule, soft_action="cheap_only")
    run(store.reserve, [rule], Decimal("0.95"), "a", NOW)

    with pytest.raises(BudgetExhausted) as caught:
        run(store.admit, [cheap_only_rule], WorstCase(Decimal("0.40"), Decimal("0.10")), "b", NOW)

    assert (caught.value.amount, caught.value.degrade.cheap_only) == (Decimal("0.10"), True)
    assert run(store.usage, [rule], NOW)[0].held == Decimal("0.95")
