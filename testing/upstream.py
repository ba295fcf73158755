"""A local OpenAI-compatible upstream server for tests and benchmarks.

A raw ASGI app answering `POST /v1/chat/completions`, `POST /v1/embeddings` and `GET /v1/models`, set per server by
an `UpstreamBehaviour` and per request by the model name (`fail-<status>`, `hang`,
`refuse`, `slow-<ms>`, `malformed`, `no-usage`), with injected faults for chaos runs and
`/_chaos/outage`, `/_chaos/stats` at run time. Run it with `python -m testing.upstream`.
See docs/testing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Longer than any read timeout a test or an endpoint sets.
HANG_S = 3600.0
STARTUP_TIMEOUT_S = 10.0
FAIL_MODEL = re.compile(r"fail-(\d{3})")
SLOW_MODEL = re.compile(r"slow-(\d+)")
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
DEFAULT_ANSWER = "The answer is 42."
SYSTEM_FINGERPRINT = "fp_upstream"


@dataclass(frozen=True, slots=True)
class UpstreamBehaviour:
    """How a server answers models that have no special name."""

    answer: str = DEFAULT_ANSWER
    status: int = 200
    delay_s: float = 0.0
    hang: bool = False
    finish_reason: str = "stop"
    # Sent, like OpenAI does, only to requests that ask for logprobs.
    logprobs: tuple[float, ...] | None = None
    # Injected faults, drawn per request from `seed`: a share answered with one of
    # `error_statuses`, a share that hangs (a timeout), a share of answers `spike_s` late.
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500,)
    timeout_rate: float = 0.0
    spike_rate: float = 0.0
    spike_s: float = 0.0
    seed: int = 0
    prompt_tokens: int = 20
    completion_tokens: int = 6
    cached_tokens: int | None = None  # None: no prompt_tokens_details at all
    usage: bool = True
    models: tuple[str, ...] = ("upstream-small", "upstream-large")
    # Scripted answers: (model, answers) pairs; each request to the model gets the next
    # answer, round and round, so tests can make samples agree or disagree.
    scripts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Scripted tool calls: (model, ((name, arguments JSON), ...)) pairs; a request to the
    # model that carries `tools` is answered with these calls (finish_reason "tool_calls").
    tool_calls: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request."""

    status: int = 200
    delay_s: float = 0.0
    hang: bool = False
    finish_reason: str = "stop"
    usage: bool = True
    malformed: bool = False
    fault: str = "ok"  # what `/_chaos/stats` counts it as: ok, error, timeout, spike, outage


