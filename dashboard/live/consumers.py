"""The dashboard's websocket: join the groups a page asks for, forward what they get."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

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

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        group = groups.for_subscription(content)
        if group is None:
            await self.send_json({"type": "error", "message": "Unknown subscription."})
            return
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.add(group)

    async def disconnect(self, code: int) -> None:
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "attached", False):
            broadcast.ticker().detach()

    async def live_update(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])
