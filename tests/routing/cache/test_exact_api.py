"""The exact-match cache through the real HTTP API and the official `openai` client.

A local OpenAI-compatible upstream (testing.upstream) stands in for the models and counts
the calls it gets, so a hit is seen not to reach it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from django.db.models import Sum

from billing.models import Budget, LedgerEntry
from billing.reports.selectors import billing_today, month_to_date_report
from routing.cache.exact import answer_store
from routing.models import ModelEndpoint, Policy, RequestAttempt, RequestRecord
from routing.records.reconcile import ledger_reconcile
from testing.factories import make_key, make_policy, openai_endpoint
from testing.net import free_port, wait_until_up
from tests.conftest import flush_records, subprocess_env

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[3]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def cached_policy(upstream) -> Policy:
    cheap = openai_endpoint("cheap", upstream.base_url, "cheap", input_price_per_m=1, output_price_per_m=2)
    strong = openai_endpoint("strong", upstream.base_url, "strong", input_price_per_m=10, output_price_per_m=30)
    # The cheap tier accepts every answer: one upstream call per request that is not a hit.
    return make_policy("cached", [(cheap, 0.0), (strong, 1.0)], cache_ttl_s=3600)


@pytest.fixture
def gateway(live_gateway, settings, cached_policy) -> openai.OpenAI:
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0  # a saved policy is seen by the next request
    _, key = make_key(cached_policy)
    return openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)


def ask(client: openai.OpenAI, messages=QUESTION, **options):
    return client.chat.completions.with_raw_response.create(model="cached", messages=messages, **options)


def test_a_repeated_request_is_answered_from_the_cache_at_no_cost(gateway, upstream):
    first, second = ask(gateway), ask(gateway)

    assert upstream.calls["cheap"] == 1  # the hit never reached the model
    assert (first.headers["x-cascadeops-cache"], second.headers["x-cascadeops-cache"]) == ("miss", "hit-exact")
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.parse().usage == first.parse().usage
    assert second.headers["x-cascadeops-model"] == "cheap" and second.headers["x-cascadeops-attempts"] == "0"
    assert Decimal(second.headers["x-cascadeops-cost-usd"]) == 0
    first_cost = Decimal(first.headers["x-cascadeops-cost-usd"])
    assert first_cost > 0 and Decimal(second.headers["x-cascadeops-cost-avoided-usd"]) == first_cost

    flush_records()
    miss = RequestRecord.objects.get(id=first.headers["x-cascadeops-request-id"])
    hit = RequestRecord.objects.get(id=second.headers["x-cascadeops-request-id"])
    assert (miss.cache, miss.cost, miss.cost_avoided) == ("", first_cost, 0)
    assert (hit.cache, hit.cost, hit.cost_avoided, hit.status) == ("exact", 0, first_cost, "answered")
    assert (hit.final_model, hit.final_tier, hit.input_tokens, hit.output_tokens) == ("cheap", 0, 0, 0)
    assert not RequestAttempt.objects.filter(record=hit).exists()
    # The baseline is computed as for any request: the strongest tier, the same tokens.
    assert hit.baseline_cost == miss.baseline_cost > first_cost


def test_the_ledger_and_the_finance_report_show_the_savings_from_the_cache(gateway):
    first = ask(gateway)
    ask(gateway)
    ask(gateway)
    flush_records()

    cost = Decimal(first.headers["x-cascadeops-cost-usd"])
    ledger = LedgerEntry.objects.aggregate(
        requests=Sum("requests"), hits=Sum("cache_hits"), avoided=Sum("cost_avoided"), cost=Sum("cost")
    )
    assert ledger == {"requests": 3, "hits": 2, "avoided": 2 * cost, "cost": cost}
    totals = month_to_date_report(today=billing_today())["totals"]
    assert totals["cache_hits"] == 2
    assert Decimal(totals["cost_avoided"]) == (2 * cost).quantize(Decimal(totals["cost_avoided"]))
    today = billing_today()
    assert ledger_reconcile(start=today, end=today + timedelta(days=1)) == []


def test_an_entry_expires_with_the_policys_ttl(gateway, upstream, cached_policy, settings, monkeypatch):
    cached_policy.cache_ttl_s = 2
    cached_policy.save()
    assert ask(gateway).headers["x-cascadeops-cache"] == "miss"
    assert ask(gateway).headers["x-cascadeops-cache"] == "hit-exact"

    wait_until_expired(settings, monkeypatch)

    assert ask(gateway).headers["x-cascadeops-cache"] == "miss"
    assert upstream.calls["cheap"] == 2


def wait_until_expired(settings, monkeypatch) -> None:
    """Past every entry's TTL: Redis's own clock, or the in-process store's clock moved on."""
    if not settings.REDIS_URL:
        store = answer_store()
        monkeypatch.setattr(store, "clock", lambda: time.monotonic() + 3600)
        return
    from common.redis import sync_client

    pattern = f"{settings.CASCADEOPS_CACHE_PREFIX}:exact:*"
    deadline = time.monotonic() + 10
    while any(sync_client().scan_iter(pattern)):
        assert time.monotonic() < deadline, "the cached answer never expired"
        time.sleep(0.1)


