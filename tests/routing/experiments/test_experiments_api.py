"""A/B experiments through the API: the split, stickiness per end user, the comparison page, ending one."""

from __future__ import annotations

from collections import Counter
from typing import Any

import openai
import pytest
from django.test import Client

from common.audit.models import AuditEntry
from routing.choices import ExperimentStatus
from routing.models import ApiKey, Experiment, ExperimentArm, PolicyTier, RequestRecord
from routing.policies.services import policy_update
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import running_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.live

END_USERS = 160
# Assignment is a hash of the end user, so the split is fixed for these users; the
# tolerance is what a fair split of 160 users leaves at four standard deviations.
TOLERANCE = 0.14


def two_policy_experiment(url: str) -> tuple[str, Experiment]:
    cheap = openai_endpoint("arm-a-model", url, "upstream-small")
    other = openai_endpoint("arm-b-model", url, "upstream-large")
    a = make_policy("arm-a", [(cheap, 1.0)], cache_ttl_s=0)
    b = make_policy("arm-b", [(other, 1.0)], cache_ttl_s=0)
    key, plaintext = make_key(a)
    experiment = Experiment.objects.create(name="small-vs-large", api_key=key, min_samples=50)
    ExperimentArm.objects.create(experiment=experiment, name="A", policy=a, weight=1)
    ExperimentArm.objects.create(experiment=experiment, name="B", policy=b, weight=3)
    return plaintext, experiment


def ask(client: openai.OpenAI, user: str) -> Any:
    return client.chat.completions.create(
        model="arm-a", messages=[{"role": "user", "content": "What is six times seven?"}], user=user
    )


def test_an_experiment_splits_by_weight_sticks_per_user_and_compares_its_arms(live_gateway: Any, operator: Any) -> None:
    with running_upstream() as upstream:
        plaintext, experiment = two_policy_experiment(upstream.base_url)
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=plaintext, max_retries=0)
        for user in (f"user-{n}" for n in range(END_USERS)):
            ask(client, user)
            ask(client, user)
    flush_records()

    records = list(RequestRecord.objects.filter(end_user__startswith="user-").select_related("experiment_arm"))
    arms_of_user: dict[str, set[str]] = {}
    for record in records:
        assert record.experiment_arm is not None
        arms_of_user.setdefault(record.end_user, set()).add(record.experiment_arm.name)
        assert record.policy_name == f"arm-{record.experiment_arm.name.lower()}"
    assert len(records) == 2 * END_USERS
    assert all(len(arms) == 1 for arms in arms_of_user.values())
    users_per_arm = Counter(next(iter(arms)) for arms in arms_of_user.values())
    assert abs(users_per_arm["B"] / END_USERS - 0.75) <= TOLERANCE

    browser = Client()
    browser.force_login(operator)
    page = browser.get(f"/experiments/{experiment.pk}/").content.decode()
    for arm in ("A", "B"):
        row = page.split(f'data-arm="{arm}"')[1].split("</tr>")[0]
        assert f">{2 * users_per_arm[arm]}<" in row  # its requests
        assert "$0.0" in row and "[" in row  # cost per request with its interval


def test_ending_an_experiment_promotes_the_winner_to_its_key(live_gateway: Any, operator: Any) -> None:
    with running_upstream() as upstream:
        _, experiment = two_policy_experiment(upstream.base_url)
    winner = experiment.arms.get(name="B")
    browser = Client()
    browser.force_login(operator)

    response = browser.post(f"/experiments/{experiment.pk}/end/", {"winner": winner.pk})

    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.ENDED and experiment.winner == winner
    assert ApiKey.objects.get(experiments=experiment).policy_id == winner.policy_id
    entries = list(AuditEntry.objects.filter(object_type="routing.experiment", object_id=str(experiment.pk)))
    (entry,) = [e for e in entries if e.action == "experiment_end" and e.after and "promoted_policy" in e.after]
    before, after = entry.before or {}, entry.after or {}
    assert before["status"] == "running" and after["status"] == "ended"
    assert after["promoted_policy"] == winner.policy_id


def test_an_arm_pinned_to_a_stored_version_routes_with_that_version(live_gateway: Any) -> None:
    with running_upstream() as upstream:
        old = openai_endpoint("old-model", upstream.base_url, "upstream-small")
        new = openai_endpoint("new-model", upstream.base_url, "upstream-large")
        policy = make_policy("evolving", [(old, 1.0)], cache_ttl_s=0)
        policy_update(policy=policy, description="now on the new model")  # version 2, same tiers
        PolicyTier.objects.filter(policy=policy).update(endpoint=new)
        policy_update(policy=policy, description="really on the new model")  # version 3 stores it
        key, plaintext = make_key(policy)
        experiment = Experiment.objects.create(name="then-vs-now", api_key=key)
        ExperimentArm.objects.create(experiment=experiment, name="then", policy=policy, policy_version=1)
        ExperimentArm.objects.create(experiment=experiment, name="now", policy=policy)
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=plaintext, max_retries=0)
        for n in range(20):
            client.chat.completions.create(
                model="evolving", messages=[{"role": "user", "content": "Hello?"}], user=f"u{n}"
            )
    flush_records()

    answered = {(r.experiment_arm.name, r.policy_version, r.final_model) for r in RequestRecord.objects.all()}  # type: ignore[union-attr]
    assert answered == {("then", 1, "old-model"), ("now", 3, "new-model")}
