"""Call signalling over a websocket: ``/ws/voice/``, one per agent desktop tab or customer chat page.

Agents authenticate with their session; customers with the signed token of
their web chat session (a ``hello`` frame, as on the chat socket). A socket
acts only on the calls of its party: an agent on calls whose agent they are,
a customer on calls in their conversation. Signalling frames (``offer``,
``answer``, ``ice``, ``ready``) are validated and relayed to the *other*
party's voice group only: an agent's frames to the customer sockets of that
conversation, a customer's frames to the sockets of that call's agent.

Client → server: ``hello`` {token | call_token} (customers); ``start_call``
{service, fields, visitor?, lang?} (call-first customers); ``sync``; ``call`` {conversation?
(agents), video?}; ``accept``/``reject``/``hangup`` {call}; ``hold`` {call, on}
(agents); ``mute``/``video`` {call, on}; ``offer``/``answer`` {call, sdp};
``ice`` {call, candidate}; ``ready`` {call}; ``stats`` {call, stats}; ``ping``.
Server → client: ``session`` {call_token} (call-first); ``hello`` {role, ice_servers}; ``calls`` {calls}; ``call``
{call}; ``offer``/``answer``/``ice``/``ready`` (relayed, with ``call``);
``error`` {code, message, call?}; ``pong``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

from channels.consumer import get_handler_name
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from agents.selectors import agent_for_user
from channels_app.voice import selectors, services
from channels_app.voice.events import voice_agent_group, voice_conversation_group
from core.consumers import ParleyConsumer
from core.db import database_sync_to_async
from core.groups import agent_group, conversation_group
from core.i18n import language_from_scope
from core.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

ERROR_MESSAGES = {
    "frame_too_large": _("That was too much data at once."),
    "malformed_frame": _("The call received data it could not understand."),
    "unknown_type": _("The call received data it could not understand."),
    "not_authenticated": _("Sign in to the call first."),
    "invalid_session": _("Your chat could not be found. Please start a new one."),
    "not_found": _("This call could not be found."),
    "not_connected": _("This call is not connected."),
    "invalid_sdp": _("The call received a session description it could not understand."),
    "invalid_candidate": _("The call received a network candidate it could not understand."),
    "rate_limited": _("Too many call messages. Please wait a moment."),
    "rejected": _("That did not work."),
}

RELAYED = ("offer", "answer", "ice", "ready")
MAX_TOKEN_CHARS = 1000
MAX_SDP_CHARS = 24_000
MAX_CANDIDATE_CHARS = 1000
# SDP is lines of "<letter>=<value>"; nothing else (no NUL, no stray markup) is relayed.
SDP_LINE_RE = re.compile(r"^[a-z]=[\x20-\x7e]*$")
CANDIDATE_RE = re.compile(
    r"^(?:a=)?candidate:[A-Za-z0-9+/=]{1,64} \d{1,5} (?:udp|tcp|UDP|TCP) \d{1,10} [0-9A-Za-z.:%\-]{1,255} \d{1,5}"
    r" typ (?:host|srflx|prflx|relay)(?: [\x21-\x7e]+)*$"
)
TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,256}$")


class FrameError(Exception):
    def __init__(self, code: str, message: str | None = None, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.extra = extra


# --- frame validation ---------------------------------------------------------------------------------


def _call_id(frame: dict) -> int:
    value = frame.get("call")
    if isinstance(value, bool) or not isinstance(value, int) or not (0 < value < 2**62):
        raise FrameError("malformed_frame")
    return value


def _flag(frame: dict) -> bool:
    value = frame.get("on")
    if not isinstance(value, bool):
        raise FrameError("malformed_frame", call=frame.get("call"))
    return value


def clean_sdp(value: Any) -> str:
    """A session description of plausible shape: starts ``v=0``, only ``x=...`` lines, bounded."""
    if not isinstance(value, str) or not (10 <= len(value) <= MAX_SDP_CHARS):
        raise FrameError("invalid_sdp")
    lines = value.replace("\r\n", "\n").rstrip("\n").split("\n")
    if lines[0] != "v=0" or not all(SDP_LINE_RE.match(line) for line in lines):
        raise FrameError("invalid_sdp")
    if not any(line.startswith("m=") for line in lines):
        raise FrameError("invalid_sdp")
    return value


def clean_candidate(value: Any) -> dict | None:
    """An ICE candidate as ``RTCIceCandidateInit``; ``None`` or an empty candidate ends gathering."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}:
        raise FrameError("invalid_candidate")
    candidate = value.get("candidate")
    if not isinstance(candidate, str) or len(candidate) > MAX_CANDIDATE_CHARS:
        raise FrameError("invalid_candidate")
    if candidate and not CANDIDATE_RE.match(candidate):
        raise FrameError("invalid_candidate")
    mid = value.get("sdpMid")
    if mid is not None and (not isinstance(mid, str) or not re.match(r"^[A-Za-z0-9_\-]{0,32}$", mid)):
        raise FrameError("invalid_candidate")
    index = value.get("sdpMLineIndex")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 64):
        raise FrameError("invalid_candidate")
    fragment = value.get("usernameFragment")
    if fragment is not None and (not isinstance(fragment, str) or not TOKEN_RE.match(fragment)):
        raise FrameError("invalid_candidate")
    if mid is None and index is None and candidate:
        raise FrameError("invalid_candidate")
    cleaned: dict = {"candidate": candidate, "sdpMid": mid, "sdpMLineIndex": index}
    if fragment is not None:
        cleaned["usernameFragment"] = fragment
    return cleaned


