"""The base of every Parley websocket consumer.

Channels' ``AsyncConsumer.dispatch`` runs ``close_old_connections`` before each message it hands to a
handler (and ``websocket_disconnect`` once more at the end), on the process's one thread-sensitive executor
thread: a hop from the event loop to that thread and back for every frame and every channel-layer event,
queued behind every other socket's. Parley's consumers touch the database only through
``core.db.database_sync_to_async``, whose pool threads close their own stale connections before and after
each call, so that thread holds no connection of ours and the hop guards nothing. ``ParleyConsumer``
dispatches directly and disconnects without it.
"""

from __future__ import annotations

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer


class ParleyConsumer(AsyncWebsocketConsumer):
    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict) -> None:
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer()
