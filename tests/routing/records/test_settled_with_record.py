"""Production mode: the record, the budget settle and the token correction share one round trip to Redis.

Each step is the script it is alone; what the pipeline could not settle is settled the usual
way, and never twice.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from billing.budgets.rules import to_units
from billing.budgets.store import budget_rules_load, budget_store
from billing.models import Budget
from common.redis import sync_client
from routing.config.snapshots import config_cache
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, replay_endpoints

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL is not set (CI sets it)")

URL = "/v1/chat/completions"


@pytest.fixture
def budgeted(db, budget_keys_cleared):
    mixtral, gpt4 = replay_endpoints()
    _, key = make_key(make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)], cache_ttl_s=0), team="growth")
    Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=Decimal("100"))
    config_cache.invalidate()
    return key


def ask(client, key: str, **options):
    body = {"model": "demo", "messages": [{"role": "user", "content": replay_prompts()[0]}], **options}
    return client.post(URL, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def usage():
    [counted] = async_to_sync(budget_store().usage)(budget_rules_load(), timezone.now())
    return counted


def cost_units(response) -> int:
    """The request's cost as the counter adds it: in the store's micro-dollars."""
    return to_units(Decimal(response["x-cascadeops-cost-usd"]))


def recorded_ids() -> set[str]:
    entries = sync_client().xrange(settings.CASCADEOPS_RECORD_STREAM)
    return {json.loads(fields[b"p"])["id"] for _, fields in entries}


def test_it_settles_the_hold_once_with_the_record(client, budgeted):
    response = ask(client, budgeted)

    assert response.status_code == 200
    assert response["x-cascadeops-request-id"] in recorded_ids()
    counted = usage()
    assert (to_units(counted.spent), counted.held) == (cost_units(response), 0)


def test_a_settle_script_redis_lost_is_settled_the_usual_way_once(client, budgeted):
    first = ask(client, budgeted)
    sync_client().script_flush()  # what a Redis restart does: the pipeline's EVALSHA finds no script

    second = ask(client, budgeted)

    assert second.status_code == 200
    counted = usage()
    assert (to_units(counted.spent), counted.held) == (cost_units(first) + cost_units(second), 0)


def test_a_token_correction_redis_lost_is_made_the_usual_way(client, db):
    mixtral, _ = replay_endpoints()
    api_key, key = make_key(make_policy("demo", [(mixtral, 0.0)], cache_ttl_s=0), tokens_per_minute=650)
    config_cache.invalidate()
    # Key ids restart with each test database; Redis keeps the last run's counters.
    for counter in sync_client().scan_iter(f"cascadeops:ratelimit:{api_key.id}:*"):
        sync_client().delete(counter)
    sync_client().script_flush()  # the pipeline's EVALSHA of the correction finds no script

    first = ask(client, key, max_tokens=400)
    # Charged at its estimate (prompt + 400 = 474), then corrected to what it used, which
    # leaves room for a second estimate; uncorrected, 2 × 474 would not fit in 650.
    second = ask(client, key, max_tokens=400)

    assert (first.status_code, second.status_code) == (200, 200), second.content
    assert first.json()["usage"]["total_tokens"] + 474 <= 650