class UpstreamApp:
    """The ASGI app; it also counts and remembers what it received, for assertions."""

    def __init__(self, behaviour: UpstreamBehaviour | None = None) -> None:
        self.behaviour = behaviour or UpstreamBehaviour()
        self.calls: Counter[str] = Counter()
        self.last_headers: dict[str, str] = {}
        self.last_request: dict[str, Any] = {}
        self.last_client: tuple[str, int] | None = None
        # Every chat-completions body received, in order: what the gateway sent, as sent.
        self.requests: list[dict[str, Any]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.faults: Counter[tuple[str, str]] = Counter()  # (model, fault) → requests
        self._outages: dict[str, tuple[float, int]] = {}  # model → (until, status)
        self._rng = random.Random(self.behaviour.seed)
        self._created = int(time.time())
        # Bodies depend only on the model and the plan: build each one once.
        self._bodies: dict[tuple[str, Plan, bool], bytes] = {}
        self._models_body = json.dumps(models_list(self.behaviour, self._created)).encode()
        self._scripts = {model: itertools.cycle(answers) for model, answers in self.behaviour.scripts}
        self._tool_calls = dict(self.behaviour.tool_calls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"])
        if route == ("POST", "/v1/chat/completions"):
            await self._chat_completions(scope, receive, send)
        elif route == ("POST", "/v1/embeddings"):
            await self._embeddings(receive, send)
        elif route == ("GET", "/v1/models"):
            await respond(send, 200, self._models_body)
        elif route == ("POST", "/_chaos/outage"):
            await self._start_outage(receive, send)
        elif route == ("GET", "/_chaos/stats"):
            await respond(send, 200, json.dumps(self.fault_stats()).encode())
        else:
            await respond(send, 404, error_body(404, f"no route for {route[0]} {route[1]}"))

    async def _chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = parse_request(await read_body(receive))
        if request is None:
            await respond(send, 400, error_body(400, "the body is not a chat-completions request"))
            return
        model = str(request["model"])
        self._record(scope, request, model)
        plan = self._plan(model)
        self.faults[(model, plan.fault)] += 1
        if plan.hang:
            await wait_for_disconnect(receive)
            return
        if plan.delay_s > 0:
            await asyncio.sleep(plan.delay_s)
        calls = self._tool_calls.get(model) if request.get("tools") else None
        if request.get("stream") and plan.status == 200 and not plan.malformed:
            await self._stream(send, model, plan, request, calls)
            return
        if calls is not None and plan.status == 200:
            answer = tool_call_completion(self.behaviour, model, calls, created=self._created)
            await respond(send, 200, json.dumps(answer).encode())
            return
        script = self._scripts.get(model)
        choices = requested_choices(request)
        if (script is not None or choices > 1) and plan.status == 200 and not plan.malformed:
            answers = [next(script) if script is not None else self.behaviour.answer for _ in range(choices)]
            body = json.dumps(chat_completion(self.behaviour, model, plan, created=self._created, answers=answers))
            await respond(send, 200, body.encode())
            return
        await respond(send, plan.status, self._body(model, plan, bool(request.get("logprobs"))))

    async def _stream(
        self, send: Send, model: str, plan: Plan, request: dict[str, Any], calls: tuple[tuple[str, str], ...] | None
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        options = request.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        logprobs = self.behaviour.logprobs if request.get("logprobs") else None
        events = (
            sse_events(self.behaviour, model, plan, self._created, include_usage, logprobs)
            if calls is None
            else tool_call_events(self.behaviour, model, calls, self._created, include_usage)
        )
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _embeddings(self, receive: Receive, send: Send) -> None:
        request = parse_request(await read_body(receive))
        if request is None or not isinstance(request.get("input"), list | str):
            await respond(send, 400, error_body(400, "the body is not an embeddings request"))
            return
        self.embedding_requests.append(request)
        await respond(send, 200, json.dumps(embeddings_response(request)).encode())

    async def _start_outage(self, receive: Receive, send: Send) -> None:
        order = json.loads(await read_body(receive) or b"{}")
        until = time.monotonic() + float(order["seconds"])
        self._outages[str(order["model"])] = (until, int(order.get("status", 503)))
        await respond(send, 200, json.dumps({"model": order["model"], "seconds": order["seconds"]}).encode())

    def fault_stats(self) -> dict[str, dict[str, int]]:
        """Requests served per model and fault kind."""
        stats: dict[str, dict[str, int]] = {}
        for (model, fault), count in sorted(self.faults.items()):
            stats.setdefault(model, {})[fault] = count
        return stats

    def _record(self, scope: Scope, request: dict[str, Any], model: str) -> None:
        self.calls[model] += 1
        self.last_request = request
        self.requests.append(request)
        self.last_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        self.last_client = (str(client[0]), int(client[1])) if client else None

    def _plan(self, model: str) -> Plan:
        special = plan_for_model(model)
        if special is not None:
            return special
        outage = self._outages.get(model)
        if outage is not None and time.monotonic() < outage[0]:
            return Plan(status=outage[1], fault="outage")
        b = self.behaviour
        plan = Plan(status=b.status, delay_s=b.delay_s, hang=b.hang, finish_reason=b.finish_reason, usage=b.usage)
        return self._with_fault(plan) if b.error_rate or b.timeout_rate or b.spike_rate else plan

    def _with_fault(self, plan: Plan) -> Plan:
        """The plan with an injected error, timeout or latency spike, or as it was."""
        b, draw = self.behaviour, self._rng.random()
        if draw < b.error_rate:
            return replace(plan, status=self._rng.choice(b.error_statuses), fault="error")
        if draw < b.error_rate + b.timeout_rate:
            return replace(plan, hang=True, fault="timeout")
        if self._rng.random() < b.spike_rate:
            return replace(plan, delay_s=plan.delay_s + b.spike_s, fault="spike")
        return plan

    def _body(self, model: str, plan: Plan, logprobs: bool) -> bytes:
        key = (model, plan, logprobs)
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = self._build_body(model, plan, logprobs)
        return body

    def _build_body(self, model: str, plan: Plan, logprobs: bool) -> bytes:
        if plan.malformed:
            return b"<html>upstream proxy error</html>"
        if plan.status != 200:
            return error_body(plan.status, f"simulated {plan.status} for model {model!r}")
        completion = chat_completion(self.behaviour, model, plan, created=self._created)
        if logprobs and self.behaviour.logprobs is not None:
            completion["choices"][0]["logprobs"] = logprobs_object(self.behaviour.logprobs)
        return json.dumps(completion).encode()


def plan_for_model(model: str) -> Plan | None:
    """The plan a special model name asks for, or None for an ordinary model."""
    if fail := FAIL_MODEL.fullmatch(model):
        return Plan(status=int(fail.group(1)))
    if slow := SLOW_MODEL.fullmatch(model):
        return Plan(delay_s=int(slow.group(1)) / 1000)
    return {
        "hang": Plan(hang=True),
        "refuse": Plan(finish_reason="content_filter"),
        "malformed": Plan(malformed=True),
        "no-usage": Plan(usage=False),
    }.get(model)


def chat_completion(
    behaviour: UpstreamBehaviour, model: str, plan: Plan, *, created: int, answers: list[str] | None = None
) -> dict[str, Any]:
    """A chat completion with one choice per answer (`behaviour.answer` alone by default).

    Like OpenAI's, the usage of several choices counts the prompt once and every choice's tokens.
    """
    texts = answers or [behaviour.answer]
    body: dict[str, Any] = {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": plan.finish_reason,
            }
            for index, text in enumerate(texts)
        ],
    }
    if plan.usage:
        body["usage"] = usage_object(replace(behaviour, completion_tokens=behaviour.completion_tokens * len(texts)))
    return body


def requested_choices(request: dict[str, Any]) -> int:
    """How many answers the request asked for (`n`, default 1)."""
    n = request.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def chunk_event(
    model: str,
    created: int,
    include_usage: bool,
    delta: dict[str, Any],
    finish_reason: str | None,
    logprobs: Any = None,
) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
    chunk = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": created, "model": model,
             "system_fingerprint": SYSTEM_FINGERPRINT, "choices": [choice]}  # fmt: skip
    if include_usage:
        chunk["usage"] = None
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def sse_events(
    behaviour: UpstreamBehaviour,
    model: str,
    plan: Plan,
    created: int,
    include_usage: bool,
    logprobs: tuple[float, ...] | None = None,
) -> Iterator[bytes]:
    """The answer as OpenAI chat.completion.chunk events, a word at a time (each with a logprob when asked)."""

    def event(delta: dict[str, Any], finish_reason: str | None, logprob: Any = None) -> bytes:
        return chunk_event(model, created, include_usage, delta, finish_reason, logprob)

    yield event({"role": "assistant", "content": ""}, None)
    words = behaviour.answer.split(" ")
    for i, word in enumerate(words):
        logprob = logprobs_object(logprobs[i : i + 1]) if logprobs and i < len(logprobs) else None
        yield event({"content": word if i == 0 else f" {word}"}, None, logprob)
    yield event({}, plan.finish_reason)
    if include_usage and plan.usage:
        usage = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [], "usage": usage_object(behaviour)}  # fmt: skip
        yield b"data: " + json.dumps(usage).encode() + b"\n\n"


