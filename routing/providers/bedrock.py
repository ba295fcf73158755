"""Provider for Amazon Bedrock models through the bedrock-runtime Converse API.

boto3 is synchronous, so each call runs on a thread pool owned by the provider, never on
the event loop. The pool is the provider's own rather than the loop's default executor
(which `asyncio.to_thread` uses): that one holds only `min(32, CPUs + 4)` threads, and a
few slow model calls would otherwise queue behind each other and starve everything else
that borrows it, such as DNS lookups.

Credentials come from boto3's default chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
(and `AWS_SESSION_TOKEN`), `AWS_PROFILE` and the shared config files, SSO, then the
container or instance role. `EndpointSnapshot.credentials_env` is not used. The region is,
in order: `endpoint.options["region"]`, `endpoint.base_url` when it is a bare region name,
`AWS_REGION`, `AWS_DEFAULT_REGION`, then boto3's own configuration. A `base_url` with a
scheme (`https://...`) is used as the endpoint URL instead, for VPC endpoints and proxies.

Retries are off (one attempt): a throttled or slow tier should fall through to the next
tier of the cascade at once rather than hold the request through botocore's back-off.

Tools, tool results, images (as `data:` URLs), stop sequences, `top_p` and JSON output (a
tool the model must call) map to their Converse forms; see docs/api.md.

`stream` calls `ConverseStream`: a pool thread reads the event stream and hands each
event to the event loop through a queue. Closing the generator early stops that thread
and closes the event stream's connection, which ends the generation.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import json
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from routing.engine.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.streaming import StreamDone, StreamEvent, TextDelta, ToolCallDelta
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Message, ToolCall

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_bedrock_runtime.type_defs import (
        ContentBlockTypeDef,
        ConverseRequestTypeDef,
        ConverseResponseTypeDef,
        ConverseStreamRequestTypeDef,
        InferenceConfigurationTypeDef,
        MessageTypeDef,
        SystemContentBlockTypeDef,
        TokenUsageTypeDef,
        ToolConfigurationTypeDef,
    )

T = TypeVar("T")

ERROR_MESSAGE_LIMIT = 300
DEFAULT_MAX_CONCURRENCY = 32
SYSTEM_ROLES = frozenset({"system", "developer"})

ERRORS_BY_CODE: dict[str, type[ProviderError]] = {
    "ThrottlingException": ProviderUnavailable,
    "ServiceUnavailableException": ProviderUnavailable,
    "InternalServerException": ProviderUnavailable,
    "ModelNotReadyException": ProviderUnavailable,
    "ModelErrorException": ProviderUnavailable,
    "ModelTimeoutException": ProviderTimeout,
    "ValidationException": ProviderBadRequest,
    "AccessDeniedException": ProviderMisconfigured,
    "ResourceNotFoundException": ProviderMisconfigured,
    "UnrecognizedClientException": ProviderMisconfigured,
    # Sent inside a ConverseStream, after the stream began.
    "ModelStreamErrorException": ProviderUnavailable,
}
# Bedrock's stop reasons in the vocabulary of OpenAI's finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}
REFUSALS = frozenset({"content_filtered", "guardrail_intervened"})
MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})


class BedrockProvider:
    """Calls one Bedrock model with `Converse`; the boto3 client is created on first use."""

    def __init__(self, endpoint: EndpointSnapshot, *, client: BedrockRuntimeClient | None = None) -> None:
        self.endpoint = endpoint
        self._client = client
        # Creating a client loads the service model (tens of milliseconds) and is not
        # thread-safe, so the first calls, on pool threads, take turns.
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_concurrency(endpoint), thread_name_prefix="bedrock")

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        """Ask the model for one answer; raise a `ProviderError` when there is none."""
        request = converse_request(self.endpoint, chat, max_tokens=max_tokens)
        started = time.perf_counter()
        try:
            response = await self._off_loop(self._converse, request)
        except (BotoCoreError, ClientError) as exc:
            raise provider_error(self.endpoint, exc) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        return parse_converse_response(self.endpoint, response, latency_ms=latency_ms, chat=chat)

    async def stream(self, chat: ChatRequest, *, max_tokens: int) -> AsyncGenerator[StreamEvent, None]:
        """Ask for the answer with `ConverseStream`: its deltas as they come, then all of it."""
        request = converse_request(self.endpoint, chat, max_tokens=max_tokens)
        started = time.perf_counter()
        feed = EventFeed(asyncio.get_running_loop())
        call = functools.partial(contextvars.copy_context().run, self._converse_stream, request, feed)
        self._pool.submit(call)
        try:
            answer = StreamedConverse(self.endpoint, chat)
            while (event := await feed.get()) is not None:
                for delta in answer.add(event):
                    yield delta
            yield StreamDone(answer.completion(chat, latency_ms=(time.perf_counter() - started) * 1000))
        except (BotoCoreError, ClientError) as exc:
            raise provider_error(self.endpoint, exc) from exc
        finally:
            feed.stop()

    def _converse_stream(self, request: ConverseRequestTypeDef, feed: EventFeed) -> None:
        """On a pool thread: read the event stream into `feed` until its end, a failure or `feed.stop()`."""
        try:
            # The same request shape (it differs only in guardrail options, which we never send).
            stream_request = cast("ConverseStreamRequestTypeDef", request)
            events = self._get_client().converse_stream(**stream_request)["stream"]
            feed.opened(events)
            for event in events:
                if feed.stopped:
                    break
                feed.put(event)
            feed.put(None)
        except Exception as exc:  # handed to the event loop, which raises it in the caller
            feed.put(exc)
        finally:
            feed.close_events()

    async def aclose(self) -> None:
        # Calls already started or queued still finish and answer whoever awaits them
        # (a replaced provider is closed while requests may be using it); then the
        # threads exit. Waiting here would block the event loop.
        self._pool.shutdown(wait=False)

    async def _off_loop(self, func: Callable[..., T], *args: Any) -> T:
        call = functools.partial(contextvars.copy_context().run, func, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _converse(self, request: ConverseRequestTypeDef) -> ConverseResponseTypeDef:
        return self._get_client().converse(**request)

    def _get_client(self) -> BedrockRuntimeClient:
        with self._client_lock:
            if self._client is None:
                self._client = build_client(self.endpoint)
            return self._client


def max_concurrency(endpoint: EndpointSnapshot) -> int:
    return int(endpoint.options.get("max_concurrency", DEFAULT_MAX_CONCURRENCY))


def build_client(endpoint: EndpointSnapshot) -> BedrockRuntimeClient:
    """A bedrock-runtime client with the endpoint's timeouts and no retries."""
    config = Config(
        connect_timeout=endpoint.connect_timeout_s,
        read_timeout=endpoint.read_timeout_s,
        # `total_max_attempts` counts the first attempt; botocore's `max_attempts` counts
        # retries only, so `{"max_attempts": 1}` would still make two attempts.
        retries={"total_max_attempts": 1, "mode": "standard"},
        # One connection per pool thread; fewer and urllib3 discards and reopens them.
        max_pool_connections=max_concurrency(endpoint),
    )
    # A session per client: boto3's default session is not safe to share across threads.
    session = boto3.session.Session()
    return session.client(
        "bedrock-runtime",
        region_name=region_name(endpoint),
        endpoint_url=endpoint_url(endpoint),
        config=config,
    )


