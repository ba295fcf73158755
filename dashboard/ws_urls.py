"""Websocket routes (named ws_urls: "routing.py" would clash with the routing app)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
