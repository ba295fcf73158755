"""ASGI entry point: the routing API, the rest of Django, and the dashboard's websockets."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cascadeops.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from dashboard.ws_urls import websocket_urlpatterns  # noqa: E402

HOT_PATH_PREFIX = "/v1/"


class HotPathHandler(ASGIHandler):
    """Django's ASGI handler for the routing API, without costs that path has no use for.

    The routing API authenticates with API keys, so the session, CSRF, auth and messages
    middleware have nothing to do there, yet every `MiddlewareMixin` hook costs a thread
    hop; and the stock handler's `ThreadSensitiveContext` starts a thread per request for
    sync calls the hot path does not make. URL resolving, the view, signals and
    disconnect handling stay Django's own. Measured by `make bench`.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)


def by_path(hot_path_app: Any, other_app: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = hot_path_app if scope["path"].startswith(HOT_PATH_PREFIX) else other_app
        await target(scope, receive, send)

    return app


application = ProtocolTypeRouter(
    {
        "http": by_path(HotPathHandler(), django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
