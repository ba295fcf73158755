"""`/metrics` through the real HTTP server: what it counts, that Prometheus can parse it, who may read it.

Every worker process counts into one directory that outlives test runs, so each test
reads the exposition before and after and checks the difference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from routing import metrics
from routing.api.prometheus import address_allowed
from routing.models import RequestRecord
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import running_upstream
from tests.conftest import flush_records, subprocess_env

ROOT = Path(__file__).resolve().parents[3]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels (raises if Prometheus could not parse it)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(gateway_url: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{gateway_url}/metrics", headers=headers, timeout=10)


@pytest.fixture
def routed(live_gateway):
    """A policy (with a name of its own) whose one tier is the local upstream, and a client for it."""
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    with running_upstream() as upstream:
        endpoint = openai_endpoint(f"{name}-cheap", upstream.base_url, "cheap")
        _, plaintext = make_key(make_policy(name, [(endpoint, 0.0)]))
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=plaintext, max_retries=0)
        yield name, client, live_gateway.url


@pytest.mark.live
def test_routed_requests_show_up_in_an_exposition_prometheus_parses(routed):
    policy, client, url = routed
    before = parse(scrape(url).text)

    for n in range(3):
        client.chat.completions.create(model=policy, messages=[{"role": "user", "content": f"What is {n} + 2?"}])
    response = scrape(url)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    after = parse(response.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cascadeops_requests_total", policy=policy, status="answered", cache="none") == 3
    assert delta("cascadeops_tokens_total", policy=policy, direction="output") == 3 * 6
    assert delta("cascadeops_tier_latency_seconds_count", policy=policy, tier="0", model=f"{policy}-cheap") == 3
    route = "/v1/chat/completions"
    assert delta("cascadeops_http_responses_total", route=route, code="200") >= 3
    assert delta("cascadeops_gateway_latency_seconds_count", route=route) >= 3
    flush_records()
    recorded = sum((r.cost for r in RequestRecord.objects.filter(policy_name=policy)), Decimal(0))
    assert recorded > 0
    assert delta("cascadeops_cost_usd_total", policy=policy) == pytest.approx(float(recorded), rel=1e-12)


@pytest.mark.live
def test_refused_requests_are_counted_by_status(routed):
    _, _, url = routed
    before = parse(scrape(url).text)

    httpx.post(f"{url}/v1/chat/completions", json={"messages": []}, headers={"Authorization": "Bearer nope"})

    after = parse(scrape(url).text)
    labels = {"route": "/v1/chat/completions", "code": "401"}
    assert value(after, "cascadeops_http_responses_total", **labels) - value(
        before, "cascadeops_http_responses_total", **labels
    ) == pytest.approx(1)


@pytest.mark.live
def test_the_record_queue_depth_counts_records_not_yet_stored(routed):
    policy, client, url = routed
    client.chat.completions.create(model=policy, messages=[{"role": "user", "content": "Queue me"}])

    waiting = value(parse(scrape(url).text), "cascadeops_record_queue_depth")
    flush_records()
    stored = value(parse(scrape(url).text), "cascadeops_record_queue_depth")

    assert (waiting, stored) == (1, 0)


@pytest.mark.live
def test_breaker_states_are_one_gauge_per_endpoint_and_state(routed):
    policy, client, url = routed
    client.chat.completions.create(model=policy, messages=[{"role": "user", "content": "Hi"}])

    samples = parse(scrape(url).text)

    endpoint = f"{policy}-cheap"
    assert value(samples, "cascadeops_breaker_state", endpoint=endpoint, state="closed") == 1
    assert value(samples, "cascadeops_breaker_state", endpoint=endpoint, state="open") == 0
    assert ("cascadeops_breaker_state", frozenset({("endpoint", endpoint), ("state", "half_open")})) in samples


def test_every_workers_counts_are_summed_and_money_is_exact():
    """Another process counts two records; this one's exposition has them, cost to the 1e-10 dollar."""
    policy = f"other-process-{uuid.uuid4().hex[:8]}"
    payload = {
        "id": "x", "policy_name": policy, "status": "answered", "cost": "0.0000000003", "escalations": 1,
        "input_tokens": 10, "output_tokens": 5, "attempts": [{"tier": 0, "model": "m", "latency_ms": 12.5}],
    }  # fmt: skip
    script = (
        "import django, json, sys; django.setup(); from routing import metrics; "
        "payload = json.loads(sys.argv[1]); metrics.record_observed(payload); "
        "payload['cost'] = '1.2345678901'; metrics.record_observed(payload)"
    )
    subprocess.run([sys.executable, "-c", script, json.dumps(payload)], cwd=ROOT, env=subprocess_env(), check=True)

    samples = parse(metrics.exposition().decode())

    assert value(samples, "cascadeops_requests_total", policy=policy, status="answered", cache="none") == 2
    assert value(samples, "cascadeops_escalations_total", policy=policy) == 2
    assert value(samples, "cascadeops_cost_usd_total", policy=policy) == float(Decimal("1.2345678904"))
    assert not any(name.startswith("cascadeops_cost_usd_micro") for name, _ in samples)


def test_a_cost_is_split_into_whole_micro_dollars_and_the_rest():
    assert metrics.cost_units(Decimal("1.2345678901")) == (1_234_567, 8_901)
    assert metrics.cost_units(Decimal("0.0000000003")) == (0, 3)


# --- who may read it ----------------------------------------------------------------------


@pytest.mark.live
def test_only_allowed_addresses_may_read_without_a_token(live_gateway, settings):
    assert scrape(live_gateway.url).status_code == 200  # loopback, allowed by default

    settings.CASCADEOPS_METRICS_ALLOW = ["10.0.0.0/8"]
    refused = scrape(live_gateway.url)

    assert refused.status_code == 403
    assert "cascadeops_" not in refused.text


@pytest.mark.live
def test_with_a_token_configured_the_right_token_is_needed_from_elsewhere(live_gateway, settings):
    settings.CASCADEOPS_METRICS_ALLOW = []
    settings.CASCADEOPS_METRICS_TOKEN = "s3cret-scrape-token"

    missing = scrape(live_gateway.url)
    wrong = scrape(live_gateway.url, Authorization="Bearer guessed")
    right = scrape(live_gateway.url, Authorization="Bearer s3cret-scrape-token")

    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert "cascadeops_record_queue_depth" in right.text


@pytest.mark.live
def test_a_wrong_token_is_refused_even_from_an_allowed_address(live_gateway, settings):
    settings.CASCADEOPS_METRICS_TOKEN = "s3cret-scrape-token"

    assert scrape(live_gateway.url, Authorization="Bearer guessed").status_code == 401
    assert scrape(live_gateway.url).status_code == 200  # loopback, no credentials


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.1.2.3", True), ("192.168.0.1", False),
     ("fd00::1", True), ("", False), ("not-an-ip", False)],
)  # fmt: skip
def test_addresses_are_matched_against_cidrs(address, allowed):
    assert address_allowed(address, ("127.0.0.1/32", "::1/128", "10.0.0.0/8", "fd00::/8")) is allowed
