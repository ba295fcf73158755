"""Sampled request texts: which requests keep their prompt and answer, and storing them.

Records hold numbers, not text. The quality loop needs text for a small share of
traffic: the learned scorer trains on (prompt, cheap answer, label), shadow evaluation
judges the cheap answer, and what-if replays re-score it under another scorer. So, per
policy, `sample_rate` of requests keep their last user message and the answer they
returned, and `shadow_rate` of requests answered by a cheaper tier keep them and are
re-checked by the strongest tier. Both default to 0: no text is stored unless an
operator asks for it. Each text is capped at `MAX_SAMPLE_CHARS`.

The draw happens on the hot path, in the record payload (the text is gone afterwards);
the rows are written by a `records_stored` receiver inside the storing transaction.
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
        )
        for p in payloads
        if (s := p.get("sample"))
    )


def sample_chat(sample: RequestSample) -> ChatRequest:
    """The request as the scorer saw it (its last user message, its token limit)."""
    return ChatRequest(messages=(Message(role="user", content=sample.prompt),), max_tokens=sample.max_tokens)


def sample_completion(sample: RequestSample) -> Completion:
    """The stored answer as a completion a scorer can rate again."""
    return Completion(
        text=sample.answer,
        finish_reason=sample.finish_reason or "stop",
        input_tokens=estimate_tokens(sample.prompt),
        output_tokens=estimate_tokens(sample.answer),
        latency_ms=0.0,
    )
