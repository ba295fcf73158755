"""A tier's quality gate: more samples, peer models and a judge, each paid for and recorded.

The score of a gated answer is the agreement of the answers (extracted final answers where
there are any, else their meaning) and the judge's grade, with the policy's scorer. See
docs/quality.md for the rubric and how the signals combine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from routing.engine import embeddings
from routing.engine.agreement import Agreement, Embedder, agreement, by_embedding
from routing.engine.costing import JUDGE_MAX_TOKENS
from routing.engine.scoring import logprob_features
from routing.engine.tiers import TierAnswer, TierCaller, answered_attempt, samples_in_one_call
from routing.engine.types import Attempt, ChatRequest, Completion, GateSnapshot, Message, Outcome, Tier

# Texts → one row per text (MiniLM sentence embeddings); run off the event loop.
Embed = Embedder

JUDGE_RUBRIC = (
    "You grade answers. Read the request and the answer below. Reply with one word: "
    "'yes' if the answer is correct, complete and follows the request's instructions, "
    "otherwise 'no'.\n\n### Request\n{prompt}\n\n### Answer\n{answer}\n\n### Is the answer correct? (yes/no)"
)
# The extractor that compares whole answers by meaning, never by a final answer.
MEANING = "text"
GRADE = re.compile(r"\b(yes|no)\b|(\d+(?:\.\d+)?)\s*/\s*(10|5|100)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """What the gate found: the answer to return, the extra calls, and the signals."""

    completion: Completion
    attempts: tuple[Attempt, ...]
    agreement: float | None = None
    judge: float | None = None

    def score(self, base: float | None) -> float:
        """The gate's signals, with the policy scorer's when it has an opinion (None: it has none)."""
        signals = [s for s in (self.agreement, self.judge, base) if s is not None]
        return sum(signals) / len(signals) if signals else 0.0


async def gate_check(caller: TierCaller, tier: Tier, answer: TierAnswer, *, embed: Embed | None = None) -> GateVerdict:
    """Ask the tier's extra samples and peers in parallel, pick a majority answer, then judge it."""
    gate = tier.gate
    samples, peers = await asyncio.gather(_samples(caller, tier), asyncio.gather(*_peer_calls(caller, tier, gate)))
    extra = [*samples, *peers]
    attempts = [_as_attempt(called, Outcome.SAMPLE) for called in extra]
    answers = [answer.completion] + [c.completion if isinstance(c, TierAnswer) else None for c in extra]
    answered = [i for i, c in enumerate(answers) if c is not None]
    completion, agreed = answer.completion, None
    if len(answered) > 1:
        texts = [answers[i].text for i in answered]  # type: ignore[union-attr]
        vote = await _agreement(texts, gate, caller.chat.prompt, embed)
        chosen = answered[vote.representative]
        if chosen < gate.samples:
            # One of the tier's own answers is in the majority: it is returned, scored by its share.
            completion = answers[chosen] or completion
            agreed = float(vote.score)
        else:
            # The majority is a peer's, which is never returned: the tier's first answer is, scored
            # by how far the others back it, so that peers agreeing against it escalate.
            agreed = float(vote.support)
    judged = None
    if gate.judge is not None:
        judge_caller = dataclasses.replace(caller, chat=judge_chat(caller.chat, completion.text))
        judge_call = await judge_caller.call(_judge_tier(tier, gate))
        attempts.append(_as_attempt(judge_call, Outcome.JUDGE))
        if isinstance(judge_call, TierAnswer):
            judged = judge_grade(judge_call.completion)
    return GateVerdict(completion, tuple(attempts), agreed, judged)


