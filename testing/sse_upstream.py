"""A local OpenAI-compatible upstream that streams on cue, for the streaming tests.

It takes the streamed requests for the models `gated`, `stall`, `end-early`, `error-event`,
`refuse` and `no-usage` (each misbehaving in its own way; any other model streams normally)
and hands the rest to a `testing.upstream.UpstreamApp`. See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from testing.upstream import (
    STARTUP_TIMEOUT_S,
    Receive,
    Scope,
    Send,
    UpstreamApp,
    UpstreamBehaviour,
    read_body,
    server_config,
    wait_for_disconnect,
    wait_until_serving,
)

SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
ANSWER = "Forty-two is the answer, worked out step by step."
USAGE = {"prompt_tokens": 17, "completion_tokens": 11, "total_tokens": 28}
GATE_TIMEOUT_S = 30.0


class SSEUpstreamApp:
    """Streams the scripted models; everything else goes to `UpstreamApp`."""

    def __init__(self, answer: str = ANSWER, whole: UpstreamBehaviour | None = None) -> None:
        self.words = answer.split(" ")
        self.whole = UpstreamApp(whole)
        self.streams: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # content events sent, per model
        self.last_request: dict[str, Any] = {}
        self.gate = threading.Event()
        self.disconnected = threading.Event()

    def release(self) -> None:
        self.gate.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive) if scope["type"] == "http" else b""
        request = _json(body)
        if scope.get("path") == "/v1/chat/completions" and request.get("stream") and self._scripted(request):
            self.last_request = request
            await self._stream(str(request["model"]), request, receive, send)
            return
        await self.whole(scope, _replay(body, receive), send)

    def _scripted(self, request: dict[str, Any]) -> bool:
        return not str(request.get("model", "")).startswith("fail-")

    async def _stream(self, model: str, request: dict[str, Any], receive: Receive, send: Send) -> None:
        self.streams[model] += 1
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self._event(send, model, {"role": "assistant", "content": ""})
        await self._word(send, model, 0)
        if model == "stall":
            await wait_for_disconnect(receive)
            self.disconnected.set()
            return
        if model == "gated":
            await asyncio.to_thread(self.gate.wait, GATE_TIMEOUT_S)
        if model == "end-early":
            await send({"type": "http.response.body", "body": b""})
            return
        if model == "error-event":
            await self._send(send, {"error": {"message": "the model crashed", "type": "server_error"}})
            await send({"type": "http.response.body", "body": b""})
            return
        for index in range(1, len(self.words)):
            await self._word(send, model, index)
        await self._finish(send, model, request)

    async def _word(self, send: Send, model: str, index: int) -> None:
        self.sent[model] += 1
        await self._event(send, model, {"content": self.words[index] if index == 0 else f" {self.words[index]}"})

    async def _finish(self, send: Send, model: str, request: dict[str, Any]) -> None:
        finish_reason = "content_filter" if model == "refuse" else "stop"
        await self._event(send, model, {}, finish_reason)
        if model != "no-usage" and (request.get("stream_options") or {}).get("include_usage"):
            await self._send(send, {"id": "up", "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _event(self, send: Send, model: str, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        await self._send(send, {"id": "up", "object": "chat.completion.chunk", "model": model, "choices": [choice]})

    async def _send(self, send: Send, data: dict[str, Any]) -> None:
        body = b"data: " + json.dumps(data).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then the real one's messages."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replayed


@dataclass(frozen=True, slots=True)
class SSEUpstream:
    base_url: str
    app: SSEUpstreamApp


@contextmanager
def running_sse_upstream(answer: str = ANSWER, whole: UpstreamBehaviour | None = None) -> Iterator[SSEUpstream]:
    """Serve an `SSEUpstreamApp` on a free loopback port in a background thread."""
    app = SSEUpstreamApp(answer, whole)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sse-upstream", daemon=True)
    thread.start()
    try:
        wait_until_serving(server, thread, port)
        yield SSEUpstream(base_url=f"http://127.0.0.1:{port}/v1", app=app)
    finally:
        app.release()  # a gated stream must not hold the shutdown
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        sock.close()
