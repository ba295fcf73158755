"""A policy's prompt-only router picks the first tier on the hot path."""

from __future__ import annotations

import json

import pytest

from routing.choices import ScorerVersionKind
from routing.engine.router import train_prompt_router
from routing.models import Policy
from routing.quality.learning import scorer_version_create
from testing.factories import make_key, make_policy, replay_endpoints

pytestmark = pytest.mark.django_db

EASY = [f"Say hello to guest number {i} politely." for i in range(40)]
HARD = [f"Prove the open conjecture number {i} rigorously in full." for i in range(40)]


@pytest.fixture
def key() -> str:
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("routed", [(mixtral, 0.0), (gpt4, 1.0)], with_default_rules=False)
    router = train_prompt_router(EASY + HARD, [True] * len(EASY) + [False] * len(HARD), seed=0)
    scorer_version_create(
        policy=policy, kind=ScorerVersionKind.ROUTER, model=router.to_dict(), metrics={}, n_labels=80, activate=True
    )
    return make_key(policy)[1]


def ask(client, key: str, prompt: str):
    body = {"model": "routed", "messages": [{"role": "user", "content": prompt}]}
    return client.post("/v1/chat/completions", json.dumps(body), "application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_a_prompt_the_router_expects_to_need_the_strong_tier_starts_there(client, key):
    Policy.objects.filter(name="routed").update(router_threshold=0.5)

    hard, easy = (
        ask(client, key, "Prove the open conjecture number 99 rigorously in full."),
        ask(client, key, "Say hello to guest number 99 politely."),
    )

    assert (hard["x-cascadeops-tier"], hard["x-cascadeops-attempts"]) == ("1", "1")
    assert (easy["x-cascadeops-tier"], easy["x-cascadeops-attempts"]) == ("0", "1")


def test_without_a_router_threshold_the_task_rules_choose(client, key):
    response = ask(client, key, "Prove the open conjecture number 99 rigorously in full.")

    assert response["x-cascadeops-tier"] == "0"
