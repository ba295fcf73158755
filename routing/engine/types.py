"""Frozen value types the cascade engine works on.

Everything the engine needs arrives as one of these: a `PolicySnapshot` built from the
database by `routing.config.snapshots`, a `ChatRequest` parsed from the HTTP body, and the
`Completion` a provider returns. They are immutable so that one snapshot can be shared by
every concurrent request in a worker without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from routing.engine.selection_data import BALANCED, CategorySnapshot, GoalWeights, Measure

EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    # A factory, not `= EMPTY`: Python 3.11's dataclasses reject any unhashable default
    # (mappingproxy only became hashable in 3.12). Every instance shares the one EMPTY.
    return EMPTY


class ProviderType(StrEnum):
    OPENAI_COMPAT = "openai_compat"
    BEDROCK = "bedrock"
    REPLAY = "replay"


class Outcome(StrEnum):
    """What happened to one attempt."""

    ACCEPTED = "accepted"  # its answer was returned to the caller
    ESCALATED = "escalated"  # answered, but scored below the tier's threshold
    FAILED = "failed"  # provider error, timeout or refusal: fell through
    SAMPLE = "sample"  # another answer drawn only to measure agreement (a quality gate's)
    JUDGE = "judge"  # a judge model's grade of a tier's answer (a quality gate's)


@dataclass(frozen=True, slots=True)
class CredentialsAllowList:
    """The environment variables a provider may read a secret from: the deployment's, not an operator's.

    Built from the settings `CASCADEOPS_CREDENTIALS_ENV_PREFIX` and `_ALLOW` by
    `routing.config.snapshots`; the default is the settings' default.
    """

    prefix: str = "CASCADEOPS_PROVIDER_"
    names: frozenset[str] = frozenset()

    def permits(self, name: str) -> bool:
        return bool(name) and ((bool(self.prefix) and name.startswith(self.prefix)) or name in self.names)


@dataclass(frozen=True, slots=True)
class EndpointSnapshot:
    """One callable model and what it costs."""

    id: int
    name: str
    provider_kind: ProviderType
    model_id: str
    input_price_per_m: Decimal
    output_price_per_m: Decimal
    context_window: int = 8192
    typical_latency_ms: int = 1000
    quality_prior: float = 0.5
    max_tokens: int = 1024
    temperature: float = 0.0
    base_url: str = ""
    # The *name* of an environment variable holding the secret, never the secret.
    credentials_env: str = ""
    # Which variables `credentials_env` may name; a provider reads no other.
    credentials_allowed: CredentialsAllowList = CredentialsAllowList()
    # USD per 1M cached input tokens; None bills them at the input price.
    cached_input_price_per_m: Decimal | None = None
    # The price-book entry these prices come from (0: not from the price book).
    price_version: int = 0
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 60.0
    # Provider-specific knobs (replay latency, Bedrock region, logprobs support, ...).
    options: Mapping[str, Any] = field(default_factory=_empty)
    # Retries of a retryable error, and the circuit breaker's settings.
    max_retries: int = 2
    breaker_failure_rate: float = 0.5
    breaker_min_requests: int = 10
    breaker_window_s: int = 30
    breaker_open_s: int = 30
    # Called in this endpoint's place while its breaker is open (None: skip the tier).
    fallback: EndpointSnapshot | None = None
    # What requests it takes: a request needing what it lacks skips its tier.
    supports_tools: bool = True
    supports_json: bool = True
    supports_images: bool = False


@dataclass(frozen=True, slots=True)
class GateSnapshot:
    """What a tier's answer is checked with beyond the policy's scorer (see docs/quality.md).

    `samples` > 1 draws that many answers from the tier's endpoint in all (consistency);
    `peers` are other cheap endpoints asked the same (agreement across models); `judge`
    grades the chosen answer. Every extra call is paid for and recorded.
    """

    samples: int = 1
    sample_temperature: float = 0.7
    extractor: str = "auto"
    peers: tuple[EndpointSnapshot, ...] = ()
    judge: EndpointSnapshot | None = None

    @property
    def active(self) -> bool:
        return self.samples > 1 or bool(self.peers) or self.judge is not None


NO_GATE = GateSnapshot()


@dataclass(frozen=True, slots=True)
class Tier:
    """One rung of a cascade: an endpoint and the confidence its answer needs."""

    position: int
    endpoint: EndpointSnapshot
    threshold: float
    max_tokens: int | None = None  # per-tier cap; None means the endpoint's max_tokens
    gate: GateSnapshot = NO_GATE


@dataclass(frozen=True, slots=True)
class TaskRuleSnapshot:
    """Prompt pattern → task category → the tier a matching request starts on."""

    position: int
    category: str
    pattern: str  # a regular expression, matched case-insensitively
    first_tier: int = 0


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """A policy as of one version: everything `run_cascade` needs, nothing from the DB."""

    id: int
    name: str
    version: int
    tiers: tuple[Tier, ...]
    scorer: str = "heuristic"
    max_escalations: int = 1
    task_rules: tuple[TaskRuleSnapshot, ...] = ()
    # Prompts estimated under this many tokens start on the cheapest tier (0: off).
    short_prompt_tokens: int = 0
    optimisation_goal: str = "balanced"
    # Exact-match cache lifetime (0: off) and the semantic cache's settings.
    cache_ttl_s: int = 0
    semantic_cache: bool = False
    semantic_threshold: float = 0.95
    semantic_multi_turn: bool = False
    semantic_verify_rate: float = 0.0
    # Selection (routing.engine.selection): the goal's weights, the latency budget, the
    # measured figures by (endpoint id, category), the task categories and their ladders.
    weights: GoalWeights = BALANCED
    latency_budget_ms: int | None = None
    measures: Mapping[tuple[int, str], Measure] = field(default_factory=_empty)  # type: ignore[arg-type]
    categories: tuple[CategorySnapshot, ...] = ()
    ladders: Mapping[str, tuple[Tier, ...]] = field(default_factory=_empty)
    # Set on the copy one request is routed with (routing.engine.selection.routed_policy):
    # why it starts where it does, and the experiment arm that chose the policy.
    selection: Mapping[str, Any] = field(default_factory=_empty)
    experiment_arm: int | None = None
    # Request fields the API does not know: "refuse" them (400) or "pass" them to
    # OpenAI-compatible providers as sent.
    unknown_fields: str = "refuse"
    # Requests with tools start on at least this tier (None: wherever the rest says).
    tools_first_tier: int | None = None
    # Where /v1/embeddings requests go (None: the policy serves none).
    embeddings: EndpointSnapshot | None = None

    @property
    def strongest(self) -> Tier:
        return self.tiers[-1]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call a model asked for: `arguments` is the JSON text it wrote, unparsed."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn; `content` is its text (text parts joined).

    `parts` keeps an array content as sent when it has more than text (`image_url` parts);
    `tool_calls` are an assistant turn's calls, `tool_call_id` names the call a `tool`
    turn answers.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""
    parts: tuple[Mapping[str, Any], ...] = ()


# ChatRequest fields that change how the answer is delivered, not the answer: a cache
# key leaves them out, so a streamed and a plain request for the same prompt share one entry.
DELIVERY_FIELDS = frozenset({"stream", "include_usage", "max_tokens_param"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of an OpenAI chat-completions body that change the answer or its record."""

    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    user: str = ""
    metadata: Mapping[str, str] = field(default_factory=_empty)
    logprobs: bool = False
    # Function tools (`{"type": "function", "function": {...}}`) and the caller's choice among them.
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    # `{"type": "json_object"}` or `{"type": "json_schema", "json_schema": {...}}`; None: text.
    response_format: Mapping[str, Any] | None = None
    # Every other parameter the providers get as sent (stop, seed, top_p, the penalties,
    # logit_bias, top_logprobs, parallel_tool_calls, reasoning_effort, passed-through fields).
    options: Mapping[str, Any] = field(default_factory=_empty)
    # Fields `options` holds that the API does not know (a policy may refuse them).
    unknown: tuple[str, ...] = ()
    # How the answer is delivered, not what it is: never part of a cache key
    # (see DELIVERY_FIELDS).
    stream: bool = False
    include_usage: bool = False
    # The name the caller gave the token limit: newer OpenAI models take only `max_completion_tokens`.
    max_tokens_param: str = "max_tokens"

    @property
    def structured(self) -> bool:
        """Whether the answer must be a tool call or JSON: what the structure checks judge."""
        return bool(self.tools) or self.response_format is not None

    @property
    def prompt(self) -> str:
        """The last user message: what task rules and the replay provider look at."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return self.messages[-1].content if self.messages else ""


@dataclass(frozen=True, slots=True)
class Completion:
    """What a provider answered, with the usage it reported (or we estimated)."""

    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    cached_input_tokens: int = 0
    logprobs: tuple[float, ...] | None = None
    # A known-true quality in [0, 1] (the replay provider's recorded correctness).
    quality_label: float | None = None
    model: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    # OpenAI's `logprobs.content` entries as the provider sent them, for the caller.
    logprobs_content: tuple[Mapping[str, Any], ...] | None = None
    system_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    """What an embeddings endpoint answered: one vector per input, and the input tokens billed."""

    vectors: tuple[tuple[float, ...], ...]
    input_tokens: int
    latency_ms: float
    model: str = ""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to one tier, successful or not."""

    tier: int
    endpoint_id: int
    model: str
    outcome: Outcome
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: Decimal = Decimal(0)
    price_version: int = 0
    latency_ms: float = 0.0
    score: float | None = None
    error: str = ""
    error_kind: str = ""  # "timeout", "unavailable", "refused", "bad_request", ...
    quality_label: float | None = None
    # What the tier answered; kept only for policies that store text (routing.records.texts).
    answer: str = ""
    # What the quality gate measured of this answer (`gate.answer_signals`): the learned
    # scorer's features when a sampled answer is labelled.
    signals: Mapping[str, float] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """Every attempt of one routed request, the answer (if any) and the totals."""

    task: str
    attempts: tuple[Attempt, ...]
    completion: Completion | None = None
    latency_ms: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=_empty)

    @property
    def answered(self) -> bool:
        return self.completion is not None

    @property
    def final(self) -> Attempt | None:
        """The accepted attempt, or None when every tier failed.

        Usually the last one; not when the tiers after an escalation all failed and the
        cascade fell back to the best answer it already had.
        """
        accepted = (a for a in self.attempts if a.outcome is Outcome.ACCEPTED)
        return next(accepted, None)

    @property
    def cost(self) -> Decimal:
        """Every tier tried is paid for, the escalated and the failed ones too."""
        return sum((a.cost for a in self.attempts), Decimal(0))

    @property
    def input_tokens(self) -> int:
        return sum(a.input_tokens for a in self.attempts)

    @property
    def output_tokens(self) -> int:
        return sum(a.output_tokens for a in self.attempts)

    @property
    def escalations(self) -> int:
        return sum(1 for a in self.attempts if a.outcome is Outcome.ESCALATED)

    @property
    def escalated(self) -> bool:
        """True when a tier other than the first one tried gave the answer."""
        final = self.final
        return final is not None and final is not self.attempts[0]
