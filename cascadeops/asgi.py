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

from dashboard.ws_urls import websocket_urlpatterns  # noqa: E402
from routing.api.asgi import HotPathHandler  # noqa: E402

# The routing API gets a lean handler; everything else is plain Django.
HOT_PATH_PREFIX = "/v1/"


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
