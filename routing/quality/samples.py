"""Sampled request texts: storing the prompt and answer of the requests a policy samples.

Records hold numbers, not text; per policy, `sample_rate` and `shadow_rate` of requests keep
their last user message and answer (both default to 0). The draw happens on the hot path
(`routing.records.sampling`); the rows are written by a `records_stored` receiver inside the
storing transaction. See docs/quality.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from routing.engine.tokens import estimate_tokens
from routing.engine.types import ChatRequest, Completion, Message
from routing.models import RequestSample
from routing.records.payload import RecordPayload as Payload


def samples_store(sender: Any, *, payloads: list[Payload], **kwargs: Any) -> None:
    """`records_stored` receiver: keep the sampled texts of the records stored just now."""
    RequestSample.objects.bulk_create(
        RequestSample(
            record_id=p["id"],
            created=datetime.fromisoformat(p["created"]),
            prompt=s["prompt"],
            answer=s["answer"],
            answer_tier=s["answer_tier"],
            finish_reason=s["finish_reason"],
            max_tokens=s["max_tokens"],
            signals=s.get("signals", {}),
        )
        for p in payloads
        if (s := p.get("sample"))
    )


def sample_chat(sample: RequestSample) -> ChatRequest:
    """The request as the scorer saw it (its last user message, its token limit)."""
    return ChatRequest(messages=(Message(role="user", content=sample.prompt),), max_tokens=sample.max_tokens)


def sample_completion(sample: RequestSample) -> Completion:
    """The stored answer as a completion a scorer can rate again (with its token log-probabilities, if kept)."""
    logprobs = (sample.signals or {}).get("token_logprobs")
    return Completion(
        text=sample.answer,
        finish_reason=sample.finish_reason or "stop",
        input_tokens=estimate_tokens(sample.prompt),
        output_tokens=estimate_tokens(sample.answer),
        latency_ms=0.0,
        logprobs=tuple(float(value) for value in logprobs) if isinstance(logprobs, list) and logprobs else None,
    )
