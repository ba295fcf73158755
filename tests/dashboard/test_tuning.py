"""Auto-tuning: proposals with evidence, and operators applying, rejecting and rolling back in the browser."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from cascadeops.celery import app as celery_app
from dashboard.models import TuningConfig, TuningProposal
from dashboard.tuning.proposals import category_thresholds, tuning_run, wilson_interval
from dashboard.tuning.tasks import tuning_propose
from dashboard.tuning.whatif import Candidate, replay_rows
from routing.choices import AttemptOutcome
from routing.config import version as config_version
from routing.models import Policy, QualityLabel, RequestAttempt, RequestRecord, RequestSample, ScorerVersion
from routing.providers.local import DEFAULT_DATASET, MIXTRAL, load_replay_data
from testing.factories import RequestAttemptFactory, RequestRecordFactory, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


@pytest.fixture
def policy() -> Policy:
    mixtral, gpt4 = replay_endpoints()
    return make_policy("demo", [(mixtral, 0.80), (gpt4, 1.0)])


def tuning(policy: Policy, **fields: Any) -> TuningConfig:
    defaults: dict[str, Any] = {"mode": "propose", "target": "min_quality", "target_value": Decimal("0.9")}
    return TuningConfig.objects.create(policy=policy, **{**defaults, **fields})


def labelled_requests(
    policy: Policy, count: int, *, score: float, cheap_right: bool, escalated: bool = True, category: str = "general"
) -> None:
    """Requests whose cheap answer was scored `score` and graded; the strongest tier is always right.

    An escalated request carries both attempts' recorded grades; one the cheap tier
    answered carries the app's feedback label.
    """
    created = timezone.now() - timedelta(hours=1)
    records = RequestRecord.objects.bulk_create(
        RequestRecordFactory.build(
            policy=policy, created=created, final_tier=int(escalated), escalated=escalated, task_category=category
        )
        for _ in range(count)
    )
    outcome = AttemptOutcome.ESCALATED if escalated else AttemptOutcome.ACCEPTED
    attempts = [
        RequestAttemptFactory.build(
            record=r, position=0, tier=0, outcome=outcome, score=score, cost=Decimal("0.001"),
            quality_label=float(cheap_right),
        )
        for r in records
    ]  # fmt: skip
    if escalated:
        attempts += [
            RequestAttemptFactory.build(
                record=r, position=1, tier=1, outcome=AttemptOutcome.ACCEPTED, cost=Decimal("0.01"), quality_label=1.0
            )
            for r in records
        ]
    else:
        QualityLabel.objects.bulk_create(
            QualityLabel(record=r, source="feedback", value=float(cheap_right)) for r in records
        )
    RequestAttempt.objects.bulk_create(attempts)


def quality_breach_at_080(policy: Policy, scale: int = 1) -> None:
    """At 0.80 the answers scored 0.82 come back wrong (quality 0.83); from 0.83 on, none do."""
    labelled_requests(policy, 100 * scale, score=0.95, cheap_right=True)
    labelled_requests(policy, 100 * scale, score=0.50, cheap_right=False)
    labelled_requests(policy, 40 * scale, score=0.82, cheap_right=False)


def shared_config_version() -> int:
    """The config version every worker compares with (Redis in production, the database embedded)."""
    return async_to_sync(config_version.current)()


def threshold(policy: Policy) -> float:
    return policy.tiers.get(position=0).threshold


# --- proposals ---------------------------------------------------------------------------


def test_a_quality_breach_on_labelled_traffic_proposes_a_higher_threshold_with_evidence(policy):
    quality_breach_at_080(policy)
    config = tuning(policy, min_labels=200)

    proposal = tuning_run(config=config)

    assert proposal is not None
    assert (proposal.method, proposal.status) == ("calibrated", "proposed")
    assert (proposal.threshold_before, proposal.threshold_after) == (0.80, 0.83)
    evidence = proposal.evidence
    assert evidence["n_labels"] == 240
    assert evidence["n_calibration"] + evidence["n_holdout"] == 240 and evidence["n_holdout"] > 40
    assert evidence["holdout_meets_target"] is True
    assert evidence["before"]["quality"] < 0.9 <= evidence["after"]["quality"]
    low, high = evidence["after"]["quality_ci95"]
    assert low < evidence["after"]["quality"] <= high
    assert Decimal(evidence["after"]["cost_per_request"]) > Decimal(evidence["before"]["cost_per_request"])
    # Proposing changes nothing yet.
    policy.refresh_from_db()
    assert (threshold(policy), policy.version) == (0.80, 1)


def test_each_task_category_with_enough_labels_gets_its_own_calibrated_threshold(policy):
    # Math answers scored 0.82 are wrong; general ones scored 0.5 are: each category needs its own cut.
    labelled_requests(policy, 100, score=0.95, cheap_right=True, category="math")
    labelled_requests(policy, 40, score=0.82, cheap_right=False, category="math")
    labelled_requests(policy, 100, score=0.95, cheap_right=True, category="general")
    labelled_requests(policy, 100, score=0.50, cheap_right=False, category="general")
    labelled_requests(policy, 10, score=0.20, cheap_right=False, category="code")  # too few for its own
    config = tuning(policy, min_labels=200)
    now = timezone.now()
    labelled = replay_rows(policy=policy, since=now - timedelta(days=1), until=now, candidate=Candidate())

    # The lowest bound (0.60) already holds general answers to the target; math needs 0.83.
    assert category_thresholds(config, labelled) == {
        "general": {"n_labels": 200, "goal_threshold": 0.60},
        "math": {"n_labels": 140, "goal_threshold": 0.83},
    }


def test_a_calibrated_proposal_carries_the_thresholds_by_category(policy):
    quality_breach_at_080(policy)

    proposal = tuning_run(config=tuning(policy, min_labels=200))

    assert proposal is not None
    assert proposal.evidence["by_category"] == {"general": {"n_labels": 240, "goal_threshold": 0.83}}


def test_a_proposal_never_moves_more_than_the_maximum_step(policy):
    quality_breach_at_080(policy)
    config = tuning(policy, min_labels=200, max_step=0.01)

    assert tuning_run(config=config).threshold_after == 0.81


def test_with_too_few_labels_a_quality_breach_raises_the_threshold_by_one_step(policy):
    # 21 of 30 answers right: 0.7, under the 0.9 target.
    labelled_requests(policy, 21, score=0.9, cheap_right=True, escalated=False)
    labelled_requests(policy, 9, score=0.9, cheap_right=False, escalated=False)
    config = tuning(policy, min_labels=200, max_step=0.05)

    proposal = tuning_run(config=config)

    assert (proposal.method, proposal.threshold_after) == ("rules", 0.85)
    assert "Raise" in proposal.reason
    evidence = proposal.evidence
    assert (evidence["n_labels"], evidence["quality"]) == (30, 0.7)
    assert evidence["quality_ci95"] == pytest.approx(list(wilson_interval(0.7, 30)))


def test_with_too_few_labels_an_escalation_breach_lowers_the_threshold(policy):
    labelled_requests(policy, 10, score=0.5, cheap_right=False)  # every request escalated
    config = tuning(policy, target="max_escalation_rate", target_value=Decimal("0.3"))

    proposal = tuning_run(config=config)

    assert (proposal.method, proposal.threshold_after) == ("rules", 0.75)


def test_no_breach_and_nothing_to_gain_proposes_nothing(policy):
    labelled_requests(policy, 30, score=0.9, cheap_right=True, escalated=False)

    assert tuning_run(config=tuning(policy)) is None
    assert not TuningProposal.objects.exists()


def test_a_run_repeated_at_once_does_nothing(policy):
    quality_breach_at_080(policy)
    config = tuning(policy, min_labels=200)
    tuning_run(config=config)

    assert tuning_run(config=TuningConfig.objects.get(id=config.id)) is None
    assert TuningProposal.objects.count() == 1


def test_a_newer_proposal_supersedes_the_open_one(policy):
    quality_breach_at_080(policy)
    config = tuning(policy, min_labels=200)
    first = tuning_run(config=config)

    second = tuning_run(config=config, now=timezone.now() + timedelta(hours=1))

    first.refresh_from_db()
    assert (first.status, second.status) == ("superseded", "proposed")


def test_apply_mode_applies_the_change_and_records_it(policy, django_capture_on_commit_callbacks):
    quality_breach_at_080(policy)
    config = tuning(policy, min_labels=200, mode="apply")
    before = shared_config_version()

    with django_capture_on_commit_callbacks(execute=True):
        proposal = tuning_run(config=config)

    policy.refresh_from_db()
    assert (proposal.status, proposal.decided_by, proposal.policy_version_applied) == ("applied", None, 2)
    assert (threshold(policy), policy.version) == (0.83, 2)
    assert shared_config_version() > before  # workers reload the policy


def test_beat_runs_tuning_by_the_task_in_its_schedule(policy):
    quality_breach_at_080(policy)
    tuning(policy, min_labels=200)
    entry = celery_app.conf.beat_schedule["tuning_propose"]

    assert entry["task"] == tuning_propose.name
    assert tuning_propose.delay().result == 1  # run eagerly, as a worker would
    assert TuningProposal.objects.filter(policy=policy, status="proposed").count() == 1


def test_the_wilson_interval_is_the_textbook_one():
    low, high = wilson_interval(0.5, 100)

    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)


# --- operators decide in the browser -------------------------------------------------------


@pytest.fixture
def proposal(policy) -> TuningProposal:
    quality_breach_at_080(policy)
    return tuning_run(config=tuning(policy, min_labels=200))


@pytest.fixture
def operator_browser(django_user_model) -> Client:
    """A staff member with the tuning permissions, logged in with a password, CSRF enforced."""
    user = django_user_model.objects.create_user("ops", "ops@example.com", PASSWORD, is_staff=True)
    codenames = ["view_tuningproposal", "decide_tuningproposal"]
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="dashboard", codename__in=codenames))
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username="ops", password=PASSWORD)
    return browser


def click(browser: Client, proposal: TuningProposal, action: str):
    """Press a proposal's button as a browser would: the token comes from the page's form."""
    page = browser.get("/tuning/").content.decode()
    form = re.search(rf'action="/tuning/proposals/{proposal.pk}/{action}/">.*?value="([^"]+)"', page, re.S)
    assert form, f"no {action} button for proposal {proposal.pk}"
    return browser.post(f"/tuning/proposals/{proposal.pk}/{action}/", {"csrfmiddlewaretoken": form.group(1)})


def test_the_page_shows_the_proposal_and_its_evidence(operator_browser, proposal):
    html = operator_browser.get("/tuning/").content.decode()

    assert "0.80 → <strong>0.83</strong>" in html
    assert "240 labelled requests" in html
    assert "95% CI" in html


def test_an_operator_applies_a_proposal_and_the_policy_gets_a_new_version(
    operator_browser, proposal, policy, django_capture_on_commit_callbacks
):
    before = shared_config_version()

    with django_capture_on_commit_callbacks(execute=True):
        response = click(operator_browser, proposal, "apply")

    assert response.status_code == 302
    proposal.refresh_from_db()
    policy.refresh_from_db()
    assert (proposal.status, proposal.decided_by.username) == ("applied", "ops")
    assert (threshold(policy), policy.version, proposal.policy_version_applied) == (0.83, 2, 2)
    assert shared_config_version() > before


def test_an_operator_rejects_a_proposal_and_nothing_changes(operator_browser, proposal, policy):
    click(operator_browser, proposal, "reject")

    proposal.refresh_from_db()
    policy.refresh_from_db()
    assert (proposal.status, proposal.decided_by.username) == ("rejected", "ops")
    assert (threshold(policy), policy.version) == (0.80, 1)


def test_one_click_rolls_an_applied_change_back(operator_browser, proposal, policy):
    click(operator_browser, proposal, "apply")

    click(operator_browser, proposal, "rollback")

    proposal.refresh_from_db()
    policy.refresh_from_db()
    assert (proposal.status, proposal.rolled_back_by.username) == ("rolled_back", "ops")
    assert (threshold(policy), policy.version) == (0.80, 3)  # restored, as a new version


def test_a_rollback_refuses_to_clobber_a_threshold_changed_since(operator_browser, proposal, policy):
    click(operator_browser, proposal, "apply")
    tier = policy.tiers.get(position=0)
    tier.threshold = 0.9
    tier.save()

    response = click(operator_browser, proposal, "rollback")

    proposal.refresh_from_db()
    assert proposal.status == "applied"
    assert threshold(policy) == 0.9
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("changed since" in m for m in messages)


def test_a_decided_proposal_cannot_be_applied_again(operator_browser, proposal, policy):
    page_token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', operator_browser.get("/tuning/").content.decode()
    )
    click(operator_browser, proposal, "reject")

    operator_browser.post(f"/tuning/proposals/{proposal.pk}/apply/", {"csrfmiddlewaretoken": page_token.group(1)})

    proposal.refresh_from_db()
    policy.refresh_from_db()
    assert (proposal.status, threshold(policy)) == ("rejected", 0.80)


def test_a_post_without_the_csrf_token_is_refused(operator_browser, proposal):
    response = operator_browser.post(f"/tuning/proposals/{proposal.pk}/apply/")

    assert response.status_code == 403
    proposal.refresh_from_db()
    assert proposal.status == "proposed"


def test_deciding_needs_the_permission(django_user_model, proposal):
    django_user_model.objects.create_user("viewer", "v@example.com", PASSWORD, is_staff=True)
    browser = Client()
    browser.login(username="viewer", password=PASSWORD)

    assert browser.post(f"/tuning/proposals/{proposal.pk}/apply/").status_code == 403
    proposal.refresh_from_db()
    assert proposal.status == "proposed"


def test_the_page_needs_a_login(client):
    response = client.get("/tuning/")

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_deciding_is_a_post(operator_browser, proposal):
    assert operator_browser.get(f"/tuning/proposals/{proposal.pk}/apply/").status_code == 405


@pytest.mark.parametrize("rows", [3, 30])
def test_the_page_costs_the_same_queries_for_3_proposals_as_for_30(
    operator_browser, policy, django_assert_num_queries, rows
):
    tuning(policy)
    for _ in range(rows):
        TuningProposal.objects.create(
            policy=policy, tier=0, threshold_before=0.8, threshold_after=0.85, method="rules", reason="r",
            evidence={"n_labels": 30, "quality": 0.7, "quality_ci95": [0.5, 0.8]}, policy_version_before=1,
        )  # fmt: skip
    for number in range(1, rows + 1):
        ScorerVersion.objects.create(
            policy=policy, version=number, model={"weights": [0.0] * 100}, n_labels=40,
            metrics={"holdout_apgr": 0.6, "learning_curve": [[25.0, 0.5], [40.0, 0.6]]}, trained_at=timezone.now(),
        )  # fmt: skip

    # session, user, the user's and groups' permissions, shadow spend, configs, learning curves, proposals.
    with django_assert_num_queries(8):
        response = operator_browser.get("/tuning/")

    page = response.content.decode()
    assert page.count('action="/tuning/proposals/') == 2 * rows
    assert page.count("<polyline") == min(rows, 20)


# --- retraining the learned scorer --------------------------------------------------------


def replay_labelled_samples(policy: Policy, count: int) -> None:
    """Sampled requests Mixtral answered, graded by the recorded correctness (the demo's labels)."""
    data = load_replay_data(str(DEFAULT_DATASET))
    created = timezone.now() - timedelta(hours=1)
    records = RequestRecord.objects.bulk_create(
        RequestRecordFactory.build(policy=policy, created=created, final_tier=0, task_category="math")
        for _ in range(count)
    )
    answers = [data.answer(MIXTRAL, prompt) for prompt in data.prompts[:count]]
    RequestAttempt.objects.bulk_create(
        RequestAttemptFactory.build(record=r, position=0, tier=0, score=0.9, quality_label=float(a.correct))
        for r, a in zip(records, answers, strict=True)
    )
    RequestSample.objects.bulk_create(
        RequestSample(record=r, created=created, prompt=p, answer=a.text, answer_tier=0, finish_reason="stop")
        for r, p, a in zip(records, data.prompts, answers, strict=False)
    )
    QualityLabel.objects.bulk_create(
        QualityLabel(record=r, source="replay", value=float(a.correct)) for r, a in zip(records, answers, strict=True)
    )


def test_enough_new_labels_retrain_the_scorer_which_scores_once_the_change_is_applied(operator_browser, policy):
    policy.scorer = "learned"
    policy.save()
    replay_labelled_samples(policy, 120)
    config = tuning(policy, retrain_after_labels=100, min_labels=1000)  # too few to calibrate: rules

    proposal = tuning_run(config=config)

    version = proposal.scorer_version_after
    assert (version.version, version.active, version.n_labels) == (1, False, 120)
    assert proposal.evidence["scorer"]["version"] == 1
    click(operator_browser, proposal, "apply")
    version.refresh_from_db()
    assert version.active
    click(operator_browser, proposal, "rollback")
    version.refresh_from_db()
    assert not version.active  # back to the heuristic, as before the change


# --- the dashboard API ----------------------------------------------------------------------


def test_tuning_is_configured_through_the_api_too(api, policy):
    response = api.post(
        "/api/dashboard/tuning-configs/",
        {"policy": policy.id, "mode": "propose", "target": "max_escalation_rate", "target_value": "0.3"},
        format="json",
    )

    assert response.status_code == 201, response.data
    assert TuningConfig.objects.get(policy=policy).threshold_min == 0.60


def test_crossed_bounds_are_refused(api, policy):
    response = api.post(
        "/api/dashboard/tuning-configs/",
        {"policy": policy.id, "threshold_min": 0.9, "threshold_max": 0.7},
        format="json",
    )

    assert response.status_code == 400
    assert "threshold_max" in response.data


@pytest.mark.parametrize("raw", ["", "demo", "²", "-1", "99999999999999999999"])
def test_the_what_if_api_answers_400_for_a_policy_that_is_not_an_id(api, policy, raw):
    response = api.get("/api/dashboard/what-if/", {"policy": raw})

    assert response.status_code == 400
    assert list(response.data) == ["policy"]


@pytest.mark.parametrize("rows", [3, 30])
def test_the_proposal_list_costs_the_same_queries_for_3_as_for_30(api, policy, django_assert_num_queries, rows):
    for _ in range(rows):
        TuningProposal.objects.create(
            policy=policy, tier=0, threshold_before=0.8, threshold_after=0.85, method="rules", reason="r",
            policy_version_before=1,
        )  # fmt: skip

    with django_assert_num_queries(2):
        response = api.get("/api/dashboard/tuning-proposals/")

    assert response.data["count"] == rows