def region_name(endpoint: EndpointSnapshot) -> str | None:
    """The configured region, or None to let boto3 look in its config files."""
    base_url = endpoint.base_url if "://" not in endpoint.base_url else ""
    region = (
        endpoint.options.get("region")
        or base_url
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )
    return str(region) if region else None


def endpoint_url(endpoint: EndpointSnapshot) -> str | None:
    return endpoint.base_url if "://" in endpoint.base_url else None


def converse_request(endpoint: EndpointSnapshot, chat: ChatRequest, *, max_tokens: int) -> ConverseRequestTypeDef:
    """The keyword arguments of `client.converse` for this conversation.

    Tools go as `toolConfig`; a JSON `response_format` as one tool the model must call, whose
    input is the answer (`JSON_TOOL`), Bedrock's documented way to structured output. A
    parameter Converse has no field for fails the tier as a bad request naming it.
    """
    refuse_unsupported(endpoint, chat)
    temperature = chat.temperature if chat.temperature is not None else endpoint.temperature
    inference: dict[str, Any] = {"maxTokens": max_tokens, "temperature": temperature}
    if "top_p" in chat.options:
        inference["topP"] = chat.options["top_p"]
    if "stop" in chat.options:
        stop = chat.options["stop"]
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    request: ConverseRequestTypeDef = {
        "modelId": endpoint.model_id,
        "messages": converse_messages(m for m in chat.messages if m.role not in SYSTEM_ROLES),
        "inferenceConfig": cast("InferenceConfigurationTypeDef", inference),
    }
    system: list[SystemContentBlockTypeDef] = [{"text": m.content} for m in chat.messages if m.role in SYSTEM_ROLES]
    if system:
        request["system"] = system
    tool_config = converse_tool_config(chat)
    if tool_config is not None:
        request["toolConfig"] = cast("ToolConfigurationTypeDef", tool_config)
    return request


