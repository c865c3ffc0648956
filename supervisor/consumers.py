"""The supervisor's websockets: the live boards and silent monitoring of one conversation.

Neither adds events of its own. A board joins the groups the agents' own
events already go to (``agent.<id>`` of every agent, ``service.<id>`` of every
active service: group names from ``core.groups``, ids from the database) and
re-reads the board from the database when anything arrives there; bursts are
coalesced so a busy floor costs one render per ``BOARD_COALESCE`` seconds. A
periodic refresh catches changes no event announces (a customer leaving the
queue) and agents added after the socket opened.

The monitor joins ``conversation.<uuid>`` like the customer's socket does,
and renders the same timeline partial as the agent desktop, read-only. It
takes no frames except ``resync`` (back-fill after a reconnect): a supervisor
listening in cannot type, mark read or send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from django.conf import settings
from django.template.loader import render_to_string

from agents.models import AgentProfile
from conversations.models import Service
from core.consumers import ParleyConsumer
from core.db import database_sync_to_async
from core.groups import agent_group, conversation_group, service_group
from core.i18n import database_sync_to_async_in_language, language_from_scope
from supervisor.access import is_supervisor

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
BOARD_COALESCE = 0.3
# Timeline kinds that change the monitor's header (live media, agent, status).
STRUCTURAL_KINDS = frozenset(
    {"interaction_started", "interaction_answered", "interaction_ended", "assigned", "transferred", "closed"}
)
BOARD_REFRESH = 15.0


class SupervisorSocket(ParleyConsumer):
    """Authorisation, language and the tolerant dispatch both sockets share."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not is_supervisor(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.language = language_from_scope(self.scope)
        self.groups_joined: set[str] = set()
        if not await self.setup():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        await self.send_html(await self.render_current())

    async def setup(self) -> bool:
        return True

    async def join(self, groups) -> None:
        for group in set(groups) - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def dispatch(self, message: dict) -> None:
        # The groups we listen to carry many event types (typing, receipts, a channel's own
        # signalling); those without a handler here are of no interest to a supervisor.
        kind = message.get("type")
        handler = getattr(self, get_handler_name(message), None) if isinstance(kind, str) and kind else None
        if handler is None and not str(kind).startswith("websocket."):
            return
        await super().dispatch(message)

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
        action = frame.get("action")
        if action == "resync":
            await self.on_resync(frame)
        elif action in ("read", "typing"):
            # parley.js sends these from any page with a timeline; listening in is silent.
            return
        else:
            await self.send_error("unknown_action")

    async def on_resync(self, frame: dict) -> None:
        await self.send_html(await self.render_current())

    async def send_error(self, code: str) -> None:
        await self.send(text_data=json.dumps({"error": code}))

    async def send_html(self, html: str) -> None:
        if html.strip():
            await self.send(text_data=html)

    def _render(self, *parts: tuple[str, dict]) -> str:
        # Called by the render_* methods, which already run in the socket's language.
        return "".join(render_to_string(name, context) for name, context in parts)

    async def render_current(self) -> str:
        raise NotImplementedError


def _query_int(scope, name: str) -> int | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name) or [""]
    return int(values[0]) if values[0].isdigit() else None


class BoardConsumer(SupervisorSocket):
    """``/ws/supervisor/agents/`` and ``/ws/supervisor/queues/``; ``?team=&service=`` filter like the page."""

    board = "agents"

    async def setup(self) -> bool:
        self.filters = {"team_id": _query_int(self.scope, "team"), "service_id": _query_int(self.scope, "service")}
        self.render_task: asyncio.Future | None = None
        self.dirty = False
        await self.join(await self.watched_groups())
        self.refresher = asyncio.ensure_future(self.refresh_forever())
        return True

    async def disconnect(self, code: int) -> None:
        for task in (getattr(self, "refresher", None), getattr(self, "render_task", None)):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await super().disconnect(code)

    @database_sync_to_async
    def watched_groups(self) -> list[str]:
        agents = AgentProfile.objects.filter(user__is_active=True).values_list("user_id", flat=True)
        services = Service.objects.filter(is_active=True).values_list("pk", flat=True)
        return [agent_group(user_id) for user_id in agents] + [service_group(pk) for pk in services]

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(BOARD_REFRESH)
            try:
                await self.join(await self.watched_groups())
                await self.send_html(await self.render_current())
            except Exception as exc:
                logger.warning("supervisor board refresh failed: %r", exc)

    async def board_changed(self) -> None:
        self.dirty = True
        if self.render_task is None or self.render_task.done():
            self.render_task = asyncio.ensure_future(self.render_soon())

    async def render_soon(self) -> None:
        # An event arriving while a render reads the database may have committed after the read: go again.
        while self.dirty:
            await asyncio.sleep(BOARD_COALESCE)
            self.dirty = False
            await self.send_html(await self.render_current())

    # Events of the agents' and services' groups that change a board.
    async def agent_state(self, event: dict) -> None:
        await self.board_changed()

    async def agent_offers(self, event: dict) -> None:
        await self.board_changed()

    async def agent_conversations(self, event: dict) -> None:
        await self.board_changed()

    async def service_queue(self, event: dict) -> None:
        await self.board_changed()

    @database_sync_to_async_in_language
    def render_current(self) -> str:
        from supervisor import views

        if self.board == "queues":
            return self._render((views.QUEUES_BOARD, views.queues_board_context(**self.filters)))
        return self._render((views.AGENTS_BOARD, views.agents_board_context(**self.filters)))


