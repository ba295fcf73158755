"""A config load prices policies and finds the next price change at the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import time_machine
from django.db import connection

from billing.models import PriceBookEntry
from routing.config.snapshots import load_config
from testing.factories import make_policy, replay_endpoints

CHANGE = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_price_change_while_the_config_loads_is_still_scheduled(db):
    mixtral, gpt4 = replay_endpoints()
    make_policy("demo", [(mixtral, 0.5), (gpt4, 1.0)])
    PriceBookEntry.objects.create(endpoint=mixtral, effective_from=CHANGE, input_price_per_m=Decimal("0.10"),
                                  output_price_per_m=Decimal("0.20"))  # fmt: skip

    with time_machine.travel(CHANGE - timedelta(seconds=1), tick=False) as clock:
        moved = []

        def clock_passes_the_change_while_prices_are_read(execute, sql, params, many, context):
            if "billing_pricebookentry" in sql and not moved:
                moved.append(True)
                clock.move_to(CHANGE + timedelta(seconds=1))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(clock_passes_the_change_while_prices_are_read):
            loaded = load_config({})

    [policy] = loaded.policies
    assert policy.tiers[0].endpoint.input_price_per_m == Decimal("0.60")  # the old price, read before the change
    assert loaded.prices_change_at == CHANGE  # so the snapshots are rebuilt when it takes effect
