"""What-if replay of stored traffic: a small case worked out by hand, the page and the JSON API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from routing.choices import AttemptOutcome
from routing.engine.scoring import HeuristicScorer
from routing.models import Policy, QualityLabel, RequestRecord, RequestSample
from routing.quality.samples import sample_chat, sample_completion
from testing.factories import RequestAttemptFactory, RequestRecordFactory, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db

API = "/api/dashboard/what-if/"


@pytest.fixture
def policy() -> Policy:
    mixtral, gpt4 = replay_endpoints()
    return make_policy("demo", [(mixtral, 0.65), (gpt4, 1.0)])


def record(
    policy: Policy,
    *,
    score: float,
    cheap_cost: str,
    cheap_quality: float | None = None,
    strong: tuple[str, float] | None = None,
    baseline: str = "0",
    labels: dict[str, float] | None = None,
    minutes_ago: int = 5,
) -> RequestRecord:
    """A request answered by the cheap tier, or escalated to the strongest when `strong` is given."""
    row = RequestRecordFactory(
        policy=policy,
        policy_name=policy.name,
        created=timezone.now() - timedelta(minutes=minutes_ago),
        final_tier=1 if strong else 0,
        escalated=bool(strong),
        baseline_cost=Decimal(baseline),
        task_category="math",
    )
    cheap_outcome = AttemptOutcome.ESCALATED if strong else AttemptOutcome.ACCEPTED
    RequestAttemptFactory(
        record=row, position=0, tier=0, outcome=cheap_outcome, score=score,
        cost=Decimal(cheap_cost), quality_label=cheap_quality, input_tokens=1000, output_tokens=1000,
    )  # fmt: skip
    if strong:
        RequestAttemptFactory(
            record=row, position=1, tier=1, model="gpt-4", outcome=AttemptOutcome.ACCEPTED, score=0.9,
            cost=Decimal(strong[0]), quality_label=strong[1], input_tokens=1000, output_tokens=1000,
        )  # fmt: skip
    for source, value in (labels or {}).items():
        QualityLabel.objects.create(record=row, source=source, value=value)
    return row


@pytest.fixture
def traffic(policy: Policy) -> dict[str, RequestRecord]:
    """Four labelled requests and one unlabelled one; the strongest tier's cost is 10x."""
    return {
        "a": record(policy, score=0.3, cheap_cost="0.001", cheap_quality=0.0, strong=("0.010", 1.0)),
        "b": record(policy, score=0.9, cheap_cost="0.001", baseline="0.012", labels={"replay": 1.0}),
        # The app said the answer was wrong; its word counts over the recorded grade.
        "c": record(policy, score=0.7, cheap_cost="0.002", baseline="0.020", labels={"replay": 1.0, "feedback": 0.0}),
        "d": record(policy, score=0.6, cheap_cost="0.001", cheap_quality=1.0, strong=("0.010", 1.0)),
        "unlabelled": record(policy, score=0.5, cheap_cost="0.001"),
        "too old": record(policy, score=0.1, cheap_cost="0.001", labels={"replay": 0.0}, minutes_ago=8 * 24 * 60),
    }


def money(value: str) -> Decimal:
    return Decimal(value)


def test_the_json_matches_the_case_worked_out_by_hand(api: APIClient, policy: Policy, traffic: Any) -> None:
    response = api.get(API, {"policy": policy.id, "days": 7, "threshold": 0.8})

    assert response.status_code == 200, response.content
    report = response.json()
    # At 0.8, a (0.3), c (0.7) and d (0.6) escalate; b (0.9) keeps its cheap answer.
    # cost = (0.001 + 0.010) + 0.001 + (0.002 + 0.020) + (0.001 + 0.010) = 0.045, where c's
    # strongest cost is its recorded baseline; the baseline is 0.010 + 0.012 + 0.020 + 0.010.
    result = report["result"]
    assert result["threshold"] == 0.8
    assert money(result["cost"]) == Decimal("0.045")
    assert money(result["baseline_cost"]) == Decimal("0.052")
    assert money(result["savings"]) == Decimal("0.007")
    assert result["savings_share"] == pytest.approx(0.007 / 0.052)
    assert result["escalation_rate"] == 0.75
    # Every answer returned is right: c's unknown strongest quality is the window's mean, 1.0.
    assert result["quality"] == 1.0
    # The policy's own threshold, 0.65: c keeps its wrong cheap answer, d escalates.
    current = report["current"]
    assert (current["threshold"], current["escalation_rate"], current["quality"]) == (0.65, 0.5, 0.75)
    assert money(current["cost"]) == Decimal("0.025")
    assert report["requests"] == {
        "in_window": 5,
        "replayed": 4,
        "rescored": 0,
        "strong_quality_imputed": 2,
        "skipped": {"cheap answer unlabelled": 1},
    }
    assert report["metrics"]["weak_quality"] == 0.5 and report["metrics"]["strong_quality"] == 1.0


