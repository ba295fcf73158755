"""The admin for categories, ladders, goal weights, measures and experiments."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from routing.models import Experiment, ExperimentArm, GoalWeights, TaskCategory
from testing.factories import make_key, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db

PAGES = ["taskcategory", "categoryladder", "goalweights", "endpointmeasure", "experiment"]


@pytest.fixture
def browser(operator: Any) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.mark.parametrize("model", PAGES)
def test_every_list_opens(browser: Client, model: str) -> None:
    assert browser.get(f"/admin/routing/{model}/").status_code == 200


def test_the_default_categories_and_goal_profiles_are_data(browser: Client) -> None:
    assert {"code", "math", "faq", "greeting"} <= set(TaskCategory.objects.values_list("name", flat=True))
    assert set(GoalWeights.objects.values_list("goal", flat=True)) == {"cost", "balanced", "quality", "latency"}
    assert browser.get("/admin/routing/goalweights/add/").status_code == 403


def test_an_operator_adds_a_category_with_examples(browser: Client) -> None:
    form = {
        "name": "legal",
        "position": "50",
        "keywords": "contract\nliability",
        "patterns": "",
        "examples": "Review this NDA for risky clauses",
        "similarity_threshold": "0.6",
        "enabled": "on",
    }

    response = browser.post("/admin/routing/taskcategory/add/", form)

    assert response.status_code == 302
    assert TaskCategory.objects.get(name="legal").keywords == "contract\nliability"


def test_a_bad_pattern_is_refused(browser: Client) -> None:
    form = {"name": "broken", "position": "50", "patterns": "([unclosed", "similarity_threshold": "0.6"}

    response = browser.post("/admin/routing/taskcategory/add/", form)

    assert response.status_code == 200 and not TaskCategory.objects.filter(name="broken").exists()


def test_an_experiment_links_to_its_comparison(browser: Client) -> None:
    cheap, strong = replay_endpoints()
    policy = make_policy("demo", [(cheap, 0.5), (strong, 1.0)])
    key, _ = make_key(policy)
    experiment = Experiment.objects.create(name="try", api_key=key)
    ExperimentArm.objects.create(experiment=experiment, name="A", policy=policy)

    page = browser.get(f"/admin/routing/experiment/{experiment.pk}/change/").content.decode()

    assert f"/experiments/{experiment.pk}/" in page


def test_the_policy_and_endpoint_forms_hold_what_selection_reads(browser: Client) -> None:
    cheap, strong = replay_endpoints()
    policy = make_policy("demo", [(cheap, 0.5), (strong, 1.0)])

    policy_page = browser.get(f"/admin/routing/policy/{policy.pk}/change/").content.decode()
    endpoint_page = browser.get(f"/admin/routing/modelendpoint/{cheap.pk}/change/").content.decode()

    assert 'name="latency_budget_ms"' in policy_page and 'name="optimisation_goal"' in policy_page
    assert all(f'name="supports_{c}"' in endpoint_page for c in ("tools", "json", "images"))