def tool_call_completion(
    behaviour: UpstreamBehaviour, model: str, calls: tuple[tuple[str, str], ...], *, created: int
) -> dict[str, Any]:
    """A whole answer that calls tools, as OpenAI sends it: null content, finish_reason "tool_calls"."""
    message = {"role": "assistant", "content": None, "tool_calls": tool_call_objects(calls)}
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": usage_object(behaviour),
    }


def tool_call_objects(calls: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    return [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
        for i, (name, arguments) in enumerate(calls)
    ]


def tool_call_events(
    behaviour: UpstreamBehaviour, model: str, calls: tuple[tuple[str, str], ...], created: int, include_usage: bool
) -> Iterator[bytes]:
    """Tool calls streamed as OpenAI does: id and name first, then the arguments in two pieces."""
    yield chunk_event(model, created, include_usage, {"role": "assistant", "content": None}, None)
    for i, (name, arguments) in enumerate(calls):
        head = {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": ""}}
        yield chunk_event(model, created, include_usage, {"tool_calls": [head]}, None)
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
            yield chunk_event(model, created, include_usage, delta, None)
    yield chunk_event(model, created, include_usage, {}, "tool_calls")
    if include_usage:
        usage = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [], "usage": usage_object(behaviour)}  # fmt: skip
        yield b"data: " + json.dumps(usage).encode() + b"\n\n"


def embeddings_response(request: dict[str, Any]) -> dict[str, Any]:
    """One vector per input, the same for the same text, of `dimensions` numbers (8 by default)."""
    inputs = [request["input"]] if isinstance(request["input"], str) else request["input"]
    size = int(request.get("dimensions") or 8)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": [((zlib.crc32(str(text).encode()) >> k) % 100) / 100 for k in range(size)],
        }
        for i, text in enumerate(inputs)
    ]
    tokens = sum(len(str(text).split()) for text in inputs)
    return {
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def usage_object(behaviour: UpstreamBehaviour) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": behaviour.prompt_tokens,
        "completion_tokens": behaviour.completion_tokens,
        "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens,
    }
    if behaviour.cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": behaviour.cached_tokens}
    return usage


