"""Dashboard fixtures: traffic, a fresh channel layer, a webhook receiver and a live server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import LiveGateway
from tests.dashboard.traffic import Traffic


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Each test gets its own channel layer: in-memory groups would outlive the test."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def traffic(db: None) -> Traffic:
    """A two-tier policy `demo` (replayed Mixtral → GPT-4) and a key of team growth's support-bot."""
    return Traffic.for_new_policy()


class WebhookReceiver:
    """A real HTTP server on loopback that keeps what it is sent; it can fail on purpose."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append({"path": self.path, "json": json.loads(body or b"null")})
                status = 503 if receiver.fail_next > 0 else receiver.status
                receiver.fail_next = max(0, receiver.fail_next - 1)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 400 else b"receiver is down")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/secret"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


class LiveDashboard(LiveGateway):
    """The live gateway, with static files served from the finders (as Django's live server does)."""

    def __init__(self, port: int | None = None) -> None:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        from cascadeops.asgi import application

        super().__init__()
        if port is not None:
            self.port = self.server.config.port = port
        self.server.config.app = ASGIStaticFilesHandler(application)


class BackgroundFlusher:
    """Moves request records into the database every `interval`, as beat or run_recorder would."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from django.db import connection

        from routing.records.flush import flush_pending

        try:
            while not self.stopping.is_set():
                if flush_pending() == 0:
                    time.sleep(self.interval)
        finally:
            connection.close()

    def __enter__(self) -> BackgroundFlusher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
