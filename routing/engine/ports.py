"""The interfaces the engine calls through; Django-side code supplies implementations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from routing.engine.types import ChatRequest, Completion, Embeddings, EndpointSnapshot


@runtime_checkable
class Provider(Protocol):
    """Calls one model endpoint. Raises `engine.errors.ProviderError` subclasses on failure."""

    endpoint: EndpointSnapshot

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SamplingProvider(Provider, Protocol):
    """A provider that can return several answers from one call (OpenAI's `n`)."""

    async def complete_many(self, chat: ChatRequest, *, max_tokens: int, n: int) -> tuple[Completion, ...]: ...


@runtime_checkable
class EmbeddingsProvider(Protocol):
    """Calls one embeddings endpoint (`/v1/embeddings`); raises `ProviderError` subclasses on failure."""

    endpoint: EndpointSnapshot

    async def embed(self, inputs: Sequence[str], *, dimensions: int | None) -> Embeddings: ...


@runtime_checkable
class Scorer(Protocol):
    """Turns (request, answer, provider metadata) into a confidence in [0, 1]."""

    name: str

    def score(self, chat: ChatRequest, completion: Completion, *, task: str) -> float: ...


@runtime_checkable
class OpinionScorer(Scorer, Protocol):
    """A scorer that can say it has no opinion on an answer (None) instead of a neutral score."""

    def opinion(self, chat: ChatRequest, completion: Completion, *, task: str) -> float | None: ...


@runtime_checkable
class Breakers(Protocol):
    """Every endpoint's circuit breaker (`engine.breaker` has the rules).

    `allow` says whether a call may go out now (in half-open state: to one caller only);
    `record` counts a finished call's outcome and says whether more calls may go out.
    Implementations shared through a store fail open: when the store cannot be reached,
    calls are allowed.
    """

    async def allow(self, endpoint: EndpointSnapshot) -> bool: ...

    async def record(self, endpoint: EndpointSnapshot, ok: bool) -> bool: ...
