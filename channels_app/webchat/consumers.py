"""The customer's web chat websocket: one per open chat page.

The customer is anonymous: the socket joins nothing until a ``start`` frame
(pre-chat form) or a ``resume`` frame (signed session token) arrives, and is
closed if neither comes in time. Everything after that is keyed by the
session the token names. Frames are JSON objects with a ``type``; events from
the channel layer carry ids only and every frame sent is loaded from the
database, so a client that reconnects and resumes with the last entry id it
saw misses nothing.

Client → server: ``start`` {service, visitor, fields, lang?}; ``resume``
{token, after, lang?}; ``message`` {text, client_id?}; ``typing`` {typing};
``delivered`` {upto}; ``read`` {upto}; ``end``; ``ping``.
Server → client: ``session`` {token, visitor, conversation}; ``status``
{state, position, agent}; ``entries`` {entries}; ``receipts`` {read_upto};
``typing`` {who, typing}; ``inactivity`` {ends_at}; ``error`` {code, message,
fields?, client_id?}; ``pong``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from channels_app.webchat import selectors, services
from channels_app.webchat.models import ChatSession
from conversations.models import PRECHAT_FIELDS, Conversation
from conversations.selectors import mark_without_files
from core.consumers import ParleyConsumer
from core.db import database_sync_to_async
from core.groups import conversation_group, service_group
from core.i18n import language_from_scope
from core.ratelimit import TokenBucket, limit_exceeded, scope_address
from core.realtime import websocket_overloaded

logger = logging.getLogger(__name__)

# Close codes in the private range; 4401/4403 mirror HTTP's meaning.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

ERROR_MESSAGES = {
    "frame_too_large": _("That was too much data at once."),
    "malformed_frame": _("The chat received data it could not understand."),
    "unknown_type": _("The chat received data it could not understand."),
    "not_started": _("Start the chat first."),
    "already_started": _("This chat has already started."),
    "invalid_session": _("Your chat could not be found. Please start a new one."),
    "unknown_service": _("Chat is not available for this service."),
    "invalid": _("Please correct the marked fields."),
    "unavailable": _("Chat is not available for this service."),
    "message_too_long": _("The message is too long (at most %(limit)s characters)."),
    "empty_message": _("The message is empty."),
    "rejected": _("The message could not be sent."),
    "rate_limited": _("You are sending too fast. Please wait a moment."),
    "try_again": _("That could not be saved just now. Please try again in a moment."),
    "too_many_chats": _("Too many chats were started from your address. Please wait a minute and try again."),
    "busy": _("Very many messages are arriving right now. Please send yours again in a moment."),
}

# Rate-limited frames: the ones that reach other people or write rows.
LIMITED_TYPES = ("message", "typing")
# Frames that write rows, turned away while the database work of this process is far behind.
SHED_TYPES = ("start", "message", "typing", "delivered", "read")
MAX_TOKEN_CHARS = 1000
MAX_CLIENT_ID_CHARS = 64
MAX_FIELD_CHARS = 254
# Entry ids already sent on this socket; kept bounded.
SENT_IDS_KEPT = 2000


class FrameError(Exception):
    def __init__(self, code: str, message: str | None = None, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.extra = extra


def _int_field(frame: dict, name: str) -> int:
    value = frame.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**62:
        raise FrameError("malformed_frame")
    return value


def _str_field(frame: dict, name: str, *, max_chars: int, optional: bool = False) -> str | None:
    value = frame.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise FrameError("malformed_frame")
    return value


def _supported_language(code: Any) -> str | None:
    if not isinstance(code, str) or len(code) > 20:
        return None
    try:
        return translation.get_supported_language_variant(code)
    except LookupError:
        return None


class CustomerChatConsumer(ParleyConsumer):
    """The customer's side of a web chat, in JSON frames."""

    # Seconds a fresh socket may stay open without a valid start/resume frame.
    start_timeout: float = 10.0

    async def connect(self) -> None:
        self.session: ChatSession | None = None
        self.conversation_uuid = None
        self.groups_joined: list[str] = []
        self.service_group_name: str | None = None
        self.sent_ids: set[int] = set()
        self.last_status: dict | None = None
        self.last_read_upto: int | None = None
        self.pending = False
        self.language = language_from_scope(self.scope)
        self.bucket = TokenBucket(settings.CHAT_RATE_LIMIT_PER_10S, 10.0)
        await self.accept()
        self.start_timer = asyncio.ensure_future(self._close_unless_started())

    async def _close_unless_started(self) -> None:
        await asyncio.sleep(self.start_timeout)
        # A start or resume already being processed decides for itself.
        while self.pending:
            await asyncio.sleep(0.2)
        if self.session is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        timer = getattr(self, "start_timer", None)
        if timer is not None:
            timer.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    # Frames from the customer ---------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        frame = None
        try:
            if len(raw.encode("utf-8")) > settings.WEBSOCKET_MAX_FRAME_BYTES:
                raise FrameError("frame_too_large")
            try:
                frame = json.loads(raw)
            except ValueError:
                raise FrameError("malformed_frame") from None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise FrameError("malformed_frame")
            handler = self.HANDLERS.get(frame["type"])
            if handler is None:
                raise FrameError("unknown_type")
            if self.session is None and frame["type"] not in ("start", "resume", "ping"):
                raise FrameError("not_started")
            if frame["type"] in LIMITED_TYPES and not self.bucket.take():
                raise FrameError("rate_limited", client_id=_client_id(frame))
            if frame["type"] in SHED_TYPES and websocket_overloaded():
                # Overloaded: a message or a new chat is refused (the page keeps it to send again); typing
                # and receipt marks are dropped, the next mark covers this one.
                if frame["type"] in ("message", "start"):
                    raise FrameError("busy", client_id=_client_id(frame))
                return
            await handler(self, frame)
        except FrameError as exc:
            await self.send_error(exc.code, exc.message, **exc.extra)
        except DatabaseError as exc:
            # The database is unreachable: nothing was stored (one transaction per write); the customer
            # is told at once and the socket stays, so the message can be sent again.
            logger.warning("chat frame failed, database unavailable: %r", exc)
            client_id = _client_id(frame) if isinstance(frame, dict) else None
            self.pending = False
            await self.send_error("try_again", client_id=client_id)

    async def on_ping(self, frame: dict) -> None:
        await self.send_json({"type": "pong"})

    async def on_start(self, frame: dict) -> None:
        if self.session is not None or self.pending:
            raise FrameError("already_started")
        slug = _str_field(frame, "service", max_chars=50)
        visitor = _str_field(frame, "visitor", max_chars=MAX_TOKEN_CHARS, optional=True)
        fields = frame.get("fields") or {}
        if not isinstance(fields, dict):
            raise FrameError("malformed_frame")
        data = {}
        for name in PRECHAT_FIELDS:
            value = fields.get(name)
            if value is None:
                continue
            limit = settings.CHAT_MAX_MESSAGE_CHARS if name == "question" else MAX_FIELD_CHARS
            if not isinstance(value, str) or len(value) > limit * 2:
                raise FrameError("malformed_frame")
            data[name] = value
        self.language = _supported_language(frame.get("lang")) or self.language
        # Starting chats costs a contact, a conversation and an offer: limited per client address,
        # whatever the number of sockets it opens (the per-socket bucket only limits one socket).
        wait = await database_sync_to_async(limit_exceeded)(
            scope="chat-start", key=scope_address(self.scope), limit=settings.RATE_LIMIT_CHAT_START
        )
        if wait:
            raise FrameError("too_many_chats")
        self.pending = True
        try:
            session = await database_sync_to_async(self._start)(slug=slug, visitor=visitor, data=data)
        finally:
            self.pending = False
        await self.begin(session, after=0)

    def _start(self, *, slug: str, visitor: str | None, data: dict) -> ChatSession:
        with translation.override(self.language):
            service = selectors.service_for_chat(slug=slug)
            if service is None:
                raise FrameError("unknown_service")
            try:
                session = services.chat_start(service=service, data=data, visitor=visitor)
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    errors = {name: " ".join(messages) for name, messages in exc.message_dict.items()}
                    raise FrameError("invalid", fields=errors) from None
                raise FrameError("unavailable", " ".join(exc.messages)) from None
        return ChatSession.objects.select_related("conversation", "service").get(pk=session.pk)

    async def on_resume(self, frame: dict) -> None:
        if self.session is not None or self.pending:
            raise FrameError("already_started")
        token = _str_field(frame, "token", max_chars=MAX_TOKEN_CHARS)
        after = _int_field(frame, "after")
        self.language = _supported_language(frame.get("lang")) or self.language
        self.pending = True
        try:
            session = await database_sync_to_async(services.session_from_token)(token)
        finally:
            self.pending = False
        if session is None:
            self.start_timer.cancel()
            await self.send_error("invalid_session")
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.begin(session, after=after)

    async def begin(self, session: ChatSession, *, after: int) -> None:
        """Join the session's groups, then bring the client up to date from the database."""
        self.session = session
        self.conversation_uuid = session.conversation.uuid
        self.start_timer.cancel()
        # Joined before reading the backlog: an event racing the read is sent after it, never lost.
        await self._join(conversation_group(self.conversation_uuid))
        await self.send_json(
            {
                "type": "session",
                "token": services.session_token(session),
                "visitor": services.visitor_token(session.visitor_id),
                "conversation": str(self.conversation_uuid),
            }
        )
        await self.send_status(force=True)
        await self.send_backlog(after=after)
        await self.send_receipts(force=True)
        ends_at = await database_sync_to_async(selectors.chat_inactivity_ends_at)(session=session)
        if ends_at is not None:
            await self.send_json({"type": "inactivity", "ends_at": ends_at.isoformat()})

    async def on_message(self, frame: dict) -> None:
        client_id = _client_id(frame)
        text = frame.get("text")
        if not isinstance(text, str):
            raise FrameError("malformed_frame", client_id=client_id)
        if len(text.strip()) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise FrameError("message_too_long", client_id=client_id)
        if not text.strip():
            raise FrameError("empty_message", client_id=client_id)
        entry = await database_sync_to_async(self._message)(text=text, client_id=client_id)
        await self.send_entries([entry])

    def _message(self, *, text: str, client_id: str | None) -> dict:
        with translation.override(self.language):
            try:
                message = services.chat_customer_message(session=self.session, text=text)
            except ValidationError as exc:
                raise FrameError("rejected", " ".join(exc.messages), client_id=client_id) from None
            # The rows just stored, as stored: the customer's own chat text, visible to them, with no files.
            mark_without_files(message)
            data = selectors.customer_entry_json(entry=message.entry, session=self.session)
        if client_id is not None:
            data["client_id"] = client_id
        return data

    async def on_typing(self, frame: dict) -> None:
        typing = frame.get("typing")
        if not isinstance(typing, bool):
            raise FrameError("malformed_frame")
        await database_sync_to_async(self._typing)(typing=typing)

    def _typing(self, *, typing: bool) -> None:
        conversation = Conversation.objects.get(pk=self.session.conversation_id)
        services.chat_typing(conversation=conversation, who="customer", typing=typing)

    async def on_delivered(self, frame: dict) -> None:
        await database_sync_to_async(self._mark)(upto=_int_field(frame, "upto"), read=False)

    async def on_read(self, frame: dict) -> None:
        await database_sync_to_async(self._mark)(upto=_int_field(frame, "upto"), read=True)

    def _mark(self, *, upto: int, read: bool) -> None:
        # Only as far as this session can see: never marks another session's messages.
        upto = min(upto, selectors.chat_last_visible_entry_id(session=self.session))
        if upto <= 0:
            return
        conversation = Conversation.objects.get(pk=self.session.conversation_id)
        if read:
            services.chat_mark_read(conversation=conversation, side="customer", upto_entry_id=upto)
        else:
            services.chat_mark_delivered(conversation=conversation, upto_entry_id=upto)

    async def on_end(self, frame: dict) -> None:
        await database_sync_to_async(self._end)()
        await self.send_status()

    def _end(self) -> None:
        with translation.override(self.language):
            services.chat_end(session=self.session, reason="customer_left")

    HANDLERS = {
        "start": on_start,
        "resume": on_resume,
        "message": on_message,
        "typing": on_typing,
        "delivered": on_delivered,
        "read": on_read,
        "end": on_end,
        "ping": on_ping,
    }

    # Frames to the customer ---------------------------------------------------------------------------

    async def send_json(self, data: dict) -> None:
        await self.send(text_data=json.dumps(data))

    async def send_error(self, code: str, message: str | None = None, **extra: Any) -> None:
        if message is None:
            with translation.override(self.language):
                message = str(ERROR_MESSAGES.get(code, ERROR_MESSAGES["malformed_frame"]))
                if code == "message_too_long":
                    message = message % {"limit": settings.CHAT_MAX_MESSAGE_CHARS}
        frame = {"type": "error", "code": code, "message": message}
        frame.update({key: value for key, value in extra.items() if value is not None})
        await self.send_json(frame)

    async def send_entries(self, entries: list[dict]) -> None:
        for entry in entries:
            self.sent_ids.add(entry["id"])
        if len(self.sent_ids) > SENT_IDS_KEPT:
            self.sent_ids = set(sorted(self.sent_ids)[-SENT_IDS_KEPT // 2 :])
        await self.send_json({"type": "entries", "entries": entries})

    async def send_backlog(self, *, after: int) -> None:
        """Every visible entry after ``after``, page by page; at least one (possibly empty) frame."""
        first = True
        while True:
            entries = await database_sync_to_async(self._entries_after)(after=after)
            if entries or first:
                await self.send_entries(entries)
            first = False
            if len(entries) < selectors.ENTRIES_PAGE:
                return
            after = entries[-1]["id"]

    def _entries_after(self, *, after: int) -> list[dict]:
        with translation.override(self.language):
            return [
                selectors.customer_entry_json(entry=entry, session=self.session)
                for entry in selectors.chat_entries_for_customer(session=self.session, after=after)
            ]

    async def send_status(self, *, force: bool = False) -> None:
        status = await database_sync_to_async(selectors.chat_status_for_customer)(session=self.session)
        await self._apply_status(status, force=force)

    async def _apply_status(self, status: dict, *, force: bool = False) -> None:
        service_id = status.pop("service_id")
        wanted = service_group(service_id) if service_id and status["state"] in ("queued", "offered") else None
        if wanted != self.service_group_name:
            # The chat waits in this service's queue (it may change on a transfer): its position follows it.
            if self.service_group_name is not None:
                await self._leave(self.service_group_name)
            if wanted is not None:
                await self._join(wanted)
            self.service_group_name = wanted
        if status == self.last_status and not force:
            return
        self.last_status = status
        await self.send_json({"type": "status", **status})

    async def send_receipts(self, *, force: bool = False) -> None:
        read_upto = await database_sync_to_async(selectors.chat_customer_read_upto)(session=self.session)
        if read_upto == self.last_read_upto and not force:
            return
        self.last_read_upto = read_upto
        await self.send_json({"type": "receipts", "read_upto": read_upto})

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)

    async def _leave(self, group: str) -> None:
        if group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.remove(group)

    # Channel-layer events (ids only) ---------------------------------------------------------------------

    async def conversation_timeline(self, event: dict) -> None:
        if self.session is None:
            return
        entry_id = int(event["entry_id"])
        if entry_id in self.sent_ids:
            # Our own message, already sent with the answer to its frame (a message never changes state).
            return
        entry, status = await database_sync_to_async(self._timeline_update)(entry_id=entry_id)
        if entry is not None and entry["id"] not in self.sent_ids:
            await self.send_entries([entry])
        if status is not None:
            await self._apply_status(status)

    def _timeline_update(self, *, entry_id: int) -> tuple[dict | None, dict | None]:
        with translation.override(self.language):
            entry = selectors.chat_entry_for_customer(session=self.session, entry_id=entry_id)
            data = selectors.customer_entry_json(entry=entry, session=self.session) if entry is not None else None
        kind = entry.kind if entry is not None else selectors.chat_entry_kind(session=self.session, entry_id=entry_id)
        status = selectors.chat_status_for_customer(session=self.session) if kind in selectors.STATE_KINDS else None
        return data, status

    async def conversation_changed(self, event: dict) -> None:
        if self.session is not None:
            await self.send_status()

    async def conversation_receipts(self, event: dict) -> None:
        if self.session is not None:
            await self.send_receipts()

    async def conversation_typing(self, event: dict) -> None:
        if self.session is not None and event.get("who") == "agent":
            await self.send_json({"type": "typing", "who": "agent", "typing": bool(event.get("typing"))})

    async def chat_inactivity(self, event: dict) -> None:
        if self.session is not None:
            await self.send_json({"type": "inactivity", "ends_at": str(event.get("ends_at", ""))})

    async def service_queue(self, event: dict) -> None:
        if self.session is not None and self.last_status and self.last_status["state"] in ("queued", "offered"):
            await self.send_status()


def _client_id(frame: dict) -> str | None:
    value = frame.get("client_id")
    if isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID_CHARS:
        return value
    return None
