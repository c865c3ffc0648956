"""The agent desktop's websocket: one per open desktop tab.

Events name rows by id; the consumer loads them and renders the same template
partials the htmx views return, which htmx's websocket extension swaps in by id.
The client tells the consumer which conversation it shows (``resync``), so the
consumer sends timeline entries, typing and delivery marks for that one only;
every other conversation reaches the tab through the Active Conversations List.

Client frames (JSON):
- ``{"action": "resync", "conversation": "<uuid or empty>", "after": <last entry id>}``:
  sent on every (re)connect and whenever the workspace shows another
  conversation. Answered with state, offers and list, and the entries of that
  conversation after ``after``, read from the database.
- ``{"action": "read", "conversation": "<uuid>", "upto": <entry id>}``: the
  agent has seen the timeline up to that entry.
- ``{"action": "typing", "conversation": "<uuid>", "typing": true|false}``.
- ``{"action": "send", "conversation": "<uuid>", "text": "...", "client_id": "<the tab's id for it>"}``:
  a chat reply, stored as the composer's HTTP POST stores it, without an HTTP round trip. Answered with
  ``{"sent": "<client_id>", "entry": <entry id>}`` (the entry itself arrives as the timeline push every
  message gets) or ``{"error": "<code>", "client_id": "<client_id>", "message": "<for the agent>"}``.
  The same ``client_id`` sent again (after a dropped socket) is answered with the message already stored.
A frame naming a conversation that is not the agent's gets an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext_lazy

from agents.selectors import agent_for_user
from agents.views import state_partial_context
from core.consumers import ParleyConsumer
from core.db import database_sync_to_async
from core.groups import agent_group
from core.i18n import database_sync_to_async_in_language, language_from_scope
from core.realtime import websocket_overloaded

logger = logging.getLogger(__name__)

# Close codes in the private range; 4401/4403 mirror HTTP's meaning.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

# Timeline kinds that change what the workspace header and composer offer.
STRUCTURAL_KINDS = frozenset(
    {"interaction_started", "interaction_answered", "interaction_ended", "assigned", "transferred", "closed"}
)
# Typing signals forwarded per socket, at most one per this many seconds (per state change).
TYPING_INTERVAL = 1.0
# Frames one socket may send per window; the desktop sends a few per minute (re-sync, read, typing).
FRAME_BUDGET = 60
FRAME_WINDOW = 10.0
# RFC 6455 "Try Again Later": the browser reconnects (and re-syncs) as after any drop.
CLOSE_TRY_AGAIN = 1013


@dataclass
class Pending:
    """What the events since the last push named; rendered together, read once from the database.

    A burst of events costs one render instead of one each, and the consumer takes the next event off
    the channel layer at once, so a busy desktop never builds a queue of renders (or of events). The render
    takes what is pending when it starts on its database thread, not when it was queued for one: under load,
    the events that arrive while it waits for a thread are read and sent with it.
    """

    state: bool = False
    offers: bool = False
    whole_list: bool = False
    rows: set[str] = field(default_factory=set)
    # The conversation the tab showed when these events came, and what changed in it.
    open_conversation: str = ""
    entries: set[int] = field(default_factory=set)
    controls: bool = False
    contact: bool = False
    receipts: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.state
            or self.offers
            or self.whole_list
            or self.rows
            or self.entries
            or self.controls
            or self.contact
            or self.receipts
        )


class FrameError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SendError(Exception):
    """A reply that was not stored: the desktop puts its text back and shows ``message``."""

    def __init__(self, code: str, client_id: str, message) -> None:
        super().__init__(code)
        self.code = code
        self.client_id = client_id
        self.message = message


# The tab's id for a reply: what crypto.randomUUID() or the desktop's fallback makes.
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
SEND_FAILED = gettext_lazy("The message could not be sent.")


class AgentConsumer(ParleyConsumer):
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
        # The conversation this tab shows in its workspace (set by "resync").
        self.open_conversation: str = ""
        self.last_typing: tuple[str, bool, float] = ("", False, 0.0)
        self.frame_times: deque[float] = deque()
        self.pending = Pending()
        # The event handlers (on the event loop) add to ``pending``; the render (on a database thread) takes it.
        self.pending_lock = threading.Lock()
        self.flusher: asyncio.Future | None = None
        # One render and send at a time, so pushes reach the tab in the order they were read.
        self.render_lock = asyncio.Lock()
        self.groups_joined = [agent_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # Re-sync from the database on every (re)connect: events sent while
        # this socket was away are not replayed, the current state is.
        await self.send_html(await self.render_overview())

    async def disconnect(self, code: int) -> None:
        flusher = getattr(self, "flusher", None)
        if flusher is not None:
            flusher.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def dispatch(self, message: dict) -> None:
        try:
            await super().dispatch(message)
        except DatabaseError as exc:
            # The database is unreachable, so this push cannot be rendered. Close with "try again later":
            # the desktop reconnects and re-syncs from the database once it is back, missing nothing.
            logger.warning("agent socket: database unavailable during %s: %r", message.get("type"), exc)
            await self.close(code=CLOSE_TRY_AGAIN)

    # Client frames ------------------------------------------------------------------
    def over_budget(self) -> bool:
        now = time.monotonic()
        while self.frame_times and now - self.frame_times[0] > FRAME_WINDOW:
            self.frame_times.popleft()
        if len(self.frame_times) >= FRAME_BUDGET:
            return True
        self.frame_times.append(now)
        return False

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.over_budget():
            await self.send_error("rate_limited")
            return
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
        handler = {
            "resync": self.on_resync,
            "read": self.on_read,
            "typing": self.on_typing,
            "send": self.on_send,
        }.get(frame.get("action"))
        if handler is None:
            await self.send_error("unknown_action")
            return
        try:
            await handler(frame)
        except SendError as exc:
            with translation.override(self.language):
                message = str(exc.message)
            await self.send(text_data=json.dumps({"error": exc.code, "client_id": exc.client_id, "message": message}))
        except FrameError as exc:
            await self.send_error(exc.code)

    async def on_resync(self, frame: dict) -> None:
        target = frame.get("conversation") or ""
        after = _non_negative_int(frame.get("after", 0))
        async with self.render_lock:
            html, found = await self.render_resync(_uuid_or_empty(target), after)
            await self.send_html(html)
        if target and not found:
            raise FrameError("conversation_not_found")

    async def on_read(self, frame: dict) -> None:
        target = _uuid_or_error(frame.get("conversation"))
        upto = _non_negative_int(frame.get("upto"))
        if websocket_overloaded():
            # Read marks are cumulative: the tab's next one covers this.
            return
        await self.mark_read(target, upto)

    async def on_typing(self, frame: dict) -> None:
        target = _uuid_or_error(frame.get("conversation"))
        typing = frame.get("typing")
        if not isinstance(typing, bool):
            raise FrameError("malformed_frame")
        last_target, last_typing, last_at = self.last_typing
        now = time.monotonic()
        if (target, typing) == (last_target, last_typing) and now - last_at < TYPING_INTERVAL:
            return
        self.last_typing = (target, typing, now)
        if websocket_overloaded():
            return
        await self.forward_typing(target, typing)

    async def on_send(self, frame: dict) -> None:
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
            raise FrameError("malformed_frame")
        # From here on every refusal names the reply, so the desktop stops sending it again.
        text = frame.get("text")
        try:
            target = _uuid_or_error(frame.get("conversation"))
        except FrameError:
            target = None
        if not isinstance(text, str) or target is None:
            raise SendError("malformed_frame", client_id, SEND_FAILED)
        if websocket_overloaded():
            # The desktop keeps the text and sends it again in a moment, with the same id.
            raise SendError("busy", client_id, gettext_lazy("Busy: sending again in a moment."))
        entry_id = await self.store_reply(target, text, client_id)
        await self.send(text_data=json.dumps({"sent": client_id, "entry": entry_id}))

    async def send_error(self, code: str) -> None:
        await self.send(text_data=json.dumps({"error": code}))

    async def send_html(self, html: str) -> None:
        if html.strip():
            await self.send(text_data=html)

    def _is_open(self, event: dict) -> bool:
        """Whether the event is about the conversation this tab shows (remembered for the render).

        Called with ``pending_lock`` held.
        """
        if not self.open_conversation or event.get("conversation") != self.open_conversation:
            return False
        if self.pending.open_conversation != self.open_conversation:
            # The tab moved on to another conversation: what was pending for the last one is moot.
            self.pending.open_conversation = self.open_conversation
            self.pending.entries.clear()
            self.pending.controls = self.pending.contact = self.pending.receipts = False
        return True

    def _row(self, event: dict) -> None:
        """Called with ``pending_lock`` held."""
        conversation_uuid = event.get("conversation")
        if isinstance(conversation_uuid, str) and conversation_uuid:
            self.pending.rows.add(conversation_uuid)
        else:
            self.pending.whole_list = True

    def _take_pending(self) -> Pending:
        """What the events so far named, for the render about to read it; later events start a new one."""
        with self.pending_lock:
            pending, self.pending = self.pending, Pending()
        return pending

    def _flush_soon(self) -> None:
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self.pending:
                async with self.render_lock:
                    await self.send_html(await self.render_pending())
        except DatabaseError as exc:
            # The database is unreachable, so the push cannot be rendered. Close with "try again later":
            # the desktop reconnects and re-syncs from the database once it is back, missing nothing.
            logger.warning("agent socket: database unavailable during a push: %r", exc)
            await self.close(code=CLOSE_TRY_AGAIN)

    # Channel-layer events ----------------------------------------------------------------
    async def agent_state(self, event: dict) -> None:
        with self.pending_lock:
            self.pending.state = True
        self._flush_soon()

    async def agent_offers(self, event: dict) -> None:
        with self.pending_lock:
            self.pending.offers = True
        self._flush_soon()

    async def agent_conversations(self, event: dict) -> None:
        with self.pending_lock:
            self.pending.whole_list = True
        self._flush_soon()

    async def conversation_changed(self, event: dict) -> None:
        with self.pending_lock:
            self.pending.whole_list = True
            if self._is_open(event):
                self.pending.controls = True
        self._flush_soon()

    async def conversation_timeline(self, event: dict) -> None:
        # Every message moves its conversation's row (preview, unread, waiting timer); only that row is sent.
        with self.pending_lock:
            self._row(event)
            if self._is_open(event):
                self.pending.entries.add(_non_negative_int(event.get("entry_id", 0)))
        self._flush_soon()

    async def conversation_contact(self, event: dict) -> None:
        # The row shows the contact's name; the open conversation's panel and composer its addresses.
        with self.pending_lock:
            self._row(event)
            if self._is_open(event):
                self.pending.controls = self.pending.contact = True
        self._flush_soon()

    async def conversation_receipts(self, event: dict) -> None:
        # Read marks change the row's unread count; delivery marks the open timeline.
        with self.pending_lock:
            self._row(event)
            if self._is_open(event):
                self.pending.receipts = True
        self._flush_soon()

    async def conversation_typing(self, event: dict) -> None:
        if event.get("who") != "customer" or event.get("conversation") != self.open_conversation:
            return
        await self.send_html(await self.render_typing(event["conversation"], bool(event.get("typing"))))

    # Rendering (database work in a thread) -------------------------------------------------
    def _render(self, *parts: tuple[str, dict]) -> str:
        # Called by the render_* methods, which already run in the socket's language.
        return "".join(render_to_string(name, context) for name, context in parts)

    def _user(self):
        return self.scope["user"]

    def _overview_parts(self) -> list[tuple[str, dict]]:
        from conversations import views

        agent = agent_for_user(user=self._user())
        user = agent.user
        return [
            ("agents/desktop.html#agent-state", state_partial_context(agent=agent)),
            (views.OFFERS, views.offers_context(user=user)),
            (views.ACL, views.acl_context(user=user, selected=self.open_conversation)),
        ]

    def _own_conversation(self, conversation_uuid):
        from conversations.selectors import conversation_for_agent

        if not conversation_uuid:
            return None
        try:
            return conversation_for_agent(agent=self._user(), conversation_uuid=conversation_uuid)
        except (ValueError, ValidationError):
            return None

    def _controls_parts(self, conversation) -> list[tuple[str, dict]]:
        from conversations import views

        state = views.workspace_state(conversation=conversation, user=self._user())
        if state["wrapup"]:
            state["wrapup_form"] = views.wrapup_form_for(conversation)
        return [(views.WORKSPACE_HEADER, state), (views.COMPOSER, state)]

    def _gone_parts(self, conversation_uuid: str) -> list[tuple[str, dict]]:
        """The open conversation left this agent (transferred, taken over): clear the workspace.

        Only where the tab still shows it: the view that moved it may have cleared it already.
        """
        from conversations import views

        self.open_conversation = ""
        notice = gettext_lazy("This conversation is no longer in your list.")
        return [
            (views.WORKSPACE_EMPTY, {"notice": notice, "only_if_showing": conversation_uuid}),
            (views.CONTACT_PANEL, {**views.contact_context(conversation=None), "only_if_showing": conversation_uuid}),
        ]

    @database_sync_to_async_in_language
    def render_overview(self) -> str:
        return self._render(*self._overview_parts())

    @database_sync_to_async_in_language
    def render_resync(self, target: str, after: int) -> tuple[str, bool]:
        from conversations import selectors, views

        conversation = self._own_conversation(target)
        self.open_conversation = str(conversation.uuid) if conversation else ""
        parts = self._overview_parts()
        if conversation is not None:
            entries = selectors.conversation_entries_after(conversation=conversation, after_id=after)
            if entries:
                parts.append(
                    (
                        views.ENTRIES,
                        views.entries_context(conversation=conversation, user=self._user(), entries=entries),
                    )
                )
            parts.extend(self._controls_parts(conversation))
        elif target:
            parts.extend(self._gone_parts(target))
        return self._render(*parts), conversation is not None

    @database_sync_to_async_in_language
    def render_pending(self) -> str:
        """Everything the events since the last push named, read once from the database.

        Order as the tab expects it: new entries first (the list's previews point at them), then
        state, offers and the list, then the open conversation's controls, contact panel and marks.
        """
        from conversations import selectors, views

        pending = self._take_pending()
        user = self._user()
        first: list[tuple[str, dict]] = []
        parts: list[tuple[str, dict]] = []
        if pending.state:
            parts.append(("agents/desktop.html#agent-state", state_partial_context(agent=agent_for_user(user=user))))
        if pending.offers:
            parts.append((views.OFFERS, views.offers_context(user=user)))
        rows: dict[str, object] = {}
        whole_list = pending.whole_list
        target = pending.open_conversation if pending.open_conversation == self.open_conversation else ""
        # The open conversation's one new entry, read with its row (the usual push: one message).
        entries_read: list | None = None
        if not whole_list:
            for conversation_uuid in sorted(pending.rows):
                if conversation_uuid == target and len(pending.entries) == 1:
                    (entry_id,) = pending.entries
                    row, entry = selectors.acl_row_and_entry_for_agent(
                        agent=user, conversation_uuid=conversation_uuid, entry_id=entry_id
                    )
                    if row is not None:
                        entries_read = [entry] if entry is not None else []
                else:
                    row = selectors.acl_row_for_agent(agent=user, conversation_uuid=conversation_uuid)
                if row is None:
                    # Not in the list (any more): it left or joined it, which changes more than one row.
                    whole_list = True
                    break
                rows[conversation_uuid] = row
        if whole_list:
            parts.append((views.ACL, views.acl_context(user=user, selected=self.open_conversation)))
        else:
            parts.extend(
                (views.ACL_ROW, views.acl_row_context(row=row, selected=self.open_conversation))
                for row in rows.values()
            )
        if target:
            conversation = rows.get(target) or self._own_conversation(target)
            if conversation is None:
                parts.extend(self._gone_parts(target))
            else:
                controls = pending.controls
                if pending.entries:
                    entries = entries_read
                    if entries is None:
                        entries = selectors.timeline_entries_for(conversation=conversation, entry_ids=pending.entries)
                    if entries:
                        first.append(
                            (
                                views.ENTRIES,
                                views.entries_context(conversation=conversation, user=user, entries=entries),
                            )
                        )
                    controls = controls or any(entry.kind in STRUCTURAL_KINDS for entry in entries)
                if controls:
                    parts.extend(self._controls_parts(conversation))
                if pending.contact:
                    parts.append((views.CONTACT_PANEL, views.contact_context(conversation=conversation)))
                if pending.receipts:
                    marked = selectors.conversation_receipt_entries(conversation=conversation)
                    if marked:
                        context = views.entries_context(
                            conversation=conversation, user=user, entries=marked[::-1], update_only=True
                        )
                        parts.append((views.ENTRIES, context))
        return self._render(*first, *parts)

    @database_sync_to_async_in_language
    def render_typing(self, conversation_uuid: str, typing: bool) -> str:
        from conversations import views

        conversation = self._own_conversation(conversation_uuid)
        if conversation is None:
            return ""
        return self._render(
            (views.TYPING, {"conversation": conversation, "contact": conversation.contact, "typing": typing})
        )

    @database_sync_to_async
    def mark_read(self, conversation_uuid: str, upto: int) -> None:
        from channels_app.webchat.services import chat_mark_read

        conversation = self._own_conversation(conversation_uuid)
        if conversation is None:
            raise FrameError("conversation_not_found")
        chat_mark_read(conversation=conversation, side="agent", upto_entry_id=upto)

    @database_sync_to_async
    def store_reply(self, conversation_uuid: str, text: str, client_id: str) -> int:
        from channels_app.webchat.services import chat_agent_message

        with translation.override(self.language):
            conversation = self._own_conversation(conversation_uuid)
            if conversation is None:
                raise SendError("conversation_not_found", client_id, gettext_lazy("This conversation is not yours."))
            try:
                message = chat_agent_message(
                    conversation=conversation, agent_user=self._user(), text=text, client_key=client_id
                )
            except ValidationError as exc:
                # Translated here, where the socket's language is active.
                raise SendError("rejected", client_id, " ".join(exc.messages)) from None
            return message.entry.pk

    @database_sync_to_async
    def forward_typing(self, conversation_uuid: str, typing: bool) -> None:
        from channels_app.webchat.services import chat_typing

        conversation = self._own_conversation(conversation_uuid)
        if conversation is None:
            raise FrameError("conversation_not_found")
        if conversation.is_open:
            chat_typing(conversation=conversation, who="agent", typing=typing)


def _uuid_or_empty(value) -> str:
    if not value:
        return ""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise FrameError("malformed_frame") from exc


def _uuid_or_error(value) -> str:
    if not isinstance(value, str) or not value:
        raise FrameError("malformed_frame")
    return _uuid_or_empty(value)


def _non_negative_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FrameError("malformed_frame")
    try:
        number = int(value)
    except ValueError as exc:
        raise FrameError("malformed_frame") from exc
    if number < 0 or number > 2**63 - 1:
        raise FrameError("malformed_frame")
    return number
