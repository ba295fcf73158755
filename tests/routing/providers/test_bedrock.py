"""BedrockProvider: request and response shapes checked by botocore's Stubber, timeouts on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from routing.engine.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Message, ProviderType
from routing.providers.bedrock import BedrockProvider, build_client, region_name

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
VPC_ENDPOINT = "https://vpce-123.bedrock-runtime.us-east-1.vpce.amazonaws.com"
CHAT = ChatRequest(messages=(Message("system", "Answer with a number."), Message("user", "What is 6 x 7?")))
EXPECTED_PARAMS = {
    "modelId": MODEL_ID,
    "messages": [{"role": "user", "content": [{"text": "What is 6 x 7?"}]}],
    "system": [{"text": "Answer with a number."}],
    "inferenceConfig": {"maxTokens": 64, "temperature": 0.2},
}


def make_endpoint(**kwargs: Any) -> EndpointSnapshot:
    return EndpointSnapshot(
        id=2,
        name="haiku-tier",
        provider_kind=ProviderType.BEDROCK,
        model_id=MODEL_ID,
        input_price_per_m=Decimal("0.25"),
        output_price_per_m=Decimal("1.25"),
        temperature=0.2,
        **kwargs,
    )


def converse_response(text: str = "42", stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 25, "outputTokens": 3, "totalTokens": 28, **usage},
        "metrics": {"latencyMs": 321},
    }


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


async def ask(provider: BedrockProvider, chat: ChatRequest = CHAT, *, max_tokens: int = 64) -> Completion:
    try:
        return await provider.complete(chat, max_tokens=max_tokens)
    finally:
        await provider.aclose()


async def test_it_sends_a_converse_request_and_parses_the_answer(client: Any, stubber: Stubber) -> None:
    stubber.add_response("converse", converse_response("42"), EXPECTED_PARAMS)

    completion = await ask(BedrockProvider(make_endpoint(), client=client))

    assert completion.text == "42"
    assert completion.finish_reason == "stop"
    assert (completion.input_tokens, completion.output_tokens, completion.cached_input_tokens) == (25, 3, 0)
    assert completion.model == MODEL_ID
    assert completion.latency_ms > 0


async def test_it_reports_cache_reads_as_cached_input_tokens(client: Any, stubber: Stubber) -> None:
    stubber.add_response("converse", converse_response(cacheReadInputTokens=20), EXPECTED_PARAMS)

    completion = await ask(BedrockProvider(make_endpoint(), client=client))

    assert completion.cached_input_tokens == 20


async def test_cache_reads_and_writes_count_as_input_tokens_too(client: Any, stubber: Stubber) -> None:
    # Bedrock's inputTokens leaves out the tokens read from or written to the cache.
    usage = {"inputTokens": 25, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 200, "totalTokens": 1228}
    stubber.add_response("converse", converse_response(**usage), EXPECTED_PARAMS)

    completion = await ask(BedrockProvider(make_endpoint(), client=client))

    assert (completion.input_tokens, completion.cached_input_tokens) == (1225, 1000)


async def test_it_joins_the_text_blocks_of_the_answer(client: Any, stubber: Stubber) -> None:
    response = converse_response()
    response["output"]["message"]["content"] = [{"text": "6 x 7 "}, {"text": "= 42"}]
    stubber.add_response("converse", response, EXPECTED_PARAMS)

    completion = await ask(BedrockProvider(make_endpoint(), client=client))

    assert completion.text == "6 x 7 = 42"


async def test_the_requests_temperature_and_consecutive_user_turns_are_sent_as_converse_expects(
    client: Any, stubber: Stubber
) -> None:
    chat = ChatRequest(
        messages=(
            Message("user", "Hi."),
            Message("assistant", "Hello."),
            Message("user", "6 x 7?"),
            Message("user", "Be brief."),
        ),
        temperature=0.7,
    )
    expected = {
        "modelId": MODEL_ID,
        "messages": [
            {"role": "user", "content": [{"text": "Hi."}]},
            {"role": "assistant", "content": [{"text": "Hello."}]},
            {"role": "user", "content": [{"text": "6 x 7?"}, {"text": "Be brief."}]},
        ],
        "inferenceConfig": {"maxTokens": 32, "temperature": 0.7},
    }
    stubber.add_response("converse", converse_response(), expected)

    await ask(BedrockProvider(make_endpoint(), client=client), chat, max_tokens=32)


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [("max_tokens", "length"), ("stop_sequence", "stop")])
async def test_stop_reasons_become_openai_finish_reasons(
    client: Any, stubber: Stubber, stop_reason: str, finish_reason: str
) -> None:
    stubber.add_response("converse", converse_response(stop_reason=stop_reason), EXPECTED_PARAMS)

    completion = await ask(BedrockProvider(make_endpoint(), client=client))

    assert completion.finish_reason == finish_reason


@pytest.mark.parametrize("stop_reason", ["content_filtered", "guardrail_intervened"])
async def test_filtered_answers_are_refusals(client: Any, stubber: Stubber, stop_reason: str) -> None:
    stubber.add_response("converse", converse_response(stop_reason=stop_reason), EXPECTED_PARAMS)

    with pytest.raises(ProviderRefused, match=stop_reason):
        await ask(BedrockProvider(make_endpoint(), client=client))


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 429, ProviderUnavailable),
        ("ServiceUnavailableException", 503, ProviderUnavailable),
        ("ModelNotReadyException", 429, ProviderUnavailable),
        ("ModelTimeoutException", 408, ProviderTimeout),
        ("ValidationException", 400, ProviderBadRequest),
        ("AccessDeniedException", 403, ProviderMisconfigured),
        ("ResourceNotFoundException", 404, ProviderMisconfigured),
    ],
)
async def test_service_errors_map_to_provider_errors(
    client: Any, stubber: Stubber, code: str, status: int, error: type[ProviderError]
) -> None:
    stubber.add_client_error(
        "converse",
        service_error_code=code,
        service_message="simulated",
        http_status_code=status,
        expected_params=EXPECTED_PARAMS,
    )

    with pytest.raises(error, match=f"haiku-tier: {code}: simulated") as raised:
        await ask(BedrockProvider(make_endpoint(), client=client))

    assert type(raised.value) is error


@pytest.fixture
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No credentials or config from this machine, and no instance-metadata lookups off loopback."""
    for name in AWS_CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "no-boto"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


