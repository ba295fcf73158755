"""Fake providers, scorers and a clock for engine tests, plus builders for the value types.

The engine's only outside dependencies are its `Provider` and `Scorer` arguments and
its clock, so these are the one seam every engine test mocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from routing.engine.types import (
    ChatRequest,
    Completion,
    EndpointSnapshot,
    Message,
    PolicySnapshot,
    ProviderType,
    TaskRuleSnapshot,
    Tier,
)


class FakeClock:
    """A `time.perf_counter` stand-in that only moves when a fake provider works."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProvider:
    """Plays a script: each call returns the next completion or raises the next error.

    The last entry repeats once the script runs out. `calls` records the `max_tokens`
    of every call.
    """

    def __init__(
        self,
        endpoint: EndpointSnapshot,
        *script: Completion | BaseException,
        clock: FakeClock | None = None,
        seconds: float = 0.0,
    ) -> None:
        self.endpoint = endpoint
        self.script = script
        self.clock = clock
        self.seconds = seconds
        self.calls: list[int] = []
        self.closed = False

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        self.calls.append(max_tokens)
        if self.clock is not None:
            self.clock.advance(self.seconds)
        step = self.script[min(len(self.calls), len(self.script)) - 1]
        if isinstance(step, BaseException):
            raise step
        return step

    async def aclose(self) -> None:
        self.closed = True


class HangingProvider:
    """Never answers: each call waits until it is cancelled. `entered` is set once a call is waiting."""

    def __init__(self, endpoint: EndpointSnapshot) -> None:
        self.endpoint = endpoint
        self.entered = asyncio.Event()
        self.calls = 0

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        self.calls += 1
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("a hanging call returned")

    async def aclose(self) -> None:
        pass


class SleepLog:
    """An `asyncio.sleep` stand-in that remembers each wait and returns at once."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


class FixedScorer:
    """Scores each answer by its text; remembers the task it was asked about."""

    name = "fixed"

    def __init__(self, scores: Mapping[str, float], default: float = 1.0) -> None:
        self.scores = scores
        self.default = default
        self.tasks: list[str] = []

    def score(self, chat: ChatRequest, completion: Completion, *, task: str) -> float:
        self.tasks.append(task)
        return self.scores.get(completion.text, self.default)


def endpoint(
    id: int,
    *,
    input_price: str = "1.00",
    output_price: str = "2.00",
    max_tokens: int = 1024,
    options: Mapping[str, object] | None = None,
    **resilience: Any,
) -> EndpointSnapshot:
    """An endpoint that is not retried unless a test asks (`max_retries=`, `breaker_*=`, `fallback=`)."""
    return EndpointSnapshot(
        id=id,
        name=f"model-{id}",
        provider_kind=ProviderType.REPLAY,
        model_id=f"model-{id}",
        input_price_per_m=Decimal(input_price),
        output_price_per_m=Decimal(output_price),
        max_tokens=max_tokens,
        options=options or {},
        **{"max_retries": 0, **resilience},
    )


def tier(
    position: int,
    threshold: float = 0.7,
    *,
    max_tokens: int | None = None,
    endpoint_max_tokens: int = 1024,
    input_price: str = "1.00",
    output_price: str = "2.00",
) -> Tier:
    """Tier `position` on an endpoint whose id is `position + 1`."""
    model = endpoint(position + 1, input_price=input_price, output_price=output_price, max_tokens=endpoint_max_tokens)
    return Tier(position, model, threshold, max_tokens)


def policy(
    *tiers: Tier,
    max_escalations: int = 1,
    task_rules: tuple[TaskRuleSnapshot, ...] = (),
    short_prompt_tokens: int = 0,
) -> PolicySnapshot:
    return PolicySnapshot(
        id=1,
        name="test",
        version=1,
        tiers=tiers,
        max_escalations=max_escalations,
        task_rules=task_rules,
        short_prompt_tokens=short_prompt_tokens,
    )


def rules(*specs: tuple[str, str, int]) -> tuple[TaskRuleSnapshot, ...]:
    """Task rules at positions 0, 1, 2, … in the order given."""
    return tuple(TaskRuleSnapshot(i, category, pattern, first) for i, (category, pattern, first) in enumerate(specs))


def chat(prompt: str = "What is the capital of France?", *, max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest((Message("user", prompt),), max_tokens=max_tokens)


def completion(
    text: str = "Paris is the capital of France.",
    *,
    input_tokens: int = 100,
    output_tokens: int = 50,
    cached_input_tokens: int = 0,
    finish_reason: str = "stop",
    logprobs: tuple[float, ...] | None = None,
    quality_label: float | None = None,
) -> Completion:
    return Completion(
        text=text,
        finish_reason=finish_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=10.0,
        cached_input_tokens=cached_input_tokens,
        logprobs=logprobs,
        quality_label=quality_label,
    )