async def _samples(caller: TierCaller, tier: Tier) -> list[TierAnswer | Attempt]:
    """The tier's extra samples: one call with `n` where the endpoint takes it, else parallel calls
    (also for whatever a one-call answer fell short of: a fallback endpoint may not take `n`)."""
    sampler = dataclasses.replace(
        caller, chat=dataclasses.replace(caller.chat, temperature=tier.gate.sample_temperature)
    )
    wanted = tier.gate.samples - 1
    found: list[TierAnswer | Attempt] = []
    if wanted > 1 and samples_in_one_call(tier.endpoint):
        called = await sampler.call(tier, n=wanted)
        if not isinstance(called, TierAnswer):
            return [called]  # retried already: asking again in parallel would not help
        found = list[TierAnswer | Attempt](called.each())
    rest = await asyncio.gather(*(sampler.call(tier) for _ in range(wanted - len(found))))
    return [*found, *rest][: max(wanted, 0)]


def _peer_calls(caller: TierCaller, tier: Tier, gate: GateSnapshot) -> list[Any]:
    return [caller.call(dataclasses.replace(tier, endpoint=peer, gate=GateSnapshot())) for peer in gate.peers]


def _judge_tier(tier: Tier, gate: GateSnapshot) -> Tier:
    assert gate.judge is not None
    return dataclasses.replace(tier, endpoint=gate.judge, max_tokens=JUDGE_MAX_TOKENS, gate=GateSnapshot())


async def _agreement(texts: list[str], gate: GateSnapshot, prompt: str, embed: Embed | None) -> Agreement:
    # Comparing by meaning runs MiniLM, CPU work: off the event loop, so other requests keep moving.
    return await asyncio.to_thread(_agreement_now, texts, gate.extractor, prompt, embed or embeddings.embed)


def _agreement_now(texts: list[str], extractor: str, prompt: str, embed: Embed) -> Agreement:
    if extractor == MEANING:
        by_meaning = by_embedding(texts, embed)
        if by_meaning is not None:
            return by_meaning
        extractor = "auto"  # no embedding model here: fall back to final answers
    return agreement(texts, kind=extractor, prompt=prompt, embed=embed)


def _as_attempt(called: TierAnswer | Attempt, outcome: Outcome) -> Attempt:
    if isinstance(called, Attempt):
        return called  # a failed extra call: recorded as FAILED, and paid for if billed
    return answered_attempt(called, None, outcome)


def judge_chat(chat: ChatRequest, answer: str) -> ChatRequest:
    """The judge's request: the rubric around the user's last message and the answer."""
    prompt = JUDGE_RUBRIC.format(prompt=chat.prompt, answer=answer)
    return ChatRequest(messages=(Message(role="user", content=prompt),), max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)


def judge_grade(completion: Completion) -> float | None:
    """The judge's confidence that the answer is right: from its first token's log-probability
    when the provider returned one, else from the word or grade it wrote; None when unclear."""
    match = GRADE.search(completion.text)
    if match is None:
        return None
    if match.group(1):
        said_yes = match.group(1).lower() == "yes"
        probability = _first_token_probability(completion.logprobs)
        if probability is None:
            return 1.0 if said_yes else 0.0
        return probability if said_yes else 1.0 - probability
    return min(max(float(match.group(2)) / float(match.group(3)), 0.0), 1.0)


def answer_signals(verdict: GateVerdict | None, completion: Completion) -> dict[str, float]:
    """The signals a retrained scorer can learn from: the gate's agreement and judge grade
    where they ran, and the answer's token log-probabilities where the provider sent them."""
    signals: dict[str, float] = {}
    if verdict is not None and verdict.agreement is not None:
        signals["agreement"] = verdict.agreement
    if verdict is not None and verdict.judge is not None:
        signals["judge"] = verdict.judge
    if completion.logprobs:
        signals.update(logprob_features(completion.logprobs))
    signals["stopped_by_length"] = float(completion.finish_reason == "length")
    return signals


def _first_token_probability(logprobs: Sequence[float] | None) -> float | None:
    if not logprobs:
        return None
    value = logprobs[0]
    return math.exp(value) if math.isfinite(value) and value <= 0 else None