class VoiceConsumer(ParleyConsumer):
    """Both parties' signalling socket."""

    hello_timeout: float = 10.0

    async def connect(self) -> None:
        self.role: str | None = None
        self.user = None
        self.session = None
        self.conversation_id: int | None = None
        self.groups_joined: list[str] = []
        # Calls this socket was allowed to act on, by id; refreshed on every call event.
        self.calls: dict[int, selectors.CallRef] = {}
        self.language = language_from_scope(self.scope)
        self.bucket = TokenBucket(settings.VOICE_RATE_LIMIT_PER_10S, 10.0)
        self.hello_timer = None
        # Call-state updates need the database (one shared thread in Channels); they run beside the
        # socket's frame loop, in order, so relayed signalling never waits behind a page render elsewhere.
        self.state_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            agent = await database_sync_to_async(agent_for_user)(user=user)
            if agent is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return
            self.role = "agent"
            self.user = user
            await self._join(voice_agent_group(user.pk))
            # Offers accepted through routing (a queued call) announce themselves here.
            await self._join(agent_group(user.pk))
            await self.accept()
            await self.send_hello()
            return
        # A customer: nothing is joined until a valid chat session token arrives.
        await self.accept()
        self.hello_timer = asyncio.ensure_future(self._close_unless_hello())

    async def _close_unless_hello(self) -> None:
        await asyncio.sleep(self.hello_timeout)
        if self.role is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        for task in list(getattr(self, "tasks", ())):
            task.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)

    # Frames from the client ----------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        frame: Any = None
        try:
            if len(raw.encode("utf-8")) > settings.VOICE_MAX_FRAME_BYTES:
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
            if self.role is None and frame["type"] not in ("hello", "start_call", "ping"):
                raise FrameError("not_authenticated")
            if frame["type"] != "ping" and not self.bucket.take():
                raise FrameError("rate_limited")
            await handler(self, frame)
        except FrameError as exc:
            call = exc.extra.pop("call", None)
            if call is None and isinstance(frame, dict) and isinstance(frame.get("call"), int):
                call = frame["call"]
            await self.send_error(exc.code, exc.message, call=call, **exc.extra)

    async def on_ping(self, frame: dict) -> None:
        await self.send_json({"type": "pong"})

    async def on_hello(self, frame: dict) -> None:
        if self.role is not None:
            raise FrameError("malformed_frame")
        token = frame.get("token")
        call_token = frame.get("call_token")
        if token is None and isinstance(call_token, str) and 0 < len(call_token) <= MAX_TOKEN_CHARS:
            session = await database_sync_to_async(services.call_session_from_token)(call_token)
        elif isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_CHARS:
            session = await database_sync_to_async(_session_from_token)(token)
        else:
            raise FrameError("malformed_frame")
        await self._begin_customer(session, frame)

    async def on_start_call(self, frame: dict) -> None:
        """Call-first: the pre-chat form's details start a queued call (no chat)."""
        if self.role is not None:
            raise FrameError("malformed_frame")
        slug = frame.get("service")
        visitor = frame.get("visitor")
        fields = frame.get("fields") or {}
        if not isinstance(slug, str) or len(slug) > 50 or not isinstance(fields, dict):
            raise FrameError("malformed_frame")
        if visitor is not None and (not isinstance(visitor, str) or len(visitor) > MAX_TOKEN_CHARS):
            raise FrameError("malformed_frame")
        data = {}
        for name in ("name", "email", "phone", "question"):
            value = fields.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > 2000:
                raise FrameError("malformed_frame")
            data[name] = value
        self.language = _language(frame.get("lang")) or self.language
        session = await database_sync_to_async(self._call_first)(slug=slug, data=data, visitor=visitor)
        token = await database_sync_to_async(services.call_session_token)(session)
        await self.send_json({"type": "session", "call_token": token})
        await self._begin_customer(session, frame)

    def _call_first(self, *, slug: str, data: dict, visitor: str | None):
        from channels_app.webchat.selectors import service_for_chat

        with translation.override(self.language):
            service = service_for_chat(slug=slug)
            if service is None:
                raise FrameError("rejected", str(_("Calls are not available for this service.")))
            try:
                return services.call_first_start(service=service, data=data, visitor=visitor)
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    errors = {name: " ".join(messages) for name, messages in exc.message_dict.items()}
                    raise FrameError("invalid", " ".join(errors.values()), fields=errors) from None
                raise FrameError("rejected", " ".join(exc.messages)) from None

    async def _begin_customer(self, session, frame: dict) -> None:
        if session is None:
            if self.hello_timer is not None:
                self.hello_timer.cancel()
            await self.send_error("invalid_session")
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        self.session = session
        self.conversation_id = session.conversation_id
        self.role = "customer"
        self.language = _language(frame.get("lang")) or self.language
        await self._join(voice_conversation_group(session.conversation.uuid))
        # A queued call answered through routing announces itself on the conversation's group.
        await self._join(conversation_group(session.conversation.uuid))
        await self.send_hello()

    async def send_hello(self) -> None:
        servers = await database_sync_to_async(services.ice_servers)()
        await self.send_json({"type": "hello", "role": self.role, "ice_servers": servers})
        await self.send_calls()

    async def on_sync(self, frame: dict) -> None:
        await self.send_calls()

    async def on_call(self, frame: dict) -> None:
        video = frame.get("video", False)
        if not isinstance(video, bool):
            raise FrameError("malformed_frame")
        if self.role == "agent":
            target = frame.get("conversation")
            try:
                conversation_uuid = uuid.UUID(str(target)) if isinstance(target, str) else None
            except ValueError:
                conversation_uuid = None
            if conversation_uuid is None:
                raise FrameError("malformed_frame")
            await self._service(_start_outbound, conversation_uuid=conversation_uuid, user=self.user, video=video)
        else:
            await self._service(_request, conversation_id=self.conversation_id, video=video)

    async def on_accept(self, frame: dict) -> None:
        call = await self._authorised(_call_id(frame))
        await self._service(services.call_answer, call_id=call.id, role=self.role, user=self.user)

    async def on_reject(self, frame: dict) -> None:
        call = await self._authorised(_call_id(frame))
        await self._service(services.call_reject, call_id=call.id, role=self.role, user=self.user)

    async def on_hangup(self, frame: dict) -> None:
        call = await self._authorised(_call_id(frame))
        await self._service(services.call_hangup, call_id=call.id, role=self.role, user=self.user)

    async def on_hold(self, frame: dict) -> None:
        call = await self._authorised(_call_id(frame))
        on = _flag(frame)
        if self.role != "agent":
            raise FrameError("rejected", call=call.id)
        await self._service(services.call_hold, call_id=call.id, on=on, user=self.user)

    async def on_mute(self, frame: dict) -> None:
        call = await self._authorised(_call_id(frame))
        await self._service(
            services.call_flag, call_id=call.id, role=self.role, flag="muted", on=_flag(frame), user=self.user
        )

    async def on_video(self, frame: dict) -> None:
        call = await self._authorised(_call_id(frame))
        await self._service(
            services.call_flag, call_id=call.id, role=self.role, flag="video", on=_flag(frame), user=self.user
        )

    async def on_stats(self, frame: dict) -> None:
        call = await self._authorised(_call_id(frame), live_only=False)
        stats = frame.get("stats")
        if not isinstance(stats, dict) or len(stats) > 20:
            raise FrameError("malformed_frame", call=call.id)
        await self._service(services.call_quality_record, call_id=call.id, role=self.role, stats=stats)

    async def on_signal(self, frame: dict) -> None:
        """offer / answer / ice / ready: validated, then relayed to the other party only."""
        call = await self._authorised(_call_id(frame))
        if not call.connected:
            # The answer may be committed while this socket's update of it is still on its way.
            self.calls.pop(call.id, None)
            call = await self._authorised(call.id)
            if not call.connected:
                raise FrameError("not_connected", call=call.id)
        kind = frame["type"]
        out: dict = {"type": kind, "call": call.id}
        if kind in ("offer", "answer"):
            out["sdp"] = clean_sdp(frame.get("sdp"))
            if kind == "offer" and frame.get("fresh") is True:
                out["fresh"] = True
        elif kind == "ice":
            out["candidate"] = clean_candidate(frame.get("candidate"))
        sent_at = frame.get("t")
        if isinstance(sent_at, int | float) and not isinstance(sent_at, bool):
            # A client timestamp (benchmark) travels through untouched.
            out["t"] = sent_at
        event = {"type": "voice.signal", "from": self.role, "call": call.id, "frame": out}
        if self.role == "agent":
            target = voice_conversation_group(call.conversation_uuid)
        else:
            if call.agent_id is None:
                raise FrameError("not_connected", call=call.id)
            target = voice_agent_group(call.agent_id)
        await self.channel_layer.group_send(target, event)

    HANDLERS = {
        "hello": on_hello,
        "start_call": on_start_call,
        "ping": on_ping,
        "sync": on_sync,
        "call": on_call,
        "accept": on_accept,
        "reject": on_reject,
        "hangup": on_hangup,
        "hold": on_hold,
        "mute": on_mute,
        "video": on_video,
        "stats": on_stats,
        "offer": on_signal,
        "answer": on_signal,
        "ice": on_signal,
        "ready": on_signal,
    }

    async def _authorised(self, call_id: int, *, live_only: bool = True) -> selectors.CallRef:
        """The call if this socket's party may act on it (cached; every call event refreshes it)."""
        ref = self.calls.get(call_id)
        if ref is None:
            ref = await database_sync_to_async(selectors.call_ref_for)(
                role=self.role, call_id=call_id, user=self.user, conversation_id=self.conversation_id
            )
            if ref is None:
                raise FrameError("not_found", call=call_id)
            self.calls[call_id] = ref
        if live_only and not ref.live:
            raise FrameError("not_connected", call=call_id)
        return ref

    async def _service(self, function, **kwargs) -> None:
        def run():
            with translation.override(self.language):
                try:
                    return function(**kwargs)
                except ValidationError as exc:
                    raise FrameError("rejected", " ".join(exc.messages), call=kwargs.get("call_id")) from None

        await database_sync_to_async(run)()

    # Frames to the client ------------------------------------------------------------------------------------

    async def send_json(self, data: dict) -> None:
        await self.send(text_data=json.dumps(data))

    async def send_error(self, code: str, message: str | None = None, **extra: Any) -> None:
        if message is None:
            with translation.override(self.language):
                message = str(ERROR_MESSAGES.get(code, ERROR_MESSAGES["malformed_frame"]))
        frame = {"type": "error", "code": code, "message": message}
        frame.update({key: value for key, value in extra.items() if value is not None})
        await self.send_json(frame)

    async def send_calls(self, *, only_if_changed: bool = False) -> None:
        async with self.state_lock:
            calls = await database_sync_to_async(self._calls)()
            if only_if_changed and calls == getattr(self, "last_calls", None):
                return
            self.last_calls = calls
            await self.send_json({"type": "calls", "calls": calls})

    def _beside(self, coroutine) -> None:
        """Run a call-state update next to the frame loop; the lock keeps updates in arrival order."""
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _calls(self) -> list[dict]:
        with translation.override(self.language):
            if self.role == "agent":
                rows = selectors.calls_live_for_agent(user=self.user)
            else:
                rows = selectors.calls_live_in_conversation(conversation_id=self.conversation_id)
            for call in rows:
                self.calls[call.pk] = selectors._ref(call)
            return [selectors.call_json(call, role=self.role) for call in rows]

    # Channel-layer events (ids only) ----------------------------------------------------------------------------

    async def dispatch(self, message: dict) -> None:
        # The shared agent and conversation groups carry many event types; only the ones handled here matter.
        if getattr(self, get_handler_name(message), None) is None:
            return
        await super().dispatch(message)

    def _routing_may_change(self) -> bool:
        """Whether a call of this conversation is in routing's hands (our own changes come as voice events)."""
        return any(call["state"] in ("queued", "ringing") for call in getattr(self, "last_calls", None) or [])

    async def conversation_changed(self, event: dict) -> None:
        if self.role == "customer" and self._routing_may_change():
            self._beside(self.send_calls(only_if_changed=True))

    async def conversation_timeline(self, event: dict) -> None:
        # Chat traffic passes here too: only a call waiting for routing is worth a query.
        if self.role == "customer" and self._routing_may_change():
            self._beside(self.send_calls(only_if_changed=True))

    async def agent_conversations(self, event: dict) -> None:
        if self.role == "agent":
            self._beside(self.send_calls(only_if_changed=True))

    async def voice_call(self, event: dict) -> None:
        if self.role is not None:
            self._beside(self._voice_call(int(event["call"])))

    async def _voice_call(self, call_id: int) -> None:
        async with self.state_lock:
            data = await database_sync_to_async(self._call_update)(call_id)
            if data is None:
                return
            live = data["state"] in ("queued", "ringing", "active", "on_hold")
            known = [call for call in getattr(self, "last_calls", None) or [] if call["id"] != data["id"]]
            self.last_calls = [*known, data] if live else known
            await self.send_json({"type": "call", "call": data})

    def _call_update(self, call_id: int) -> dict | None:
        if self.role == "agent":
            call = (
                selectors.Interaction.objects.select_related("conversation__contact", "agent")
                .filter(pk=call_id, medium__in=selectors.CALL_MEDIA)
                .first()
            )
            # A call that moved to another agent ends here: this tab drops it.
            if call is None:
                return None
            if call.agent_id != self.user.pk:
                self.calls.pop(call_id, None)
                data = selectors.call_json(call, role="agent")
                data["state"] = "gone"
                return data
        else:
            call = selectors.call_for_conversation(conversation_id=self.conversation_id, call_id=call_id)
            if call is None:
                return None
        self.calls[call_id] = selectors._ref(call)
        return selectors.call_json(call, role=self.role)

    async def voice_signal(self, event: dict) -> None:
        if self.role is None or event.get("from") == self.role:
            return
        call_id = int(event["call"])
        # Groups already limit who hears a call; the check is defence in depth (a tab still joined after a transfer).
        try:
            await self._authorised(call_id)
        except FrameError:
            return
        await self.send_json(event["frame"])


def _session_from_token(token: str):
    from channels_app.webchat.services import session_from_token

    return session_from_token(token)


def _language(code: Any) -> str | None:
    if not isinstance(code, str) or len(code) > 20:
        return None
    try:
        return translation.get_supported_language_variant(code)
    except LookupError:
        return None


def _start_outbound(*, conversation_uuid, user, video: bool):
    from conversations.selectors import conversation_for_agent

    conversation = conversation_for_agent(agent=user, conversation_uuid=conversation_uuid)
    if conversation is None:
        raise ValidationError(_("This conversation is not yours."))
    return services.call_start_outbound(conversation=conversation, agent_user=user, video=video)


def _request(*, conversation_id: int, video: bool):
    from conversations.models import Conversation

    conversation = Conversation.objects.get(pk=conversation_id)
    return services.call_request(conversation=conversation, video=video)
