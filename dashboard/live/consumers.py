"""The dashboard's websocket: join the groups a page asks for, forward what they get."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from dashboard.live import broadcast, groups

FORBIDDEN = 4403


class LiveChartsConsumer(AsyncJsonWebsocketConsumer):
    """Subscribes a dashboard page to its groups and forwards each tick's message."""

    async def connect(self) -> None:
        self.joined: set[str] = set()
        if not await database_sync_to_async(groups.may_watch)(self.scope.get("user")):
            await self.close(code=FORBIDDEN)
            return
        await self.accept()
        broadcast.ticker().attach()
        self.attached = True
        self.watchman = asyncio.create_task(self.close_once_not_allowed())

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        group = groups.for_subscription(content)
        if group is None:
            await self.send_json({"type": "error", "message": "Unknown subscription."})
            return
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.add(group)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "watchman"):
            self.watchman.cancel()
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "attached", False):
            broadcast.ticker().detach()

    async def live_update(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])

    async def close_once_not_allowed(self) -> None:
        """Ask the database every `CASCADEOPS_DASHBOARD_RECHECK_SECONDS` whether the user may
        still watch; close the socket once not (deactivated, or the right taken away)."""
        user = self.scope.get("user")
        while True:
            await asyncio.sleep(settings.CASCADEOPS_DASHBOARD_RECHECK_SECONDS)
            if not await database_sync_to_async(groups.may_still_watch)(user):
                await self.close(code=FORBIDDEN)
                return