def test_saving_the_policy_starts_a_new_cache(gateway, upstream, cached_policy):
    ask(gateway)
    cached_policy.description = "edited"
    cached_policy.save()

    after = ask(gateway)

    assert after.headers["x-cascadeops-policy"] == "cached@2"
    assert after.headers["x-cascadeops-cache"] == "miss"
    assert ask(gateway).headers["x-cascadeops-cache"] == "hit-exact"
    assert upstream.calls["cheap"] == 2


def test_editing_an_endpoint_of_the_policy_starts_a_new_cache(gateway, upstream):
    ask(gateway)
    endpoint = ModelEndpoint.objects.get(name="strong")
    endpoint.read_timeout_s = 5.0
    endpoint.save()

    assert ask(gateway).headers["x-cascadeops-cache"] == "miss"
    assert upstream.calls["cheap"] == 2


def test_no_store_neither_reads_nor_writes_and_no_cache_only_writes(gateway, upstream):
    assert ask(gateway, extra_headers={"Cache-Control": "no-store"}).headers["x-cascadeops-cache"] == "bypass"
    assert ask(gateway).headers["x-cascadeops-cache"] == "miss"  # no-store kept nothing
    assert ask(gateway, extra_headers={"Cache-Control": "no-store"}).headers["x-cascadeops-cache"] == "bypass"
    assert upstream.calls["cheap"] == 3  # and it did not read what the second request stored

    refreshed = ask(gateway, extra_headers={"x-cascadeops-cache": "no-cache"})
    assert refreshed.headers["x-cascadeops-cache"] == "bypass"
    assert upstream.calls["cheap"] == 4
    hit = ask(gateway)
    assert hit.headers["x-cascadeops-cache"] == "hit-exact"
    assert hit.headers["x-cascadeops-request-id"] != refreshed.headers["x-cascadeops-request-id"]


def test_a_request_with_a_temperature_is_cached_too(gateway, upstream):
    ask(gateway, temperature=0.7)

    assert ask(gateway, temperature=0.7).headers["x-cascadeops-cache"] == "hit-exact"
    assert ask(gateway, temperature=0.2).headers["x-cascadeops-cache"] == "miss"
    assert upstream.calls["cheap"] == 2


def test_a_failed_request_is_never_cached(live_gateway, upstream):
    broken = openai_endpoint("broken", upstream.base_url, "fail-500", max_retries=0)
    _, key = make_key(make_policy("broken", [(broken, 1.0)]))
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="broken", messages=QUESTION)

    assert upstream.calls["fail-500"] == 2


def test_a_hit_needs_no_budget_reservation(gateway, upstream, budget_keys_cleared):
    ask(gateway)
    Budget.objects.create(name="exhausted", limit=Decimal(0))  # any new call is refused

    assert ask(gateway).headers["x-cascadeops-cache"] == "hit-exact"
    with pytest.raises(openai.RateLimitError):
        ask(gateway, messages=[{"role": "user", "content": "And of Spain?"}])


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="embedded mode has no cache to share")
def test_two_gateway_processes_share_the_cache_through_redis(gateway, upstream, live_gateway):
    port = free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "cascadeops.asgi:application", "--port", str(port),
         "--no-access-log", "--lifespan", "off", "--log-level", "warning"],
        cwd=ROOT, env=subprocess_env(),  # the same database, record stream and cache prefix
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models")
        ask(gateway)
        elsewhere = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=gateway.api_key, max_retries=0)

        assert ask(elsewhere).headers["x-cascadeops-cache"] == "hit-exact"
        assert upstream.calls["cheap"] == 1
    finally:
        other.terminate()
        other.wait(timeout=30)
