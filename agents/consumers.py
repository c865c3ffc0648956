"""The agent desktop's websocket: one per open desktop tab."""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from agents.selectors import agent_for_user
from agents.views import state_partial_context
from core.groups import agent_group
from core.i18n import language_from_scope

logger = logging.getLogger(__name__)

# Close codes in the private range; 4401/4403 mirror HTTP's meaning.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class AgentConsumer(AsyncWebsocketConsumer):
    """Pushes the agent's own events as HTML partials that htmx swaps in by id."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.agent = await database_sync_to_async(agent_for_user)(user=user)
        if self.agent is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.language = language_from_scope(self.scope)
        self.groups_joined = [agent_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # Re-sync from the database on every (re)connect: events sent while
        # this socket was away are not replayed, the current state is.
        await self.send_state()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        if len(raw.encode("utf-8")) > settings.WEBSOCKET_MAX_FRAME_BYTES:
            await self.send_error("frame_too_large")
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            await self.send_error("malformed_frame")
            return
        if not isinstance(frame, dict):
            await self.send_error("malformed_frame")
            return
        if frame.get("action") == "resync":
            await self.send_state()
            return
        await self.send_error("unknown_action")

    async def send_error(self, code: str) -> None:
        await self.send(text_data=json.dumps({"error": code}))

    async def send_state(self) -> None:
        await self.send(text_data=await self.render_state())

    @database_sync_to_async
    def render_state(self) -> str:
        agent = agent_for_user(user=self.scope["user"])
        with translation.override(self.language):
            return render_to_string("agents/desktop.html#agent-state", state_partial_context(agent=agent))

    # Channel-layer events ------------------------------------------------------
    async def agent_state(self, event: dict) -> None:
        await self.send_state()
