"""OpenAICompatProvider against a real OpenAI-compatible server on loopback (bench.upstream)."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bench.upstream import UpstreamBehaviour, running_upstream
from routing.engine.errors import (
    ProviderBadRequest,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, Message, ModelEndpoint, ProviderKind
from routing.providers.openai_compat import OpenAICompatProvider

CHAT = ChatRequest(messages=(Message("system", "Answer with a number."), Message("user", "What is 6 x 7?")))


def make_endpoint(base_url: str, model_id: str = "cheap", **kwargs: Any) -> ModelEndpoint:
    return ModelEndpoint(
        id=1,
        name="cheap-tier",
        provider_kind=ProviderKind.OPENAI_COMPAT,
        model_id=model_id,
        input_price_per_m=Decimal("0.50"),
        output_price_per_m=Decimal("1.50"),
        base_url=base_url,
        **kwargs,
    )


async def ask(endpoint: ModelEndpoint, chat: ChatRequest = CHAT, *, max_tokens: int = 64) -> Completion:
    provider = OpenAICompatProvider(endpoint)
    try:
        return await provider.complete(chat, max_tokens=max_tokens)
    finally:
        await provider.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_it_returns_the_answer_with_reported_usage_and_cached_tokens() -> None:
    behaviour = UpstreamBehaviour(answer="42", prompt_tokens=31, completion_tokens=2, cached_tokens=16)
    with running_upstream(behaviour) as upstream:
        completion = await ask(make_endpoint(upstream.base_url))

    assert completion.text == "42"
    assert completion.finish_reason == "stop"
    assert (completion.input_tokens, completion.output_tokens, completion.cached_input_tokens) == (31, 2, 16)
    assert completion.model == "cheap"
    assert completion.logprobs is None
    assert completion.latency_ms > 0
    assert upstream.calls == {"cheap": 1}


async def test_it_sends_model_messages_max_tokens_temperature_and_user() -> None:
    chat = replace(CHAT, user="user-7")
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url, temperature=0.3), chat, max_tokens=99)

    assert upstream.last_request == {
        "model": "cheap",
        "messages": [
            {"role": "system", "content": "Answer with a number."},
            {"role": "user", "content": "What is 6 x 7?"},
        ],
        "max_tokens": 99,
        "temperature": 0.3,
        "user": "user-7",
    }


async def test_the_requests_temperature_wins_over_the_endpoints() -> None:
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url, temperature=0.3), replace(CHAT, temperature=0.9))

    assert upstream.last_request["temperature"] == 0.9


async def test_it_asks_for_logprobs_when_the_request_does_and_parses_them() -> None:
    with running_upstream(UpstreamBehaviour(logprobs=(-0.25, -1.5))) as upstream:
        completion = await ask(make_endpoint(upstream.base_url), replace(CHAT, logprobs=True))

    assert upstream.last_request["logprobs"] is True
    assert completion.logprobs == (-0.25, -1.5)


async def test_it_asks_for_logprobs_when_the_endpoint_is_configured_to() -> None:
    with running_upstream(UpstreamBehaviour(logprobs=(-0.5,))) as upstream:
        completion = await ask(make_endpoint(upstream.base_url, options={"logprobs": True}))

    assert upstream.last_request["logprobs"] is True
    assert completion.logprobs == (-0.5,)


async def test_it_does_not_send_logprobs_unless_asked() -> None:
    with running_upstream(UpstreamBehaviour(logprobs=(-0.5,))) as upstream:
        completion = await ask(make_endpoint(upstream.base_url))

    assert "logprobs" not in upstream.last_request
    assert completion.logprobs is None


async def test_it_estimates_tokens_when_the_upstream_reports_no_usage() -> None:
    with running_upstream(UpstreamBehaviour(answer="The answer is 42.")) as upstream:
        completion = await ask(make_endpoint(upstream.base_url, model_id="no-usage"))

    assert completion.input_tokens == estimate_prompt_tokens(CHAT)
    assert completion.output_tokens == estimate_tokens("The answer is 42.")
    assert completion.cached_input_tokens == 0


async def test_it_sends_the_bearer_token_from_the_named_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASCADEOPS_TEST_UPSTREAM_KEY", "sk-test-123")
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url, credentials_env="CASCADEOPS_TEST_UPSTREAM_KEY"))

    assert upstream.last_headers["authorization"] == "Bearer sk-test-123"


async def test_it_sends_no_authorization_header_to_a_keyless_endpoint() -> None:
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url))

    assert "authorization" not in upstream.last_headers


async def test_a_missing_credentials_variable_is_misconfigured_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CASCADEOPS_TEST_MISSING_KEY", raising=False)
    with running_upstream() as upstream, pytest.raises(ProviderMisconfigured, match="CASCADEOPS_TEST_MISSING_KEY"):
        await ask(make_endpoint(upstream.base_url, credentials_env="CASCADEOPS_TEST_MISSING_KEY"))

    assert upstream.calls.total() == 0


@pytest.mark.parametrize("model", ["fail-500", "fail-503", "fail-429", "fail-408"])
async def test_server_errors_throttling_and_request_timeouts_are_unavailable(model: str) -> None:
    with running_upstream() as upstream, pytest.raises(ProviderUnavailable, match=model.removeprefix("fail-")):
        await ask(make_endpoint(upstream.base_url, model_id=model))

    assert upstream.calls[model] == 1


async def test_a_400_is_a_bad_request_carrying_the_upstreams_message() -> None:
    with running_upstream() as upstream, pytest.raises(ProviderBadRequest, match="simulated 400 for model 'fail-400'"):
        await ask(make_endpoint(upstream.base_url, model_id="fail-400"))


@pytest.mark.parametrize("model", ["fail-401", "fail-403", "fail-404"])
async def test_rejected_credentials_and_unknown_models_are_misconfigured(model: str) -> None:
    with running_upstream() as upstream, pytest.raises(ProviderMisconfigured):
        await ask(make_endpoint(upstream.base_url, model_id=model))


async def test_an_upstream_that_hangs_past_the_read_timeout_times_out() -> None:
    with running_upstream() as upstream:
        started = time.perf_counter()
        with pytest.raises(ProviderTimeout):
            await ask(make_endpoint(upstream.base_url, model_id="hang", read_timeout_s=0.2))

    assert time.perf_counter() - started < 2


async def test_a_content_filter_finish_is_a_refusal() -> None:
    with running_upstream() as upstream, pytest.raises(ProviderRefused, match="content_filter"):
        await ask(make_endpoint(upstream.base_url, model_id="refuse"))


async def test_a_body_that_is_not_json_is_unavailable() -> None:
    with running_upstream() as upstream, pytest.raises(ProviderUnavailable, match="malformed response"):
        await ask(make_endpoint(upstream.base_url, model_id="malformed"))


async def test_a_refused_connection_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="ConnectError"):
        await ask(make_endpoint(f"http://127.0.0.1:{closed_port()}/v1"))


async def test_an_empty_base_url_is_misconfigured() -> None:
    with pytest.raises(ProviderMisconfigured, match="base_url"):
        await ask(make_endpoint(""))


async def test_it_reuses_one_connection_for_consecutive_requests() -> None:
    with running_upstream() as upstream:
        provider = OpenAICompatProvider(make_endpoint(upstream.base_url))
        try:
            await provider.complete(CHAT, max_tokens=8)
            first_client = upstream.last_client
            await provider.complete(CHAT, max_tokens=8)
        finally:
            await provider.aclose()

    assert upstream.calls["cheap"] == 2
    assert upstream.last_client == first_client


async def test_it_leaves_a_client_it_was_given_open() -> None:
    async with httpx.AsyncClient() as client:
        with running_upstream() as upstream:
            provider = OpenAICompatProvider(make_endpoint(upstream.base_url), client=client)
            await provider.complete(CHAT, max_tokens=8)
            await provider.aclose()

        assert not client.is_closed
