"""Shared fixtures: isolated record buffers, a fresh config cache, personas and a live server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from routing.cache.exact import cache_clear
from routing.cache.semantic import semantic_clear
from routing.config.snapshots import config_cache
from routing.limits import failed_keys
from testing.net import free_port


@pytest.fixture(autouse=True)
def _no_redis_outage_carried_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that points Redis at a dead port marks it down for the process's cool-down:
    every test starts with Redis taken to be up."""
    monkeypatch.setattr("common.redis._down_until", float("-inf"))


@pytest.fixture(autouse=True)
def _isolated_routing_state(settings: object, tmp_path: Path) -> Iterator[None]:
    """Each test gets its own record spool (or Redis stream) and an empty config cache."""
    settings.CASCADEOPS_RECORD_SPOOL_DIR = tmp_path / "record-spool"  # type: ignore[attr-defined]
    stream = f"cascadeops:test:records:{uuid.uuid4().hex}"
    settings.CASCADEOPS_RECORD_STREAM = stream  # type: ignore[attr-defined]
    # Cached answers are keyed by policy id and version, which another test (or an earlier
    # run against the same Redis) reuses for another policy: each test gets its own cache.
    cache_prefix = f"cascadeops:test:cache:{uuid.uuid4().hex}"
    settings.CASCADEOPS_CACHE_PREFIX = cache_prefix  # type: ignore[attr-defined]
    # Breakers are keyed by endpoint id, which test databases hand out again.
    breaker_prefix = f"cascadeops:test:breaker:{uuid.uuid4().hex}"
    settings.CASCADEOPS_BREAKER_PREFIX = breaker_prefix  # type: ignore[attr-defined]
    config_cache.__init__()  # type: ignore[misc]
    failed_keys.forget()  # every test's wrong keys come from 127.0.0.1
    yield
    config_cache.__init__()  # type: ignore[misc]
    cache_clear()
    semantic_clear()
    failed_keys.forget()
    if settings.REDIS_URL:  # type: ignore[attr-defined]
        from common.redis import sync_client

        client = sync_client()
        client.delete(
            stream,
            *client.scan_iter(f"{cache_prefix}:*"),
            *client.scan_iter(f"{breaker_prefix}:*"),
            *client.scan_iter(f"{failed_keys.KEY_PREFIX}:*"),
        )


@pytest.fixture
def operator(django_user_model: type) -> object:
    """A staff user who may edit routing configuration."""
    return django_user_model.objects.create_superuser("operator", "operator@example.com", "correct-horse-battery")


class LiveGateway:
    """The real ASGI application served by uvicorn on a loopback port, in a thread."""

    def __init__(self) -> None:
        import uvicorn

        from cascadeops.asgi import application

        self.port = free_port()
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
def api(operator: Any) -> APIClient:
    """The management API as the operator; authentication itself costs no queries here."""
    client = APIClient()
    client.force_authenticate(operator)
    return client


@pytest.fixture
def live_gateway(transactional_db: None) -> Iterator[LiveGateway]:
    """A gateway serving over real HTTP; data written by the test is committed and visible."""
    with LiveGateway() as gateway:
        yield gateway


def flush_records() -> int:
    """Run the flusher the way beat does, until the buffer is empty."""
    from routing.records.flush import flush_pending

    total = 0
    while (n := flush_pending()) > 0:
        total += n
    return total


@pytest.fixture
def budget_keys_cleared(settings: object) -> Iterator[None]:
    """Budget counters and announced alerts are keyed by budget id, which SQLite reuses across tests."""

    def clear() -> None:
        from routing.limits import budget_holds as budgeting

        budgeting._announced.clear()
        if settings.REDIS_URL:  # type: ignore[attr-defined]
            from common.redis import sync_client

            client = sync_client()
            for key in client.scan_iter("cascadeops:budget:*"):
                client.delete(key)

    clear()
    yield
    clear()


def subprocess_database_url() -> str:
    """A DATABASE_URL that points another process at this test run's database."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a server or worker process sharing this test's database and buffers."""
    import os

    from django.conf import settings

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cascadeops.settings",
        "DATABASE_URL": subprocess_database_url(),
        "CASCADEOPS_RECORD_SPOOL_DIR": str(settings.CASCADEOPS_RECORD_SPOOL_DIR),
        "CASCADEOPS_RECORD_STREAM": settings.CASCADEOPS_RECORD_STREAM,
        "CASCADEOPS_CACHE_PREFIX": settings.CASCADEOPS_CACHE_PREFIX,
        "CASCADEOPS_BREAKER_PREFIX": settings.CASCADEOPS_BREAKER_PREFIX,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
