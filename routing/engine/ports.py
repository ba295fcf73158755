"""The interfaces the engine calls through; Django-side code supplies implementations."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .types import ChatRequest, Completion, ModelEndpoint


@runtime_checkable
class Provider(Protocol):
    """Calls one model endpoint. Raises `engine.errors.ProviderError` subclasses on failure."""

    endpoint: ModelEndpoint

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Scorer(Protocol):
    """Turns (request, answer, provider metadata) into a confidence in [0, 1]."""

    name: str

    def score(self, chat: ChatRequest, completion: Completion, *, task: str) -> float: ...
