"""run_cascade: which tiers are called, what each attempt records, what the caller gets."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from routing.engine import CascadeResult, HeuristicScorer, Outcome, Tier, run_cascade
from routing.engine.errors import ProviderTimeout, ProviderUnavailable
from testing.fakes import FakeClock, FakeProvider, FixedScorer, chat, completion, endpoint, policy, rules, tier

CHEAP = completion("cheap answer", input_tokens=1000, output_tokens=200)
MIDDLE = completion("middle answer", input_tokens=1000, output_tokens=300)
STRONG = completion("strong answer", input_tokens=1000, output_tokens=400)


def outcomes(result: CascadeResult) -> list[Outcome]:
    return [a.outcome for a in result.attempts]


async def test_accepts_the_cheap_answer_when_it_meets_the_threshold() -> None:
    cheap, strong = FakeProvider(tier(0).endpoint, CHEAP), FakeProvider(tier(1).endpoint, STRONG)
    result = await run_cascade(
        chat(), policy(tier(0, 0.7), tier(1)), {1: cheap, 2: strong}, FixedScorer({"cheap answer": 0.7})
    )

    assert result.completion is CHEAP
    assert outcomes(result) == [Outcome.ACCEPTED]
    assert strong.calls == []


async def test_escalates_when_score_below_threshold() -> None:
    providers = {1: FakeProvider(tier(0).endpoint, CHEAP), 2: FakeProvider(tier(1).endpoint, STRONG)}
    result = await run_cascade(
        chat(), policy(tier(0, 0.7), tier(1, 0.7)), providers, FixedScorer({"cheap answer": 0.69})
    )

    assert result.completion is STRONG
    assert outcomes(result) == [Outcome.ESCALATED, Outcome.ACCEPTED]
    assert [a.score for a in result.attempts] == [0.69, 1.0]
    assert result.escalated
    assert result.final is result.attempts[1]


async def test_last_tier_answer_is_accepted_even_below_its_threshold() -> None:
    providers = {1: FakeProvider(tier(0).endpoint, CHEAP), 2: FakeProvider(tier(1).endpoint, STRONG)}
    result = await run_cascade(chat(), policy(tier(0), tier(1, 0.99)), providers, FixedScorer({}, default=0.1))

    assert result.completion is STRONG
    assert outcomes(result) == [Outcome.ESCALATED, Outcome.ACCEPTED]


async def test_falls_through_on_provider_timeout() -> None:
    providers = {
        1: FakeProvider(tier(0).endpoint, ProviderTimeout("read timed out after 60s")),
        2: FakeProvider(tier(1).endpoint, STRONG),
    }
    result = await run_cascade(chat(), policy(tier(0), tier(1)), providers, FixedScorer({}))

    failed, accepted = result.attempts
    assert (failed.outcome, failed.error_kind, failed.error) == (Outcome.FAILED, "timeout", "read timed out after 60s")
    # Cut off mid-call, it may be billed in full: 30 bytes + 4 tokens in, 1,024 out,
    # at $1 and $2 per million tokens.
    assert (failed.score, failed.input_tokens, failed.output_tokens) == (None, 34, 1024)
    assert failed.cost == Decimal("0.002082")
    assert accepted.outcome is Outcome.ACCEPTED
    assert result.completion is STRONG


async def test_failures_fall_through_even_when_no_escalation_is_allowed() -> None:
    providers = {
        1: FakeProvider(tier(0).endpoint, ProviderUnavailable("503")),
        2: FakeProvider(tier(1).endpoint, ProviderUnavailable("429")),
        3: FakeProvider(tier(2).endpoint, STRONG),
    }
    result = await run_cascade(chat(), policy(tier(0), tier(1), tier(2), max_escalations=0), providers, FixedScorer({}))

    assert outcomes(result) == [Outcome.FAILED, Outcome.FAILED, Outcome.ACCEPTED]
    assert result.completion is STRONG


async def test_unexpected_provider_exception_becomes_a_failed_attempt() -> None:
    providers = {
        1: FakeProvider(tier(0).endpoint, KeyError("choices")),
        2: FakeProvider(tier(1).endpoint, STRONG),
    }
    result = await run_cascade(chat(), policy(tier(0), tier(1)), providers, FixedScorer({}))

    failed = result.attempts[0]
    assert (failed.outcome, failed.error_kind, failed.error) == (Outcome.FAILED, "error", "'choices'")
    assert result.completion is STRONG


async def test_an_exception_without_a_message_is_named_by_its_type() -> None:
    providers = {1: FakeProvider(tier(0).endpoint, RuntimeError()), 2: FakeProvider(tier(1).endpoint, STRONG)}
    result = await run_cascade(chat(), policy(tier(0), tier(1)), providers, FixedScorer({}))

    assert result.attempts[0].error == "RuntimeError"


async def test_an_endpoint_without_a_provider_is_a_misconfigured_failure() -> None:
    result = await run_cascade(
        chat(), policy(tier(0), tier(1)), {2: FakeProvider(tier(1).endpoint, STRONG)}, FixedScorer({})
    )

    failed = result.attempts[0]
    assert (failed.outcome, failed.error_kind, failed.endpoint_id) == (Outcome.FAILED, "misconfigured", 1)
    assert "no provider for endpoint 1" in failed.error
    assert result.completion is STRONG


async def test_cancellation_is_not_swallowed() -> None:
    providers = {1: FakeProvider(tier(0).endpoint, asyncio.CancelledError()), 2: FakeProvider(tier(1).endpoint)}

    with pytest.raises(asyncio.CancelledError):
        await run_cascade(chat(), policy(tier(0), tier(1)), providers, FixedScorer({}))


async def test_three_tier_cascade_reaches_the_strongest_tier() -> None:
    providers = {
        1: FakeProvider(tier(0).endpoint, CHEAP),
        2: FakeProvider(tier(1).endpoint, MIDDLE),
        3: FakeProvider(tier(2).endpoint, STRONG),
    }
    scorer = FixedScorer({"cheap answer": 0.2, "middle answer": 0.5})
    result = await run_cascade(chat(), policy(tier(0), tier(1), tier(2), max_escalations=2), providers, scorer)

    assert outcomes(result) == [Outcome.ESCALATED, Outcome.ESCALATED, Outcome.ACCEPTED]
    assert [a.tier for a in result.attempts] == [0, 1, 2]
    assert result.completion is STRONG
    assert result.escalations == 2


async def test_max_escalations_caps_the_cascade() -> None:
    strongest = FakeProvider(tier(2).endpoint, STRONG)
    providers = {1: FakeProvider(tier(0).endpoint, CHEAP), 2: FakeProvider(tier(1).endpoint, MIDDLE), 3: strongest}
    scorer = FixedScorer({}, default=0.1)
    result = await run_cascade(chat(), policy(tier(0), tier(1), tier(2), max_escalations=1), providers, scorer)

    assert outcomes(result) == [Outcome.ESCALATED, Outcome.ACCEPTED]
    assert result.completion is MIDDLE
    assert strongest.calls == []


async def test_zero_escalations_accepts_the_first_answer() -> None:
    providers = {1: FakeProvider(tier(0).endpoint, CHEAP), 2: FakeProvider(tier(1).endpoint, STRONG)}
    result = await run_cascade(
        chat(), policy(tier(0), tier(1), max_escalations=0), providers, FixedScorer({}, default=0.0)
    )

    assert outcomes(result) == [Outcome.ACCEPTED]
    assert result.completion is CHEAP


async def test_disallowing_escalation_accepts_a_low_scored_answer() -> None:
    providers = {1: FakeProvider(tier(0).endpoint, CHEAP), 2: FakeProvider(tier(1).endpoint, STRONG)}
    result = await run_cascade(
        chat(), policy(tier(0), tier(1)), providers, FixedScorer({}, default=0.0), allow_escalation=False
    )

    assert outcomes(result) == [Outcome.ACCEPTED]
    assert result.completion is CHEAP


async def test_all_tiers_failed_has_no_completion() -> None:
    providers = {
        1: FakeProvider(tier(0).endpoint, ProviderTimeout("slow")),
        2: FakeProvider(tier(1).endpoint, ProviderUnavailable("down")),
    }
    result = await run_cascade(chat(), policy(tier(0), tier(1)), providers, FixedScorer({}))

    assert result.completion is None
    assert not result.answered
    assert result.final is None
    assert [a.error_kind for a in result.attempts] == ["timeout", "unavailable"]


async def test_keeps_the_escalated_answer_when_every_stronger_tier_fails() -> None:
    providers = {1: FakeProvider(tier(0).endpoint, CHEAP), 2: FakeProvider(tier(1).endpoint, ProviderTimeout("slow"))}
    result = await run_cascade(chat(), policy(tier(0), tier(1)), providers, FixedScorer({}, default=0.3))

    assert result.completion is CHEAP
    assert outcomes(result) == [Outcome.ACCEPTED, Outcome.FAILED]
    assert result.final is result.attempts[0]
    assert not result.escalated


async def test_keeps_the_best_scored_of_several_escalated_answers() -> None:
    providers = {
        1: FakeProvider(tier(0).endpoint, CHEAP),
        2: FakeProvider(tier(1).endpoint, MIDDLE),
        3: FakeProvider(tier(2).endpoint, ProviderTimeout("slow")),
    }
    scorer = FixedScorer({"cheap answer": 0.6, "middle answer": 0.4})
    result = await run_cascade(chat(), policy(tier(0), tier(1), tier(2), max_escalations=2), providers, scorer)

    assert result.completion is CHEAP
    assert outcomes(result) == [Outcome.ACCEPTED, Outcome.ESCALATED, Outcome.FAILED]


async def test_cost_includes_every_tier_tried() -> None:
    # Tier 0: 1000 in × $0.50/M + 200 out × $1.50/M = $0.0005 + $0.0003 = $0.0008
    # Tier 1 fails: no usage, no cost.
    # Tier 2: 1000 in × $10/M + 400 out × $30/M = $0.01 + $0.012 = $0.022
    tiers = (
        tier(0, input_price="0.50", output_price="1.50"),
        tier(1),
        tier(2, input_price="10", output_price="30"),
    )
    providers = {
        1: FakeProvider(tiers[0].endpoint, CHEAP),
        2: FakeProvider(tiers[1].endpoint, ProviderUnavailable("down")),
        3: FakeProvider(tiers[2].endpoint, STRONG),
    }
    result = await run_cascade(chat(), policy(*tiers), providers, FixedScorer({"cheap answer": 0.1}))

    assert [a.cost for a in result.attempts] == [Decimal("0.0008"), Decimal(0), Decimal("0.022")]
    assert result.cost == Decimal("0.0228")
    assert (result.input_tokens, result.output_tokens) == (2000, 600)


async def test_cached_input_tokens_are_billed_at_the_cached_price() -> None:
    model = endpoint(1, input_price="3.00", output_price="15.00", options={"cached_input_price_per_m": "0.30"})
    answer = completion(input_tokens=10_000, cached_input_tokens=8_000, output_tokens=500)
    result = await run_cascade(chat(), policy(Tier(0, model, 0.5)), {1: FakeProvider(model, answer)}, FixedScorer({}))

    # 2,000 × $3 + 8,000 × $0.30 + 500 × $15 = $15,900 per million tokens.
    assert result.cost == Decimal("0.0159")


async def test_passes_the_tightest_max_tokens_to_the_provider() -> None:
    capped = tier(0, max_tokens=300, endpoint_max_tokens=1024)
    uncapped = tier(1, endpoint_max_tokens=4096)
    providers = {
        1: FakeProvider(capped.endpoint, ProviderTimeout("slow")),
        2: FakeProvider(uncapped.endpoint, STRONG),
    }
    await run_cascade(chat(max_tokens=500), policy(capped, uncapped), providers, FixedScorer({}))
    await run_cascade(chat(), policy(capped, uncapped), providers, FixedScorer({}))

    assert providers[1].calls == [300, 300]
    assert providers[2].calls == [500, 4096]


async def test_a_task_rule_can_start_on_a_stronger_tier() -> None:
    cheap, strong = FakeProvider(tier(0).endpoint, CHEAP), FakeProvider(tier(1).endpoint, STRONG)
    scorer = FixedScorer({})
    snapshot = policy(tier(0), tier(1), task_rules=rules(("legal", r"\bcontract\b", 1)))
    result = await run_cascade(chat("Review this contract clause"), snapshot, {1: cheap, 2: strong}, scorer)

    assert cheap.calls == []
    assert [a.tier for a in result.attempts] == [1]
    assert result.task == "legal"
    assert scorer.tasks == ["legal"]


async def test_attempts_record_model_tokens_latency_and_quality_label() -> None:
    clock = FakeClock()
    answer = completion("labelled", input_tokens=120, output_tokens=30, quality_label=1.0)
    providers = {
        1: FakeProvider(tier(0).endpoint, ProviderTimeout("slow"), clock=clock, seconds=0.25),
        2: FakeProvider(tier(1).endpoint, answer, clock=clock, seconds=0.5),
    }
    result = await run_cascade(chat(), policy(tier(0), tier(1)), providers, FixedScorer({}), clock=clock)

    failed, accepted = result.attempts
    assert (failed.model, failed.endpoint_id, failed.latency_ms) == ("model-1", 1, 250.0)
    assert (accepted.model, accepted.endpoint_id, accepted.tier) == ("model-2", 2, 1)
    assert (accepted.input_tokens, accepted.output_tokens) == (120, 30)
    assert (accepted.latency_ms, accepted.quality_label) == (500.0, 1.0)
    assert result.latency_ms == 750.0


async def test_a_policy_without_tiers_answers_nothing() -> None:
    result = await run_cascade(chat(), policy(), {}, FixedScorer({}))

    assert result.attempts == ()
    assert result.completion is None


async def test_heuristic_scorer_escalates_a_truncated_cheap_answer() -> None:
    cut_off = completion("The total is 15 + 25 = <<15+2", finish_reason="length")
    providers = {1: FakeProvider(tier(0).endpoint, cut_off), 2: FakeProvider(tier(1).endpoint, STRONG)}
    result = await run_cascade(chat(), policy(tier(0, 0.8), tier(1)), providers, HeuristicScorer())

    assert outcomes(result) == [Outcome.ESCALATED, Outcome.ACCEPTED]
    assert result.attempts[0].score is not None and result.attempts[0].score < 0.8