def logprobs_object(logprobs: tuple[float, ...]) -> dict[str, Any]:
    return {
        "content": [
            {"token": f"t{i}", "logprob": lp, "bytes": None, "top_logprobs": []} for i, lp in enumerate(logprobs)
        ]
    }


def models_list(behaviour: UpstreamBehaviour, created: int) -> dict[str, Any]:
    models = [*behaviour.models, "fail-500", "hang", "refuse", "malformed", "no-usage"]
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "cascadeops-bench"} for m in models],
    }


def error_body(status: int, message: str) -> bytes:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    error = {
        "message": message,
        "type": kind,
        "param": None,
        "code": HTTPStatus(status).phrase.lower().replace(" ", "_"),
    }
    return json.dumps({"error": error}).encode()


def parse_request(raw: bytes) -> dict[str, Any] | None:
    try:
        request = json.loads(raw)
    except ValueError:
        return None
    return request if isinstance(request, dict) and "model" in request else None


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def wait_for_disconnect(receive: Receive) -> None:
    """Hang until the client hangs up, so that a test's timeout ends the request."""
    async with asyncio.timeout(HANG_S):
        while (await receive())["type"] != "http.disconnect":
            pass


async def respond(send: Send, status: int, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """A running upstream: where to reach it and what it has received."""

    base_url: str
    app: UpstreamApp

    @property
    def calls(self) -> Counter[str]:
        """Requests received per model name."""
        return self.app.calls

    @property
    def last_headers(self) -> dict[str, str]:
        """The headers of the latest chat-completions request, names in lower case."""
        return self.app.last_headers

    @property
    def last_request(self) -> dict[str, Any]:
        """The JSON body of the latest chat-completions request."""
        return self.app.last_request

    @property
    def last_client(self) -> tuple[str, int] | None:
        """The (host, port) the latest request came from: the same port, the same connection."""
        return self.app.last_client


@contextmanager
def running_upstream(behaviour: UpstreamBehaviour | None = None) -> Iterator[UpstreamServer]:
    """Serve an `UpstreamApp` on a free loopback port in a background thread."""
    app = UpstreamApp(behaviour)
    # Binding here, not in uvicorn, gives us the port before the server starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="upstream", daemon=True)
    thread.start()
    try:
        wait_until_serving(server, thread, port)
        yield UpstreamServer(base_url=f"http://127.0.0.1:{port}/v1", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        sock.close()


def server_config(app: UpstreamApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        # Leave the host process's logging (pytest's, say) alone.
        log_config=None,
        access_log=False,
        # A client still waiting on `hang` must not hold the shutdown for long.
        timeout_graceful_shutdown=1,
    )


def wait_until_serving(server: uvicorn.Server, thread: threading.Thread, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not (server.started and accepts_connections(port)):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the upstream on port {port} did not start")
        time.sleep(0.01)


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    behaviour = UpstreamBehaviour(
        answer=args.answer,
        status=args.status,
        delay_s=args.delay,
        error_rate=args.error_rate,
        error_statuses=tuple(int(s) for s in args.error_statuses.split(",")),
        timeout_rate=args.timeout_rate,
        spike_rate=args.spike_rate,
        spike_s=args.spike_ms / 1000,
        seed=args.seed,
        tool_calls=tuple(tool_call_arg(spec) for spec in args.tool_call),
    )
    print(f"upstream: http://{args.host}:{args.port}/v1 ({behaviour})", flush=True)
    uvicorn.run(
        UpstreamApp(behaviour),
        host=args.host,
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testing.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--answer", default=DEFAULT_ANSWER)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with an error")
    parser.add_argument("--error-statuses", default="500", help="the error statuses, drawn evenly: 500,503")
    parser.add_argument("--timeout-rate", type=float, default=0.0, help="share of requests that hang until cut off")
    parser.add_argument("--spike-rate", type=float, default=0.0, help="share of answers delayed by --spike-ms")
    parser.add_argument("--spike-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tool-call",
        action="append",
        default=[],
        metavar="MODEL:TOOL:ARGUMENTS",
        help="answer requests with tools to MODEL with a call to TOOL (arguments JSON); repeatable",
    )
    return parser.parse_args(argv)


def tool_call_arg(spec: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`model:tool:{"json": "arguments"}` → a `UpstreamBehaviour.tool_calls` entry."""
    model, tool, arguments = spec.split(":", 2)
    return model, ((tool, arguments),)


if __name__ == "__main__":
    main()
