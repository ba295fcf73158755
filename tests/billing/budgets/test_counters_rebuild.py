"""A budget counter the shared store lost is rebuilt from the ledger, never restarted at $0.

Production Redis keeps nothing on disk, so a restart (or an eviction) loses the counters;
in embedded mode a deleted counter row is the same loss. Either way the next reservation
must see the spend the ledger has recorded for the period.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from billing.budgets.rules import BudgetExhausted
from billing.models import Budget, BudgetCounter, LedgerEntry
from common.redis import sync_client
from routing.config.snapshots import config_cache, load_policies
from routing.engine.costing import worst_case_cost
from routing.engine.types import ChatRequest, Message
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, replay_endpoints
from tests.billing.budgets.budget_stores import run, stores
from tests.conftest import flush_records

# Mid-month of the real month: the counters' key lifetimes, counted from it, are real ones.
NOW = timezone.now().replace(day=15, hour=12)


def lose_counters() -> None:
    """What a Redis restart without persistence does (or, in embedded mode, a deleted row)."""
    if settings.REDIS_URL:
        client = sync_client()
        for key in client.scan_iter("cascadeops:budget:*"):
            client.delete(key)
    BudgetCounter.objects.all().delete()


def flushed(cost: str, day: object = None) -> None:
    """A ledger row as the flusher writes it for team growth's requests."""
    LedgerEntry.objects.create(
        day=day or NOW.date(), team="growth", app="bot", policy="demo", model="m", cost=Decimal(cost)
    )


@pytest.mark.parametrize("store_class", stores())
def test_the_next_reservation_after_a_loss_sees_the_ledgers_spend(store_class, rule):
    store = store_class()
    hold = run(store.reserve, [rule], Decimal("0.40"), "a", NOW)
    run(store.settle, hold, Decimal("0.40"), NOW)
    flushed("0.40")

    lose_counters()

    with pytest.raises(BudgetExhausted) as caught:
        run(store.reserve, [rule], Decimal("0.70"), "b", NOW)
    assert caught.value.usage.spent == Decimal("0.40")
    run(store.reserve, [rule], Decimal("0.60"), "c", NOW)
    usage = run(store.usage, [rule], NOW)[0]
    assert (usage.spent, usage.held) == (Decimal("0.40"), Decimal("0.60"))


@pytest.mark.parametrize("store_class", stores())
def test_a_settlement_after_a_loss_adds_to_the_ledgers_spend(store_class, rule):
    store = store_class()
    flushed("0.50")
    hold = run(store.reserve, [rule], Decimal("0.30"), "a", NOW)

    lose_counters()
    run(store.settle, hold, Decimal("0.20"), NOW)

    assert run(store.usage, [rule], NOW)[0].spent == Decimal("0.70")


@pytest.mark.parametrize("store_class", stores())
def test_a_counter_at_zero_is_kept_not_rebuilt_on_every_use(store_class, rule):
    store = store_class()
    hold = run(store.reserve, [rule], Decimal("0.10"), "a", NOW)
    run(store.settle, hold, Decimal("0"), NOW)  # a cache hit: $0 spent, legitimately
    # The ledger is read when the counter is created, not again: a row landing now
    # (here, one the counter never saw) does not move it.
    flushed("0.90")

    assert run(store.usage, [rule], NOW)[0].spent == Decimal("0")
    run(store.reserve, [rule], Decimal("0.95"), "b", NOW)


@pytest.mark.parametrize("store_class", stores())
def test_only_the_periods_own_ledger_rows_rebuild_it(store_class, rule):
    store = store_class()
    run(store.reserve, [rule], Decimal("0.10"), "a", NOW)
    flushed("0.25")
    flushed("5.00", day=NOW.date().replace(day=1) - timedelta(days=1))  # last month

    lose_counters()

    assert run(store.usage, [rule], NOW)[0].spent == Decimal("0.25")


# --- through the routing API and the real flusher ---------------------------------------

URL = "/v1/chat/completions"
PROMPT = replay_prompts()[0]


def ask(client, key: str):
    body = {"model": "demo", "messages": [{"role": "user", "content": PROMPT}]}
    return client.post(URL, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_a_gateway_that_lost_its_counters_still_rejects_past_the_limit(client, db, budget_keys_cleared):
    mixtral, gpt4 = replay_endpoints()
    # Pricier tiers, so one request's cost dwarfs the limit's 4-decimal rounding; both by
    # the same factor, so selection (which ranks cost on a log scale) still starts on Mixtral.
    for endpoint in (mixtral, gpt4):
        endpoint.input_price_per_m *= 100
        endpoint.output_price_per_m *= 100
        endpoint.save()
    # No response cache: every request here must reach a model and cost money.
    _, key = make_key(make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)], cache_ttl_s=0), team="growth")
    actual = Decimal(ask(client, key)["x-cascadeops-cost-usd"])
    worst = worst_case_cost(load_policies()[0], ChatRequest(messages=(Message("user", PROMPT),)))
    # Room for one worst case and half a request more: after two requests, none fits.
    limit = (worst + actual / 2).quantize(Decimal("0.0001"), rounding=ROUND_FLOOR)
    Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=limit)
    config_cache.invalidate()  # as the config version's bump does after commit
    assert ask(client, key).status_code == 200
    flush_records()
    assert LedgerEntry.objects.filter(day=timezone.localdate()).count() > 0

    lose_counters()

    # Restarted at $0, the counter would let one more worst case in.
    assert ask(client, key).status_code == 429
