"""The quality gate in the engine: samples, peers and a judge, with fake providers."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

from routing.engine.cascade import run_cascade
from routing.engine.costing import JUDGE_MAX_TOKENS, gate_worst_case, tier_worst_case, tier_worst_case_usage
from routing.engine.errors import ProviderUnavailable
from routing.engine.gate import judge_grade
from routing.engine.scoring import HeuristicScorer
from routing.engine.types import GateSnapshot, Outcome
from testing.fakes import FakeProvider, FixedScorer, chat, completion, endpoint, policy, tier

QUESTION = "A farmer has 6 pens with 7 sheep each. How many sheep are there in all?"


def gated(gate: GateSnapshot, threshold: float = 0.7) -> tuple:
    cheap = dataclasses.replace(tier(0, threshold), gate=gate)
    return cheap, tier(1, 1.0)


async def route(cheap, strong, providers, scorer=None):
    return await run_cascade(chat(QUESTION), policy(cheap, strong), providers, scorer or FixedScorer({}, default=1.0))


async def test_it_accepts_when_the_samples_agree_and_records_each_sample():
    cheap, strong = gated(GateSnapshot(samples=3))
    answers = [completion(f"So the answer is {n}.") for n in (42, 42, 42)]
    providers = {1: FakeProvider(cheap.endpoint, *answers), 2: FakeProvider(strong.endpoint, completion("42"))}

    result = await route(cheap, strong, providers)

    assert [a.outcome for a in result.attempts] == [Outcome.ACCEPTED, Outcome.SAMPLE, Outcome.SAMPLE]
    assert result.final is not None and result.final.score == 1.0
    assert all(a.cost > 0 for a in result.attempts)
    assert providers[2].calls == []


async def test_it_escalates_when_the_samples_disagree():
    cheap, strong = gated(GateSnapshot(samples=3))
    answers = [completion(f"The answer is {n}.") for n in (42, 13, 48)]
    providers = {1: FakeProvider(cheap.endpoint, *answers), 2: FakeProvider(strong.endpoint, completion("42"))}

    result = await route(cheap, strong, providers, FixedScorer({}, default=0.5))

    assert [a.outcome for a in result.attempts] == [
        Outcome.ESCALATED,
        Outcome.SAMPLE,
        Outcome.SAMPLE,
        Outcome.ACCEPTED,
    ]
    # One third agree, averaged with the policy scorer's 0.5.
    assert math.isclose(result.attempts[0].score or 0.0, (1 / 3 + 0.5) / 2)


async def test_a_failed_sample_is_recorded_and_the_others_still_vote():
    cheap, strong = gated(GateSnapshot(samples=3))
    script = (completion("The answer is 42."), ProviderUnavailable("down"), completion("The answer is 42."))
    providers = {1: FakeProvider(cheap.endpoint, *script), 2: FakeProvider(strong.endpoint, completion("42"))}

    result = await route(cheap, strong, providers)

    outcomes = [a.outcome for a in result.attempts]
    assert outcomes[0] is Outcome.ACCEPTED
    assert sorted(outcomes[1:]) == sorted([Outcome.SAMPLE, Outcome.FAILED])
    assert result.final is not None and result.final.score == 1.0


async def test_the_gate_is_not_run_where_its_verdict_cannot_change_anything():
    cheap, strong = gated(GateSnapshot(samples=3))
    last_gated = dataclasses.replace(strong, gate=GateSnapshot(samples=3))
    providers = {1: FakeProvider(cheap.endpoint, completion("x")), 2: FakeProvider(strong.endpoint, completion("y"))}

    result = await run_cascade(chat(QUESTION), policy(tier(0, 0.7), last_gated), providers, FixedScorer({"x": 0.1}))

    assert [a.outcome for a in result.attempts] == [Outcome.ESCALATED, Outcome.ACCEPTED]
    assert len(providers[2].calls) == 1


async def test_a_judge_that_says_no_escalates_and_its_call_is_paid_for():
    judge = endpoint(9)
    cheap, strong = gated(GateSnapshot(judge=judge))
    providers = {
        1: FakeProvider(cheap.endpoint, completion("The answer is 41.")),
        2: FakeProvider(strong.endpoint, completion("The answer is 42.")),
        9: FakeProvider(judge, completion("no", output_tokens=1)),
    }

    result = await route(cheap, strong, providers, FixedScorer({}, default=0.9))

    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("model-1", Outcome.ESCALATED),
        ("model-9", Outcome.JUDGE),
        ("model-2", Outcome.ACCEPTED),
    ]
    assert result.attempts[1].cost > 0
    assert providers[9].calls == [JUDGE_MAX_TOKENS]


def test_the_judges_grade_comes_from_its_first_tokens_probability_when_it_has_one():
    assert judge_grade(completion("yes", logprobs=(math.log(0.8),))) == 0.8
    assert math.isclose(judge_grade(completion("No.", logprobs=(math.log(0.9),))) or 0.0, 0.1)
    assert judge_grade(completion("Yes, it is correct.")) == 1.0
    assert judge_grade(completion("7/10")) == 0.7
    assert judge_grade(completion("I cannot tell.")) is None


def test_a_budget_hold_covers_every_call_the_gate_may_make():
    judge, peer = endpoint(9, input_price="0.50"), endpoint(8, input_price="3.00")
    gate = GateSnapshot(samples=3, peers=(peer,), judge=judge)
    cheap = dataclasses.replace(tier(0), gate=gate)
    request = chat(QUESTION, max_tokens=100)

    one_call = tier_worst_case_usage(cheap, request).cost
    peer_call = tier_worst_case_usage(dataclasses.replace(cheap, endpoint=peer), request).cost

    assert gate_worst_case(cheap, request) > 2 * one_call + peer_call
    assert tier_worst_case(cheap, request) == one_call + gate_worst_case(cheap, request)
    assert gate_worst_case(tier(0), request) == Decimal(0)


async def test_a_heuristic_with_no_opinion_is_left_out_of_the_gates_score():
    cheap, strong = gated(GateSnapshot(samples=3))
    same = completion("Paris is the capital of France.")
    providers = {1: FakeProvider(cheap.endpoint, same), 2: FakeProvider(strong.endpoint, completion("Paris."))}

    result = await run_cascade(
        chat("What is the capital of France?"), policy(cheap, strong), providers, HeuristicScorer()
    )

    assert result.attempts[0].outcome is Outcome.ACCEPTED
    assert result.attempts[0].score == 1.0  # the agreement alone: the heuristic had no evidence


async def test_peers_that_agree_against_the_tiers_answer_escalate_it():
    """The peers' majority is never returned, so it must not vouch for the tier's own answer."""
    first_peer, second_peer = endpoint(8), endpoint(9)
    cheap, strong = gated(GateSnapshot(peers=(first_peer, second_peer)))
    providers = {
        1: FakeProvider(cheap.endpoint, completion("The answer is 41.")),
        8: FakeProvider(first_peer, completion("The answer is 42.")),
        9: FakeProvider(second_peer, completion("The answer is 42.")),
        2: FakeProvider(strong.endpoint, completion("The answer is 42.")),
    }

    result = await route(cheap, strong, providers, FixedScorer({}, default=0.5))

    # The tier's answer has one vote of three: (1/3 + 0.5) / 2, under the threshold of 0.7.
    assert math.isclose(result.attempts[0].score or 0.0, (1 / 3 + 0.5) / 2)
    assert result.attempts[0].outcome is Outcome.ESCALATED
    assert result.completion is not None and result.completion.text == "The answer is 42."
    assert providers[2].calls