def test_the_sweep_runs_from_no_escalation_to_escalating_everything(api: APIClient, policy: Policy, traffic: Any):
    sweep = api.get(API, {"policy": policy.id}).json()["sweep"]

    by_threshold = {point["threshold"]: point for point in sweep}
    assert by_threshold[0.0]["escalation_rate"] == 0.0 and money(by_threshold[0.0]["cost"]) == Decimal("0.005")
    assert by_threshold[1.0]["escalation_rate"] == 1.0 and money(by_threshold[1.0]["cost"]) == Decimal("0.057")
    costs = [money(point["cost"]) for point in sweep]
    assert costs == sorted(costs)  # a higher threshold never costs less


def test_other_prices_are_applied_to_the_recorded_tokens(api: APIClient, policy: Policy, traffic: Any) -> None:
    # 1000 tokens in and out on every attempt: $1 + $1 per 1M each way is $0.002 a call.
    params = {"policy": policy.id, "threshold": 0.8, "strong_input_price": "1", "strong_output_price": "1"}

    result = api.get(API, params).json()["result"]

    # Cheap costs as recorded (0.005 in all); the strongest tier's three calls at 0.002 each.
    assert money(result["cost"]) == Decimal("0.011")
    assert money(result["baseline_cost"]) == Decimal("0.008")


def test_another_scorer_rescores_the_stored_cheap_answers(api: APIClient, policy: Policy, traffic: Any) -> None:
    hedged = "I'm not sure, maybe the answer is approximately 5"
    sample = RequestSample.objects.create(
        record=traffic["b"], created=traffic["b"].created, prompt="How many apples are left?", answer=hedged,
        answer_tier=0, finish_reason="stop",
    )  # fmt: skip
    heuristic = HeuristicScorer().score(sample_chat(sample), sample_completion(sample), task="math")
    assert heuristic < 0.8  # so b, accepted at 0.9 as recorded, now escalates

    report = api.get(API, {"policy": policy.id, "threshold": 0.8, "scorer": "heuristic"}).json()

    assert report["requests"]["rescored"] == 1
    assert report["result"]["escalation_rate"] == 1.0
    assert money(report["result"]["cost"]) == Decimal("0.057")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"threshold": "2"}, "threshold"),
        ({"days": "0"}, "days"),
        ({"scorer": "magic"}, "scorer"),
        ({"cheap_input_price": "1"}, "__all__"),
    ],
)
def test_a_bad_candidate_is_a_400_naming_the_field(api: APIClient, policy: Policy, params: dict, field: str) -> None:
    response = api.get(API, {"policy": policy.id, **params})

    assert response.status_code == 400
    assert field in response.json()


def test_an_unknown_policy_is_a_400(api: APIClient) -> None:
    assert api.get(API, {"policy": 999}).status_code == 400


def test_reading_what_if_needs_permission_to_read_records(django_user_model: Any, policy: Policy) -> None:
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("nobody", "n@example.com", "pw"))

    assert client.get(API, {"policy": policy.id}).status_code == 403


@pytest.mark.parametrize("rows", [3, 30])
def test_the_replay_costs_the_same_queries_for_3_requests_as_for_30(
    api: APIClient, policy: Policy, django_assert_num_queries: Any, rows: int
) -> None:
    for i in range(rows):
        record(policy, score=i / rows, cheap_cost="0.001", cheap_quality=1.0, strong=("0.01", 1.0))

    # The policy, its scorer versions (the form's choices), its tiers and their endpoints'
    # prices, the records with their samples, their attempts, their labels.
    with django_assert_num_queries(7):
        response = api.get(API, {"policy": policy.id})

    assert response.json()["requests"]["replayed"] == rows


def test_the_page_draws_the_sweep_with_the_vendored_plotly(client: Any, operator: Any, policy: Policy, traffic: Any):
    client.force_login(operator)

    response = client.get(f"/tuning/policies/{policy.id}/what-if/", {"threshold": "0.8"})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="what-if-figure"' in html
    assert "dashboard/vendor/plotly.min.js" in html
    assert response.context["report"]["result"]["escalation_rate"] == 0.75
    assert response.context["figure"]["data"][0]["name"] == "threshold sweep"


def test_the_page_writes_money_and_shares_by_the_number_rule(client: Any, operator: Any, policy: Policy, traffic: Any):
    client.force_login(operator)

    html = client.get(f"/tuning/policies/{policy.id}/what-if/", {"threshold": "0.8"}).content.decode()

    candidate = html.split("<th>Candidate</th>", 1)[1].split("</tr>", 1)[0]
    assert "<td>75.0 %</td>" in candidate  # the escalation rate, kept as a fraction
    assert candidate.count("<td>$") == 3 and " %)" in candidate  # cost, baseline, savings and its share
    assert "0.750" not in candidate


def test_the_page_needs_a_login(client: Any, policy: Policy) -> None:
    response = client.get(f"/tuning/policies/{policy.id}/what-if/")

    assert response.status_code == 302
    assert "/login/" in response["Location"]
