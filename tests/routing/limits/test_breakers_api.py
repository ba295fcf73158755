"""Breakers, retries and fallback endpoints through the real HTTP API, against a local upstream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest

from routing.models import RequestRecord
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import running_upstream
from tests.conftest import flush_records

# testing.upstream reports these tokens for every answer.
UPSTREAM_TOKENS = 20 + 6


@pytest.fixture(autouse=True)
def breaker_prefix(settings: object) -> Iterator[None]:
    """Breakers of this test only: endpoint ids repeat across test databases."""
    prefix = f"cascadeops:test:breaker:{uuid.uuid4().hex}"
    settings.CASCADEOPS_BREAKER_PREFIX = prefix  # type: ignore[attr-defined]
    yield
    if settings.REDIS_URL:  # type: ignore[attr-defined]
        from common.redis import sync_client

        for key in sync_client().scan_iter(f"{prefix}:*"):
            sync_client().delete(key)


def ask(client: openai.OpenAI) -> dict[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="guarded", messages=[{"role": "user", "content": "Hello"}]
    )
    return dict(raw.headers)


def attempt_kinds(request_ids: list[str]) -> list[list[str]]:
    flush_records()
    records = {str(r.id): r for r in RequestRecord.objects.filter(id__in=request_ids)}
    return [[a.error_kind for a in records[i].attempts.order_by("position")] for i in request_ids]


def test_an_upstream_that_keeps_failing_opens_its_breaker_and_later_requests_skip_it(live_gateway):
    with running_upstream() as upstream:
        broken = openai_endpoint(
            "flaky", upstream.base_url, "fail-503", max_retries=1, breaker_min_requests=4, breaker_failure_rate=1.0
        )
        steady = openai_endpoint("steady", upstream.base_url, "strong")
        _, key = make_key(make_policy("guarded", [(broken, 0.5), (steady, 1.0)], cache_ttl_s=0))
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

        answers = [ask(client) for _ in range(4)]

        assert [h["x-cascadeops-model"] for h in answers] == ["steady"] * 4
        assert upstream.calls["fail-503"] == 4  # two requests, each tried and retried once
        assert upstream.calls["strong"] == 4
    kinds = attempt_kinds([h["x-cascadeops-request-id"] for h in answers])
    assert kinds == [["unavailable", ""], ["unavailable", ""], ["breaker_open", ""], ["breaker_open", ""]]


def test_while_its_breaker_is_open_a_tier_is_answered_by_its_fallback_endpoint(live_gateway):
    price = Decimal(5)
    with running_upstream() as upstream:
        backup = openai_endpoint(
            "backup", upstream.base_url, "backup", input_price_per_m=price, output_price_per_m=price
        )
        broken = openai_endpoint(
            "flaky", upstream.base_url, "fail-500", max_retries=0, breaker_min_requests=1, fallback_endpoint=backup
        )
        # Dearer than the flaky tier, so selection starts on the flaky one (docs/selection.md).
        steady = openai_endpoint("steady", upstream.base_url, "strong", input_price_per_m=10, output_price_per_m=10)
        _, key = make_key(make_policy("guarded", [(broken, 0.0), (steady, 1.0)], cache_ttl_s=0))
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

        opened, covered = ask(client), ask(client)

        assert opened["x-cascadeops-model"] == "steady"
        assert (covered["x-cascadeops-model"], covered["x-cascadeops-tier"]) == ("backup", "0")
        assert Decimal(covered["x-cascadeops-cost-usd"]) == UPSTREAM_TOKENS * price / 1_000_000
        assert (upstream.calls["fail-500"], upstream.calls["backup"]) == (1, 1)
    flush_records()
    (attempt,) = RequestRecord.objects.get(id=covered["x-cascadeops-request-id"]).attempts.all()
    assert (attempt.model, attempt.endpoint_id, attempt.outcome) == ("backup", backup.id, "accepted")