# The request options Converse can carry; `parallel_tool_calls` is checked on the answer instead.
BEDROCK_OPTIONS = frozenset({"top_p", "stop", "parallel_tool_calls"})
# The tool a JSON response_format becomes: the model's input to it is the answer.
JSON_TOOL = "json_answer"


def refuse_unsupported(endpoint: EndpointSnapshot, chat: ChatRequest) -> None:
    unsupported = sorted(name for name in chat.options if name not in BEDROCK_OPTIONS)
    if chat.logprobs:
        unsupported.insert(0, "logprobs")
    if unsupported:
        names = ", ".join(unsupported)
        raise ProviderBadRequest(f"{endpoint.name}: Bedrock Converse takes no {names}")


def converse_tool_config(chat: ChatRequest) -> dict[str, Any] | None:
    """`toolConfig`: the request's tools and choice, or the JSON tool of a `response_format`."""
    if chat.tools and chat.tool_choice != "none":
        tools = [tool_spec(tool["function"]) for tool in chat.tools]
        return {"tools": tools, **tool_choice(chat.tool_choice)}
    if chat.response_format is not None and not chat.tools:
        schema = chat.response_format.get("json_schema", {}).get("schema") or {"type": "object"}
        spec = {"name": JSON_TOOL, "description": "Give the answer as this tool's input.", "parameters": schema}
        return {"tools": [tool_spec(spec)], "toolChoice": {"tool": {"name": JSON_TOOL}}}
    return None


def tool_spec(function: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": function["name"],
        "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}},
    }
    if function.get("description"):
        spec["description"] = function["description"]
    return {"toolSpec": spec}


def tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "required":
        return {"toolChoice": {"any": {}}}
    if isinstance(choice, Mapping):
        return {"toolChoice": {"tool": {"name": choice["function"]["name"]}}}
    return {"toolChoice": {"auto": {}}}


def converse_messages(messages: Iterable[Message]) -> list[MessageTypeDef]:
    """Converse messages; consecutive turns of one role become one message.

    Several Bedrock models reject a conversation whose roles do not alternate, which an
    OpenAI client may send (two user messages in a row, a tool result), so merge them.
    A tool result is a user turn's `toolResult` block; an assistant's calls are `toolUse` blocks.
    """
    merged: list[MessageTypeDef] = []
    for message in messages:
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        blocks = cast("list[ContentBlockTypeDef]", content_blocks(message))
        if merged and merged[-1]["role"] == role:
            merged[-1] = {"role": role, "content": [*merged[-1]["content"], *blocks]}
        else:
            merged.append({"role": role, "content": blocks})
    return merged


def content_blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        result = {"toolUseId": message.tool_call_id, "content": [{"text": message.content}]}
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
    blocks += [image_block(part) for part in message.parts if part.get("type") == "image_url"]
    for call in message.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": tool_input(call.arguments)}})
    return blocks or [{"text": message.content}]


def image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    """An `image_url` part given as a `data:` URL; Converse reads no image from a web address."""
    url = str(part["image_url"]["url"])
    head, _, data = url.partition(",")
    kind = head.removeprefix("data:image/").removesuffix(";base64")
    if not head.startswith("data:image/") or kind not in IMAGE_FORMATS:
        raise ProviderBadRequest("Bedrock Converse takes images only as data: URLs of png, jpeg, gif or webp")
    return {"image": {"format": kind, "source": {"bytes": base64.b64decode(data)}}}


IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})


