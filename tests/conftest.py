"""Shared fixtures: isolated record buffers, a fresh config cache, personas and a live server."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from routing.snapshots import config_cache


@pytest.fixture(autouse=True)
def _isolated_routing_state(settings: object, tmp_path: Path) -> Iterator[None]:
    """Each test gets its own record spool (or Redis stream) and an empty config cache."""
    settings.CASCADEOPS_RECORD_SPOOL_DIR = tmp_path / "record-spool"  # type: ignore[attr-defined]
    stream = f"cascadeops:test:records:{uuid.uuid4().hex}"
    settings.CASCADEOPS_RECORD_STREAM = stream  # type: ignore[attr-defined]
    config_cache.__init__()  # type: ignore[misc]
    yield
    config_cache.__init__()  # type: ignore[misc]
    if settings.REDIS_URL:  # type: ignore[attr-defined]
        from cascadeops.redis import sync_client

        sync_client().delete(stream)


@pytest.fixture
def operator(django_user_model: type) -> object:
    """A staff user who may edit routing configuration."""
    return django_user_model.objects.create_superuser("operator", "operator@example.com", "correct-horse-battery")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveGateway:
    """The real ASGI application served by uvicorn on a loopback port, in a thread."""

    def __init__(self) -> None:
        import uvicorn

        from cascadeops.asgi import application

        self.port = _free_port()
        config = uvicorn.Config(application, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveGateway:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the live gateway did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_gateway(transactional_db: None) -> Iterator[LiveGateway]:
    """A gateway serving over real HTTP; data written by the test is committed and visible."""
    with LiveGateway() as gateway:
        yield gateway


def flush_records() -> int:
    """Run the flusher the way beat does, until the buffer is empty."""
    from routing.recorder import flush_pending

    total = 0
    while (n := flush_pending()) > 0:
        total += n
    return total
