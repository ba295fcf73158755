"""Retraining the learned scorer from labels: a challenger replaces the active one only when it does better."""

from __future__ import annotations

import pytest

from cascadeops.celery import app as celery_app
from routing.models import ScorerVersion
from routing.quality.learning import (
    MIN_TRAINING_LABELS,
    TooFewLabels,
    beats,
    scorer_version_challenge,
    scorers_retrain_all,
)
from routing.quality.tasks import scorers_retrain
from tests.dashboard.test_tuning import operator_browser  # noqa: F401
from tests.routing.test_learned_scorer import TRAINING_REQUESTS, collect_labelled_traffic, demo  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_first_retrained_scorer_becomes_active_with_its_learning_curve(client, demo):  # noqa: F811
    policy, key = demo
    collect_labelled_traffic(client, key)

    challenge = scorer_version_challenge(policy=policy)

    version = challenge.version
    assert challenge.replaced and version.active
    assert challenge.active_apgr is None
    held_out = round(TRAINING_REQUESTS * 0.25)
    assert version.n_labels == TRAINING_REQUESTS - held_out
    assert version.metrics["holdout_apgr"] == pytest.approx(challenge.challenger_apgr)
    curve = version.metrics["learning_curve"]
    labels = [n for n, _ in curve]
    assert labels == sorted(labels) and labels[-1] == TRAINING_REQUESTS - held_out
    assert all(0.0 <= apgr <= 1.5 for _, apgr in curve)


def test_a_challenger_no_better_than_the_active_scorer_stays_inactive(client, demo):  # noqa: F811
    policy, key = demo
    collect_labelled_traffic(client, key)
    first = scorer_version_challenge(policy=policy).version

    # The same labels and seed train the same model: it does not beat the active one.
    second = scorer_version_challenge(policy=policy)

    first.refresh_from_db()
    assert not second.replaced and not second.version.active
    assert second.active_apgr == pytest.approx(second.challenger_apgr)
    assert first.active
    assert ScorerVersion.objects.filter(policy=policy, active=True).get() == first


def test_the_tuning_page_draws_each_retrained_scorers_learning_curve(client, demo, operator_browser):  # noqa: F811
    policy, key = demo
    collect_labelled_traffic(client, key)
    challenge = scorer_version_challenge(policy=policy)

    html = operator_browser.get("/tuning/").content.decode()

    table = html[html.index('id="learning-curves"') :]
    assert "v1 (active)" in table
    assert f"{challenge.challenger_apgr:.3f}" in table
    assert "<polyline points=" in table
    first_labels, _ = challenge.version.metrics["learning_curve"][0]
    assert f"{int(first_labels)}: " in table


def test_too_few_labels_train_no_challenger(client, demo):  # noqa: F811
    policy, key = demo
    collect_labelled_traffic(client, key, count=MIN_TRAINING_LABELS - 1)

    with pytest.raises(TooFewLabels):
        scorer_version_challenge(policy=policy)


def test_beat_retrains_learned_policies_with_new_labels_once(client, demo):  # noqa: F811
    policy, key = demo
    collect_labelled_traffic(client, key)
    untouched = scorers_retrain_all()
    assert untouched == 0 and not ScorerVersion.objects.exists()  # the policy scores with the heuristic

    policy.scorer = "learned"
    policy.save()
    assert scorers_retrain_all() == 1
    assert scorers_retrain_all() == 0  # no new labels since that version
    assert ScorerVersion.objects.filter(policy=policy).count() == 1


def test_beat_retrains_by_the_task_in_its_schedule(client, demo):  # noqa: F811
    policy, key = demo
    collect_labelled_traffic(client, key)
    policy.scorer = "learned"
    policy.save()
    entry = celery_app.conf.beat_schedule["scorers_retrain"]

    assert entry["task"] == scorers_retrain.name
    scorers_retrain.delay()  # run eagerly, as a worker would
    assert ScorerVersion.objects.filter(policy=policy, active=True).count() == 1


@pytest.mark.parametrize(
    ("challenger", "champion", "replaces"),
    [(0.8, 0.7, True), (0.7, 0.7, False), (0.6, 0.7, False), (0.6, None, True), (float("nan"), None, False)],
)
def test_only_a_better_held_out_apgr_replaces(challenger, champion, replaces):
    assert beats(challenger, champion) is replaces
