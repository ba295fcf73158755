"""Websocket routes (named ws_urls: "routing.py" would clash with the routing app)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from dashboard.live.consumers import LiveChartsConsumer

websocket_urlpatterns: list[Any] = [
    # channels' URLRouter takes ASGI apps; django-stubs types `path` for views only.
    path("ws/dashboard/", LiveChartsConsumer.as_asgi()),  # type: ignore[arg-type]
]
