"""Which requests keep their prompt and answer: drawn on the hot path, against the policy's rates."""

from __future__ import annotations

import random

from routing.config.snapshots import config_cache
from routing.engine.types import CascadeResult, ChatRequest, Completion, PolicySnapshot
from routing.models import MAX_SAMPLE_CHARS
from routing.records.payload import SamplePayload


def sample_payload(*, policy: PolicySnapshot, chat: ChatRequest, result: CascadeResult) -> SamplePayload | None:
    """The texts to keep for this request, or None; drawn against the policy's rates."""
    quality = config_cache.quality.get(policy.id)
    final, completion = result.final, result.completion
    if quality is None or final is None or completion is None:
        return None
    cheap = final.tier < policy.strongest.position
    shadow = cheap and random.random() < quality.shadow_rate
    if not shadow and random.random() >= quality.sample_rate:
        return None
    return {
        "prompt": chat.prompt[:MAX_SAMPLE_CHARS],
        "answer": completion.text[:MAX_SAMPLE_CHARS],
        "answer_tier": final.tier,
        "finish_reason": completion.finish_reason,
        "max_tokens": chat.max_tokens,
        "shadow": shadow,
        "signals": {**final.signals, **token_logprobs(completion)},
    }


# A sampled answer keeps at most this many token log-probabilities: the learned scorer's
# features summarise them (mean, minimum, low quantiles), and a row stays small.
MAX_SAMPLE_LOGPROBS = 2_000


def token_logprobs(completion: Completion) -> dict[str, list[float]]:
    """The answer's token log-probabilities, when the provider sent them, for retraining:
    the scorer then learns from the same features it sees live."""
    if not completion.logprobs:
        return {}
    return {"token_logprobs": [round(value, 4) for value in completion.logprobs[:MAX_SAMPLE_LOGPROBS]]}
