"""Adapters that implement `routing.engine.ports.Provider` for each kind of model endpoint.

Plain Python like the engine (no Django, DRF, Channels or Celery; an import-linter
contract checks it), so the cascade can be tested, benchmarked and replayed offline.

- `openai_compat`: any OpenAI-compatible chat-completions server, over aiohttp (docs/providers.md).
- `bedrock`: Amazon Bedrock's Converse API, over boto3 on a thread pool.
- `local`: the embedded default, replaying recorded real model answers with no network.

Build one provider per endpoint and reuse it: the HTTP providers hold connection pools.
Close it with `await provider.aclose()` when the endpoint changes or the process stops.
"""

from __future__ import annotations

from collections.abc import Callable

from routing.engine.ports import Provider
from routing.engine.types import EndpointSnapshot, ProviderType
from routing.providers.bedrock import BedrockProvider
from routing.providers.local import ReplayProvider, replay_prompts
from routing.providers.openai_compat import OpenAICompatProvider

__all__ = [
    "KINDS",
    "BedrockProvider",
    "OpenAICompatProvider",
    "ReplayProvider",
    "build_provider",
    "replay_prompts",
]

# The classes themselves: each is called with the endpoint and returns a Provider.
KINDS: dict[ProviderType, Callable[[EndpointSnapshot], Provider]] = {
    ProviderType.OPENAI_COMPAT: OpenAICompatProvider,
    ProviderType.BEDROCK: BedrockProvider,
    ProviderType.REPLAY: ReplayProvider,
}


def build_provider(endpoint: EndpointSnapshot) -> Provider:
    """A new provider for `endpoint`, chosen by its `provider_kind`."""
    return KINDS[ProviderType(endpoint.provider_kind)](endpoint)
