"""A request record as it travels from the hot path to the flusher: JSON-safe, money as strings."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class AttemptPayload(TypedDict):
    """One tier's call: what it cost, how long it took, how it was scored."""

    tier: int
    endpoint_id: int
    model: str
    outcome: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost: str
    price_version: int | None
    latency_ms: float
    score: float | None
    error: str
    error_kind: str
    quality_label: float | None


class SamplePayload(TypedDict):
    """The prompt and answer text a policy samples for the quality loop."""

    prompt: str
    answer: str
    answer_tier: int
    finish_reason: str
    max_tokens: int | None
    shadow: bool
    # The quality gate's signals of the answer (`gate.answer_signals`); absent in older payloads.
    signals: NotRequired[dict[str, float | list[float]]]


class AnswerText(TypedDict):
    position: int  # the attempt's position within the request
    text: str


class TextPayload(TypedDict):
    """The redacted prompt and answers of a policy that keeps text (routing.records.texts)."""

    prompt: str
    answers: list[AnswerText]


class RefusalPayload(TypedDict):
    """Why a request was turned away: the HTTP status and error code it was answered with."""

    status: int
    code: str


class RecordPayload(TypedDict):
    """Everything a request record and its attempts need (`recorder.record_payload` builds it)."""

    id: str
    created: str
    api_key_id: int
    api_key_prefix: str
    team: str
    app: str
    end_user: str
    policy_id: int
    policy_name: str
    policy_version: int
    task_category: str
    status: str
    final_tier: int | None
    final_model: str
    escalations: int
    escalated: bool
    input_tokens: int
    output_tokens: int
    cost: str
    baseline_cost: str
    latency_ms: float
    score: float | None
    quality_label: float | None
    error: str
    metadata: dict[str, Any]
    streamed: bool
    # A cache hit: "exact" or "semantic", and what the cached answer cost.
    cache: str
    cost_avoided: str
    sample: SamplePayload | None
    attempts: list[AttemptPayload]
    # Selection's decision (routing.engine.selection) and the experiment arm, when there was one.
    selection: NotRequired[dict[str, Any]]
    experiment_arm_id: NotRequired[int | None]
    # The prompt and answers, redacted, when the policy keeps text for the request log.
    text: NotRequired[TextPayload | None]
    # A semantic hit drawn for verification: what re-asking it needs.
    semantic_check: NotRequired[dict[str, Any]]
    # A refused request: the HTTP status and error code it was answered with.
    refusal: NotRequired[RefusalPayload]
