"""Selection: hard constraints, then the goal's weights, decide where a request starts."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from routing.engine import run_cascade
from routing.engine.classify import classify
from routing.engine.selection import NoTierFits, routed_policy, select_route
from routing.engine.selection_data import DEFAULT_WEIGHTS, CategorySnapshot, Measure
from routing.engine.types import EndpointSnapshot, PolicySnapshot, TaskRuleSnapshot, Tier
from testing.fakes import FakeProvider, FixedScorer, chat, completion, policy


def rung(position: int, *, price: str, prior: float, latency_ms: int = 1000, window: int = 8192, id: int = 0) -> Tier:
    endpoint = EndpointSnapshot(
        id=id or position + 1,
        name=f"model-{id or position + 1}",
        provider_kind="replay",  # type: ignore[arg-type]
        model_id="m",
        input_price_per_m=Decimal(price),
        output_price_per_m=Decimal(price),
        context_window=window,
        typical_latency_ms=latency_ms,
        quality_prior=prior,
        max_tokens=100,
    )
    return Tier(position, endpoint, 0.7)


CHEAP = rung(0, price="0.10", prior=0.6, latency_ms=400)
MID = rung(1, price="1.00", prior=0.75, latency_ms=900)
STRONG = rung(2, price="10.00", prior=0.9, latency_ms=2500)


def goal(snapshot: PolicySnapshot, name: str) -> PolicySnapshot:
    return dataclasses.replace(snapshot, optimisation_goal=name, weights=DEFAULT_WEIGHTS[name])


def test_a_prompt_too_long_for_the_cheap_tier_starts_on_the_tier_that_fits() -> None:
    small = rung(0, price="0.10", prior=0.6, window=200)
    snapshot = policy(small, MID, STRONG)
    long_prompt = "word " * 400  # about 500 tokens

    plan = select_route(chat(long_prompt), snapshot)

    assert plan.start == 1
    assert [t.position for t in plan.tiers] == [1, 2]
    assert plan.decision()["skipped"] == [{"tier": 0, "model": "model-1", "reason": "context_window"}]
    assert select_route(chat("short question"), snapshot).start == 0


def test_a_request_no_tier_can_hold_is_context_length_exceeded() -> None:
    snapshot = policy(rung(0, price="0.10", prior=0.6, window=150), rung(1, price="1", prior=0.9, window=150))

    with pytest.raises(NoTierFits) as caught:
        select_route(chat("word " * 400), snapshot)

    assert caught.value.code == "context_length_exceeded"


def test_a_latency_budget_skips_a_tier_whose_measured_p95_is_over_it() -> None:
    # The cheap tier's registry figure is fast, but traffic measured it slow.
    measured = {(CHEAP.endpoint.id, ""): Measure(p95_latency_ms=3000.0, latency_samples=500)}
    snapshot = dataclasses.replace(policy(CHEAP, MID, STRONG), latency_budget_ms=2000, measures=measured)

    plan = select_route(chat("hello there"), snapshot)

    assert plan.start == 1
    reasons = {s["tier"]: s["reason"] for s in plan.decision()["skipped"]}
    assert reasons == {0: "latency_budget", 2: "latency_budget"}
    assert [t.position for t in plan.tiers] == [1]


def test_too_few_latency_samples_leave_the_registry_figure_in_charge() -> None:
    measured = {(CHEAP.endpoint.id, ""): Measure(p95_latency_ms=3000.0, latency_samples=3)}
    snapshot = dataclasses.replace(policy(CHEAP, MID, STRONG), latency_budget_ms=2000, measures=measured)

    assert select_route(chat("hello there"), snapshot).start == 0


def test_the_goal_changes_the_starting_tier_as_documented() -> None:
    snapshot = policy(CHEAP, MID, STRONG)
    request = chat("Explain the causes of the French revolution")

    starts = {name: select_route(request, goal(snapshot, name)) for name in ("cost", "balanced", "quality", "latency")}

    # cost and balanced: the cheapest; quality: the best prior; latency: the fastest.
    assert {name: plan.start for name, plan in starts.items()} == {
        "cost": 0,
        "balanced": 0,
        "quality": 2,
        "latency": 0,
    }
    assert starts["quality"].decided_by == "quality"
    assert starts["cost"].decided_by == "cost"


def test_measured_quality_per_category_outranks_the_prior() -> None:
    # The mid model is measured excellent on math, better than the strong one's prior.
    measured = {
        (MID.endpoint.id, "math"): Measure(quality=0.97, quality_samples=200),
        (MID.endpoint.id, ""): Measure(quality=0.8, quality_samples=400),
    }
    snapshot = goal(dataclasses.replace(policy(CHEAP, MID, STRONG), measures=measured), "quality")
    math = CategorySnapshot("math", patterns=(r"\bsum\b",))
    snapshot = dataclasses.replace(snapshot, categories=(math,))

    assert select_route(chat("What is the sum of 2 and 3?"), snapshot).start == 1
    assert select_route(chat("Tell me a story"), snapshot).start == 2


def test_a_request_needing_tools_skips_a_model_without_them() -> None:
    no_tools = dataclasses.replace(CHEAP, endpoint=dataclasses.replace(CHEAP.endpoint, supports_tools=False))
    snapshot = policy(no_tools, MID, STRONG)
    request = dataclasses.replace(chat("Call the weather tool"), tools=({"type": "function"},))

    plan = select_route(request, snapshot)

    assert plan.start == 1
    assert plan.decision()["skipped"][0]["reason"] == "needs_tools"


CODE_MODEL = rung(0, price="0.50", prior=0.7, id=7)
CODE_LADDER = (CODE_MODEL, dataclasses.replace(STRONG, position=1))
CODE = CategorySnapshot("code", position=5, keywords=("python", "stack trace"), patterns=(r"```",))


def with_code_ladder() -> PolicySnapshot:
    return dataclasses.replace(policy(CHEAP, STRONG), categories=(CODE,), ladders={"code": CODE_LADDER})


async def test_a_code_request_climbs_the_code_ladder() -> None:
    snapshot = with_code_ladder()
    providers = {
        1: FakeProvider(CHEAP.endpoint, completion("cheap")),
        3: FakeProvider(STRONG.endpoint, completion("strong")),
        7: FakeProvider(CODE_MODEL.endpoint, completion("weak code")),
    }

    routed = routed_policy(chat("Fix this python function, it throws"), snapshot)
    result = await run_cascade(chat("Fix this python function"), routed, providers, FixedScorer({"weak code": 0.1}))

    assert routed.selection["ladder"] == "code"
    assert [a.endpoint_id for a in result.attempts] == [7, 3]
    assert result.task == "code"
    assert providers[1].calls == []


async def test_a_general_request_never_touches_the_code_tier() -> None:
    snapshot = with_code_ladder()
    providers = {
        1: FakeProvider(CHEAP.endpoint, completion("weak")),
        3: FakeProvider(STRONG.endpoint, completion("strong")),
        7: FakeProvider(CODE_MODEL.endpoint, completion("code")),
    }

    routed = routed_policy(chat("Where is Paris?"), snapshot)
    result = await run_cascade(chat("Where is Paris?"), routed, providers, FixedScorer({"weak": 0.1}))

    assert routed.selection["ladder"] == "general"
    assert [a.endpoint_id for a in result.attempts] == [1, 3]
    assert providers[7].calls == []


def test_keywords_match_whole_words_only() -> None:
    snapshot = dataclasses.replace(policy(CHEAP, STRONG), categories=(CODE,))

    assert select_route(chat("My python script fails"), snapshot).category == "code"
    assert select_route(chat("The pythonesque sketch was funny"), snapshot).category == "unknown"
    assert select_route(chat("Here is the stack trace I got"), snapshot).category == "code"


def test_a_routed_policy_keeps_the_category_its_plan_found() -> None:
    snapshot = dataclasses.replace(policy(CHEAP, STRONG), categories=(CODE,))
    routed = routed_policy(chat("Tell me a joke"), snapshot)
    # The catch-all rule names the plan's category, "unknown" included: no second look at the categories.
    changed = dataclasses.replace(routed, categories=(dataclasses.replace(CODE, keywords=("joke",)),))

    assert classify(chat("Tell me a joke"), changed).category == "unknown"


def test_a_laddered_category_is_matched_before_the_policys_task_rules() -> None:
    snapshot = dataclasses.replace(with_code_ladder(), task_rules=(TaskRuleSnapshot(0, "discussion", r"\bwhy\b", 0),))

    assert select_route(chat("Why does my python function fail?"), snapshot).ladder == "code"
    assert select_route(chat("Why is the sky blue?"), snapshot).category == "discussion"


def test_the_tools_tier_floor_counts_once() -> None:
    snapshot = dataclasses.replace(policy(CHEAP, MID, STRONG), tools_first_tier=1)
    request = dataclasses.replace(chat("Call the weather tool"), tools=({"type": "function"},))

    routed = routed_policy(request, snapshot)

    assert routed.selection["start"] == 1
    assert [t.position for t in routed.tiers] == [1, 2] and routed.tools_first_tier is None
