"""The spend ledger agrees with the request records, by every dimension and tag."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.utils import timezone

from billing.models import LedgerEntry, LedgerTagEntry
from routing.models import RequestAttempt, RequestRecord
from routing.providers.local import replay_prompts
from routing.records.reconcile import ledger_reconcile
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

pytestmark = pytest.mark.django_db
MIXTRAL_WRONG = next(p for p in replay_prompts() if p.startswith("Lisa and Peter are selling chocolate bars"))


@pytest.fixture
def traffic(client):
    """Eleven requests from two teams and three end users; the ones Mixtral got wrong escalate."""
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)])
    keys = {team: make_key(policy, team=team, app=f"{team}-app")[1] for team in ("growth", "support")}
    prompts = [*replay_prompts()[:10], MIXTRAL_WRONG]
    for i, prompt in enumerate(prompts):
        team = "growth" if i % 2 else "support"
        body = {"model": "demo", "messages": [{"role": "user", "content": prompt}], "user": f"user-{i % 3}",
                "metadata": {"feature": "checkout" if i < 4 else "search"}}  # fmt: skip
        response = client.post("/v1/chat/completions", json.dumps(body), "application/json",
                               HTTP_AUTHORIZATION=f"Bearer {keys[team]}")  # fmt: skip
        assert response.status_code == 200
    flush_records()


def total(queryset, field: str) -> Decimal:
    return queryset.aggregate(total=Sum(field))["total"] or Decimal(0)


def test_the_ledger_holds_every_attempts_cost_on_the_model_called(traffic):
    assert total(LedgerEntry.objects, "cost") == total(RequestRecord.objects, "cost")
    for model in ("replay-mixtral", "replay-gpt-4"):
        attempts = RequestAttempt.objects.filter(model=model)
        assert total(LedgerEntry.objects.filter(model=model), "cost") == total(attempts, "cost")
        assert total(LedgerEntry.objects.filter(model=model), "attempts") == attempts.count()


def test_requests_baselines_and_escalations_count_once_on_the_answering_model(traffic):
    escalated = RequestRecord.objects.filter(escalated=True).count()
    assert escalated >= 1  # at least the prompt Mixtral got wrong
    assert total(LedgerEntry.objects, "requests") == 11
    assert total(LedgerEntry.objects, "escalated_requests") == escalated
    assert total(LedgerEntry.objects.filter(model="replay-gpt-4"), "requests") == escalated
    assert total(LedgerEntry.objects, "baseline_cost") == total(RequestRecord.objects, "baseline_cost")
    # Savings against all-GPT-4, even with a third of these requests escalated.
    assert total(LedgerEntry.objects, "baseline_cost") > Decimal("1.5") * total(LedgerEntry.objects, "cost")


def test_spend_is_attributed_by_team_app_and_end_user(traffic):
    for team in ("growth", "support"):
        records = RequestRecord.objects.filter(team=team)
        assert total(LedgerEntry.objects.filter(team=team, app=f"{team}-app"), "cost") == total(records, "cost")
    for user in ("user-0", "user-1", "user-2"):
        records = RequestRecord.objects.filter(end_user=user)
        assert total(LedgerEntry.objects.filter(end_user=user), "cost") == total(records, "cost")


def test_spend_is_attributed_by_tag(traffic):
    checkout = RequestRecord.objects.filter(metadata__feature="checkout")
    assert total(LedgerTagEntry.objects.filter(key="feature", value="checkout"), "requests") == checkout.count() == 4
    assert total(LedgerTagEntry.objects.filter(key="feature", value="checkout"), "cost") == total(checkout, "cost")


def test_reconciliation_finds_no_difference(traffic):
    today = timezone.localdate()
    assert ledger_reconcile(start=today.replace(day=1), end=today + timezone.timedelta(days=1)) == []
    call_command("ledger_reconcile")


def test_reconciliation_reports_a_tampered_ledger(traffic):
    row = LedgerEntry.objects.filter(model="replay-gpt-4").first()
    row.cost += Decimal("0.01")
    row.save()

    with pytest.raises(CommandError, match="1 differences"):
        call_command("ledger_reconcile")