@pytest.fixture
def fake_credentials(no_aws_config: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")


class SilentServer:
    """A loopback server that accepts connections, counts them and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listening socket was closed: done
            while True:
                self.connections.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_read_timeout_times_out_after_one_attempt(fake_credentials: None, silent_server: SilentServer) -> None:
    endpoint = make_endpoint(base_url=f"http://127.0.0.1:{silent_server.port}", read_timeout_s=0.3)

    with pytest.raises(ProviderTimeout, match="ReadTimeoutError"):
        await ask(BedrockProvider(endpoint))

    assert len(silent_server.connections) == 1


async def test_a_slow_call_does_not_block_the_event_loop(fake_credentials: None, silent_server: SilentServer) -> None:
    endpoint = make_endpoint(base_url=f"http://127.0.0.1:{silent_server.port}", read_timeout_s=1.0)
    # Built beforehand: loading botocore's service model holds the GIL for a while.
    provider = BedrockProvider(endpoint, client=build_client(endpoint))
    ticks: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    with pytest.raises(ProviderTimeout):
        await ask(provider)
    finished = time.perf_counter()
    done.set()
    await ticker

    # Run on the loop, the call would leave no room for a single tick until it ends.
    assert sum(started < t < finished for t in ticks) >= 10


async def test_a_refused_connection_is_unavailable(fake_credentials: None) -> None:
    endpoint = make_endpoint(base_url=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(ProviderUnavailable, match="EndpointConnectionError"):
        await ask(BedrockProvider(endpoint))


async def test_no_credentials_is_misconfigured(no_aws_config: None) -> None:
    endpoint = make_endpoint(base_url=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(ProviderMisconfigured, match="NoCredentialsError"):
        await ask(BedrockProvider(endpoint))


def test_the_client_has_the_endpoints_timeouts_and_a_single_attempt(fake_credentials: None) -> None:
    client = build_client(make_endpoint(connect_timeout_s=1.5, read_timeout_s=20, options={"region": "us-west-2"}))

    config: Any = client.meta.config  # botocore-stubs leave these attributes out

    assert client.meta.region_name == "us-west-2"
    assert (config.connect_timeout, config.read_timeout) == (1.5, 20)
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}


def test_the_region_comes_from_options_then_base_url_then_the_environment(no_aws_config: None) -> None:
    assert region_name(make_endpoint(options={"region": "us-west-2"}, base_url="eu-central-1")) == "us-west-2"
    assert region_name(make_endpoint(base_url="eu-central-1")) == "eu-central-1"
    assert region_name(make_endpoint(base_url=VPC_ENDPOINT)) == "eu-west-1"
    assert region_name(make_endpoint()) == "eu-west-1"