class AgentsBoardConsumer(BoardConsumer):
    board = "agents"


class QueuesBoardConsumer(BoardConsumer):
    board = "queues"


class MonitorConsumer(SupervisorSocket):
    """``/ws/supervisor/conversations/<uuid>/``: one conversation, read-only, live."""

    async def setup(self) -> bool:
        raw = self.scope["url_route"]["kwargs"].get("conversation_uuid")
        try:
            self.conversation_uuid = str(uuid.UUID(str(raw)))
        except ValueError:
            return False
        if not await self.conversation_exists():
            return False
        await self.join([conversation_group(self.conversation_uuid)])
        return True

    @database_sync_to_async
    def conversation_exists(self) -> bool:
        from supervisor.selectors import conversation_for_supervisor

        return conversation_for_supervisor(conversation_uuid=self.conversation_uuid) is not None

    async def on_resync(self, frame: dict) -> None:
        after = frame.get("after", 0)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            await self.send_error("malformed_frame")
            return
        await self.send_html(await self.render_current(after=after))

    async def conversation_timeline(self, event: dict) -> None:
        entry_id = event.get("entry_id")
        if isinstance(entry_id, int):
            await self.send_html(await self.render_entry(entry_id))

    async def conversation_changed(self, event: dict) -> None:
        await self.send_html(await self.render_current())

    async def conversation_receipts(self, event: dict) -> None:
        await self.send_html(await self.render_receipts())

    def _conversation(self):
        from supervisor.selectors import conversation_for_supervisor

        return conversation_for_supervisor(conversation_uuid=self.conversation_uuid)

    def _user(self):
        return self.scope["user"]

    @database_sync_to_async_in_language
    def render_current(self, after: int | None = None) -> str:
        from conversations import selectors
        from supervisor import views

        conversation = self._conversation()
        if conversation is None:
            return ""
        parts = [(views.MONITOR_HEADER, views.monitor_header_context(conversation=conversation, user=self._user()))]
        if after is not None:
            entries = selectors.conversation_entries_after(conversation=conversation, after_id=after)
            if entries:
                context = views.monitor_entries_context(conversation=conversation, user=self._user(), entries=entries)
                parts.append((views.ENTRIES, context))
        return self._render(*parts)

    @database_sync_to_async_in_language
    def render_entry(self, entry_id: int) -> str:
        from conversations import selectors
        from supervisor import views

        conversation = self._conversation()
        if conversation is None:
            return ""
        entry = selectors.timeline_entry_for(conversation=conversation, entry_id=entry_id)
        if entry is None:
            return ""
        context = views.monitor_entries_context(conversation=conversation, user=self._user(), entries=[entry])
        parts = [(views.ENTRIES, context)]
        if entry.kind in STRUCTURAL_KINDS:
            header = views.monitor_header_context(conversation=conversation, user=self._user())
            parts.append((views.MONITOR_HEADER, header))
        return self._render(*parts)

    @database_sync_to_async_in_language
    def render_receipts(self) -> str:
        from conversations import selectors
        from supervisor import views

        conversation = self._conversation()
        if conversation is None:
            return ""
        entries = selectors.conversation_receipt_entries(conversation=conversation)
        if not entries:
            return ""
        context = views.monitor_entries_context(conversation=conversation, user=self._user(), entries=entries[::-1])
        context["update_only"] = True
        return self._render((views.ENTRIES, context))