def tool_input(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return {}


class EventFeed:
    """Hands ConverseStream events from a pool thread to the event loop, and a stop back."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Mapping[str, Any] | Exception | None] = asyncio.Queue()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._events: Any = None  # botocore's EventStream, once the call has answered

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # On the pool thread.

    def opened(self, events: Any) -> None:
        with self._lock:
            self._events = events
        if self.stopped:
            self.close_events()

    def put(self, item: Mapping[str, Any] | Exception | None) -> None:
        """An event, an exception, or None for the end."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            self._stopped.set()  # the loop is closed: nobody is listening any more

    def close_events(self) -> None:
        with self._lock:
            events, self._events = self._events, None
        if events is not None:
            events.close()

    # On the event loop.

    async def get(self) -> Mapping[str, Any] | None:
        item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def stop(self) -> None:
        """The caller is done: the thread stops at its next event.

        Closing the event stream now also wakes a thread blocked reading the next one.
        """
        self._stopped.set()
        self.close_events()


class StreamedConverse:
    """The answer a ConverseStream has sent so far: text, stop reason and usage."""

    def __init__(self, endpoint: EndpointSnapshot, chat: ChatRequest | None = None) -> None:
        self.endpoint = endpoint
        self.pieces: list[str] = []
        self.stop_reason = ""
        self.usage: TokenUsageTypeDef | None = None
        self.calls: dict[int, list[str]] = {}  # content block index → [id, name, input JSON so far]
        self.json_answer = chat is not None and chat.response_format is not None and not chat.tools

    def add(self, event: Mapping[str, Any]) -> list[TextDelta | ToolCallDelta]:
        """Take in one event; the deltas it adds (reasoning deltas are skipped)."""
        if "contentBlockStart" in event:
            return self._start_block(event["contentBlockStart"])
        if "contentBlockDelta" in event:
            return self._delta(event["contentBlockDelta"])
        if "messageStop" in event:
            self.stop_reason = str(event["messageStop"].get("stopReason", ""))
        elif "metadata" in event:
            self.usage = event["metadata"].get("usage")
        return []

    def _start_block(self, start: Mapping[str, Any]) -> list[TextDelta | ToolCallDelta]:
        use = start.get("start", {}).get("toolUse")
        if use is None:
            return []
        block = int(start.get("contentBlockIndex", 0))
        self.calls[block] = [str(use.get("toolUseId", "")), str(use.get("name", "")), ""]
        if self.json_answer:
            return []
        return [ToolCallDelta(len(self.calls) - 1, self.calls[block][0], self.calls[block][1])]

    def _delta(self, event: Mapping[str, Any]) -> list[TextDelta | ToolCallDelta]:
        delta = event.get("delta", {})
        block = int(event.get("contentBlockIndex", 0))
        if "toolUse" in delta and block in self.calls:
            piece = str(delta["toolUse"].get("input", ""))
            self.calls[block][2] += piece
            if self.json_answer:
                self.pieces.append(piece)  # the JSON tool's input is the answer's text
                return [TextDelta(piece)]
            return [ToolCallDelta(list(self.calls).index(block), arguments=piece)]
        text = str(delta.get("text", ""))
        self.pieces.append(text)
        return [TextDelta(text)] if text else []

    def completion(self, chat: ChatRequest, *, latency_ms: float) -> Completion:
        """The whole answer; raises when the model refused or the stream stopped short."""
        check_stop_reason(self.endpoint, self.stop_reason, self.usage)
        if not self.stop_reason:
            raise ProviderUnavailable(f"{self.endpoint.name}: the stream ended without a stop reason")
        text = "".join(self.pieces)
        calls = () if self.json_answer else tuple(ToolCall(*call) for call in self.calls.values())
        input_tokens, output_tokens, cached = (
            usage_tokens(self.usage)
            if self.usage is not None
            else (estimate_prompt_tokens(chat), estimate_tokens(text), 0)
        )
        finish_reason = FINISH_REASONS.get(self.stop_reason, self.stop_reason)
        return Completion(
            text=text,
            finish_reason="stop" if self.json_answer else finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            cached_input_tokens=cached,
            model=self.endpoint.model_id,
            tool_calls=calls,
        )


def parse_converse_response(
    endpoint: EndpointSnapshot, response: ConverseResponseTypeDef, *, latency_ms: float, chat: ChatRequest | None = None
) -> Completion:
    """Turn a Converse response into a `Completion`.

    `latency_ms` is the wall-clock time of the call as the gateway saw it (network and
    thread hand-off included), not `metrics.latencyMs`, the model's own time, so that it
    compares like for like with the other providers.
    """
    stop_reason = str(response.get("stopReason", ""))
    usage = response.get("usage")
    check_stop_reason(endpoint, stop_reason, usage)
    if usage is None:
        raise ProviderUnavailable("malformed response: no usage")
    input_tokens, output_tokens, cached = usage_tokens(usage)
    text, calls = response_text(response), response_tool_calls(response)
    finish_reason = FINISH_REASONS.get(stop_reason, stop_reason or "stop")
    if chat is not None and chat.response_format is not None and not chat.tools:
        # The JSON tool's input is the answer (see `converse_tool_config`).
        text = next((call.arguments for call in calls if call.name == JSON_TOOL), text)
        calls, finish_reason = (), "stop"
    return Completion(
        text=text,
        finish_reason=finish_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        cached_input_tokens=cached,
        model=endpoint.model_id,
        tool_calls=calls,
    )


def response_tool_calls(response: ConverseResponseTypeDef) -> tuple[ToolCall, ...]:
    """The answer's `toolUse` blocks as OpenAI tool calls (their input as JSON text)."""
    message = response.get("output", {}).get("message")
    blocks = message["content"] if message is not None else []
    return tuple(
        ToolCall(
            id=block["toolUse"]["toolUseId"],
            name=block["toolUse"]["name"],
            arguments=json.dumps(block["toolUse"]["input"]),
        )
        for block in blocks
        if "toolUse" in block
    )


def check_stop_reason(endpoint: EndpointSnapshot, stop_reason: str, usage: TokenUsageTypeDef | None) -> None:
    """Raise for a refusal (billed at the usage Bedrock reported) or a malformed answer."""
    if stop_reason in REFUSALS:
        input_tokens, output_tokens, cached = usage_tokens(usage) if usage is not None else (0, 0, 0)
        raise ProviderRefused(
            f"{endpoint.name}: refused ({stop_reason})",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
        )
    if stop_reason in MALFORMED:
        raise ProviderUnavailable(f"{endpoint.name}: {stop_reason}")


def usage_tokens(usage: TokenUsageTypeDef) -> tuple[int, int, int]:
    """(input, output, cached input) tokens.

    Bedrock counts cache reads and writes apart from `inputTokens`; the engine's usage
    (like OpenAI's) counts every input token in `input_tokens`, the cached ones among
    them, so add them back or cached requests would look cheaper than they were.
    """
    cache_read = usage.get("cacheReadInputTokens", 0)
    cache_write = usage.get("cacheWriteInputTokens", 0)
    return usage["inputTokens"] + cache_read + cache_write, usage["outputTokens"], cache_read


def response_text(response: ConverseResponseTypeDef) -> str:
    """The text blocks of the answer, joined; tool-use and reasoning blocks are skipped."""
    message = response.get("output", {}).get("message")
    if message is None:
        raise ProviderUnavailable("malformed response: output.message is missing")
    return "".join(block["text"] for block in message["content"] if "text" in block)


def provider_error(endpoint: EndpointSnapshot, exc: BotoCoreError | ClientError) -> ProviderError:
    """The `ProviderError` a boto3 failure stands for, named after the endpoint."""
    if isinstance(exc, ClientError):
        return client_error(endpoint, exc)
    message = f"{endpoint.name}: {type(exc).__name__}: {truncate(str(exc))}"
    return botocore_error_class(exc)(message)


def client_error(endpoint: EndpointSnapshot, exc: ClientError) -> ProviderError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    # Errors inside an event stream are named in camel case ("throttlingException").
    cls = ERRORS_BY_CODE.get(code[:1].upper() + code[1:]) or status_error_class(status)
    return cls(f"{endpoint.name}: {code or status}: {truncate(str(error.get('Message', '')))}")


def status_error_class(status: int) -> type[ProviderError]:
    """For error codes Bedrock may add later: judge by the HTTP status."""
    if status == 429 or not 400 <= status < 500:
        return ProviderUnavailable
    return ProviderBadRequest


def botocore_error_class(exc: BotoCoreError) -> type[ProviderError]:
    # Connect timeouts are botocore ConnectionErrors too; report them as timeouts.
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return ProviderTimeout
    if isinstance(exc, EndpointConnectionError):
        return ProviderUnavailable
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError | NoRegionError):
        return ProviderMisconfigured
    if isinstance(exc, ParamValidationError):
        return ProviderBadRequest
    return ProviderUnavailable


def truncate(text: str, limit: int = ERROR_MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
