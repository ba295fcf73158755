"""ASGI entry point: the routing API, the rest of Django, and the dashboard's websockets."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

from cascadeops.local_state import prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cascadeops.settings")
prepare()
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard.live.ws_urls import websocket_urlpatterns  # noqa: E402
from routing.api.openai.asgi import HotPathHandler  # noqa: E402
from routing.metrics import observed_http  # noqa: E402

# The routing API gets a lean handler, its responses counted for /metrics; so does
# /metrics itself (Prometheus scrapes by address, which ALLOWED_HOSTS would refuse).
# Everything else is plain Django.
HOT_PATH_PREFIX = "/v1/"
METRICS_PATH = "/metrics"
# After the server's grace period it cancels the requests still running; each records
# itself as cancelled on the way out, which gets this long before the process exits.
CANCELLED_RECORD_WAIT_S = 10.0
# The routing API's requests being served, for the shutdown to wait on.
in_flight: set[asyncio.Task[Any]] = set()


def by_path(hot_path_app: Any, other_app: Any) -> Any:
    routing_api = observed_http(hot_path_app)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path.startswith(HOT_PATH_PREFIX):
            task = asyncio.current_task()
            assert task is not None
            in_flight.add(task)
            try:
                await routing_api(scope, receive, send)
            finally:
                in_flight.discard(task)
        elif path == METRICS_PATH:
            await hot_path_app(scope, receive, send)
        else:
            await other_app(scope, receive, send)

    return app


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Startup needs nothing; shutdown waits for the cancelled requests' records.

    uvicorn sends the shutdown event once it has stopped accepting, let the requests in
    flight finish for its `--timeout-graceful-shutdown` and cancelled the rest, and it
    exits as soon as this answers. Records are made durable before an answer is sent, so
    nothing else in this process is waiting to be written.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if in_flight:
                await asyncio.wait(set(in_flight), timeout=CANCELLED_RECORD_WAIT_S)
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "lifespan": lifespan,
        "http": by_path(HotPathHandler(), django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# What exists by now (Django, the URLconf, every module) lives as long as the worker:
# frozen, the collector stops walking it (a full collection took ~100 ms). With a first
# generation of 10_000 objects rather than 700, a request's own objects no longer set off
# a collection every ~40 requests. Measured under load: the collector's share of the
# worker's CPU went from ~3% to ~0.
gc.freeze()
gc.set_threshold(10_000)
