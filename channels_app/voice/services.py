"""Voice calls inside conversations: start, ring, answer, hold, flags, hang up, quality, missed.

A call is an ``Interaction`` of medium ``voice`` in the conversation (a chat that
becomes a call keeps one conversation). Its states map onto the shared ones:
ringing is ``offered`` (with the agent set), talking is ``active``, held is
``on_hold``; an unanswered call ends as ``missed`` (or ``abandoned`` when the
customer gave up). Flags and figures live in ``Interaction.details``:

``{"requested_by": "agent"|"customer", "video": {"agent": bool, "customer": bool},
"muted": {...}, "held_at": iso|None, "hold_seconds": float, "holds": int,
"ring_seconds": float, "talk_seconds": float, "quality": {"agent": {...}, "customer": {...}}}``

The media never touches the server: browsers talk WebRTC to each other and
the signalling consumer relays their offer/answer/ICE frames.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from agents.models import AgentProfile, AgentState
from agents.services import agent_work_started
from channels_app.voice import events
from channels_app.voice.models import CallSession
from conversations.models import Conversation, Direction, Interaction, Medium, Offer, Service, TimelineEntry
from conversations.routing import route_on_commit
from conversations.services import _entry, conversation_open, interaction_answer, interaction_end, interaction_start

logger = logging.getLogger(__name__)

CALL_MEDIA = (Medium.VOICE, Medium.VIDEO)
ROLES = ("agent", "customer")
# Quality figures a browser may report at hang-up, and their sane upper bounds.
QUALITY_FIELDS = {
    "rtt_ms": 60_000.0,
    "jitter_ms": 60_000.0,
    "packets_lost": 1e12,
    "packets_received": 1e12,
    "bytes_received": 1e15,
    "loss_percent": 100.0,
}


# --- ICE servers ----------------------------------------------------------------------------------


def turn_credentials(*, secret: str, ttl_seconds: int, user_id: str, now: float | None = None) -> tuple[str, str]:
    """The TURN REST scheme (coturn's ``use-auth-secret``): a username that expires, HMAC-signed."""
    expiry = int((now if now is not None else time.time()) + ttl_seconds)
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(*, user_id: str | None = None) -> list[dict]:
    """The ``iceServers`` both parties give their ``RTCPeerConnection``; empty by default (one network)."""
    servers: list[dict] = []
    if settings.VOICE_STUN_URLS:
        servers.append({"urls": list(settings.VOICE_STUN_URLS)})
    if settings.VOICE_TURN_URLS:
        turn = {"urls": list(settings.VOICE_TURN_URLS)}
        if settings.VOICE_TURN_SECRET:
            # An opaque id: the TURN server's logs must not name the customer or agent.
            username, credential = turn_credentials(
                secret=settings.VOICE_TURN_SECRET,
                ttl_seconds=settings.VOICE_TURN_TTL_SECONDS,
                user_id=user_id or uuid.uuid4().hex[:16],
            )
            turn.update(username=username, credential=credential)
        servers.append(turn)
    return servers


# --- helpers ----------------------------------------------------------------------------------------


def _default_details(requested_by: str, video: bool) -> dict:
    return {
        "requested_by": requested_by,
        "video": {
            "agent": bool(video and requested_by == "agent"),
            "customer": bool(video and requested_by == "customer"),
        },
        "muted": {"agent": False, "customer": False},
        "held_at": None,
        "hold_seconds": 0.0,
        "holds": 0,
    }


def _locked_call(call_id: int) -> Interaction:
    call = (
        Interaction.objects.select_for_update(of=("self",))
        .select_related("conversation")
        .filter(pk=call_id, medium__in=CALL_MEDIA)
        .first()
    )
    if call is None:
        raise ValidationError(_("This call does not exist."))
    return call


def _event(call: Interaction, kind: str, *, actor=None, **data) -> TimelineEntry:
    return _entry(
        call.conversation,
        TimelineEntry.Kind.CHANNEL_EVENT,
        interaction=call,
        actor=actor,
        data={"medium": call.medium, "event": kind, **data},
    )


def _changed(call: Interaction, *, previous_agent_id: int | None = None) -> None:
    events.call_changed(
        call_id=call.pk,
        conversation_uuid=call.conversation.uuid,
        agent_id=call.agent_id,
        previous_agent_id=previous_agent_id,
    )


def _seconds_since(iso: str | None, now: datetime) -> float:
    if not iso:
        return 0.0
    try:
        return max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    except ValueError:
        return 0.0


def _agent_online(user) -> bool:
    return AgentProfile.objects.filter(user=user).exclude(state=AgentState.LOGGED_OUT).exists()


def _schedule_ring_timeout(call_id: int) -> None:
    def schedule() -> None:
        from channels_app.voice.tasks import call_ring_expire

        try:
            call_ring_expire.apply_async(args=[call_id], countdown=settings.VOICE_RING_TIMEOUT_SECONDS)
        except Exception as exc:
            # The periodic sweep marks it missed instead.
            logger.warning("could not schedule the ring timeout of call %s: %r", call_id, exc)

    transaction.on_commit(schedule)


def live_call_in(conversation: Conversation) -> Interaction | None:
    return conversation.interactions.live().filter(medium__in=CALL_MEDIA).order_by("-created_at").first()


def _require_live_chat(conversation: Conversation) -> None:
    # The browser call reaches the customer through their chat page; a phone leg would not need this.
    if not conversation.interactions.filter(medium=Medium.CHAT, state=Interaction.State.ACTIVE).exists():
        raise ValidationError(_("A call can only be started from a live chat."))


# --- starting -----------------------------------------------------------------------------------------


@transaction.atomic
def call_start_outbound(*, conversation: Conversation, agent_user, video: bool = False) -> Interaction:
    """The agent calls the customer from the conversation (a live chat): a new voice interaction rings them."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.assigned_agent_id != agent_user.pk:
        raise ValidationError(_("This conversation is not yours."))
    if not conversation.is_open:
        raise ValidationError(_("The conversation is closed."))
    _require_live_chat(conversation)
    if live_call_in(conversation) is not None:
        raise ValidationError(_("There is already a call in this conversation."))
    if Interaction.objects.filter(agent=agent_user, medium__in=CALL_MEDIA, state__in=Interaction.LIVE_STATES).exists():
        raise ValidationError(_("You are already on a call."))
    call = interaction_start(
        conversation=conversation,
        medium=Medium.VOICE,
        direction=Direction.OUTBOUND,
        agent=agent_user,
        state=Interaction.State.OFFERED,
    )
    call.details = _default_details("agent", video)
    call.save(update_fields=["details"])
    call.conversation = conversation
    _event(call, "ringing", actor=agent_user, direction=Direction.OUTBOUND)
    agent_work_started(user=agent_user)
    _schedule_ring_timeout(call.pk)
    _changed(call)
    return call


@transaction.atomic
def call_request(*, conversation: Conversation, video: bool = False) -> Interaction:
    """The customer asks for a call from the chat: it rings the conversation's agent, or queues for routing."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if not conversation.is_open:
        raise ValidationError(_("The conversation is closed."))
    _require_live_chat(conversation)
    if live_call_in(conversation) is not None:
        raise ValidationError(_("There is already a call in this conversation."))
    agent = conversation.assigned_agent
    if agent is not None and not _agent_online(agent):
        agent = None
    if (
        agent is not None
        and Interaction.objects.filter(agent=agent, medium__in=CALL_MEDIA, state__in=Interaction.LIVE_STATES).exists()
    ):
        # Their agent is on another call: the queue finds someone free.
        agent = None
    if agent is not None:
        call = interaction_start(
            conversation=conversation,
            medium=Medium.VOICE,
            direction=Direction.INBOUND,
            agent=agent,
            state=Interaction.State.OFFERED,
        )
    else:
        call = interaction_start(conversation=conversation, medium=Medium.VOICE, direction=Direction.INBOUND)
    call.details = _default_details("customer", video)
    call.save(update_fields=["details"])
    call.conversation = conversation
    _event(call, "ringing", direction=Direction.INBOUND)
    if agent is not None:
        _schedule_ring_timeout(call.pk)
    else:
        route_on_commit(service_id=call.service_id)
    _changed(call)
    return call


# --- call-first ------------------------------------------------------------------------------------------------

CALL_SESSION_SALT = "parley.voice.session"
CALL_SESSION_MAX_AGE = timedelta(days=1)


def call_session_token(session: CallSession) -> str:
    return signing.dumps(str(session.public_id), salt=CALL_SESSION_SALT, compress=True)


def call_session_from_token(token: str) -> CallSession | None:
    """The call-first session a token names, or None for a forged, expired or unknown one."""
    try:
        public_id = uuid.UUID(signing.loads(token, salt=CALL_SESSION_SALT, max_age=CALL_SESSION_MAX_AGE))
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return CallSession.objects.select_related("conversation").filter(public_id=public_id).first()


@transaction.atomic
def call_first_start(*, service: Service, data: dict, visitor: str | None = None) -> CallSession:
    """“Call us” on the chat page: recognise the customer, open (or join) their conversation, queue a call.

    The call is routed like a chat, with the voice share (a whole agent by
    default), so an agent on a call gets no further call and chats only when
    the service allows chats during calls.
    """
    # The chat's recognition rules, so a caller and a chatter are the same contact.
    from channels_app.webchat.services import _recognise, prechat_clean, visitor_from_token

    if not service.is_active or Medium.VOICE not in service.media:
        raise ValidationError(_("Calls are not available for this service."))
    # The question is the chat's opening message; a caller says it out loud.
    modes = {**(service.prechat_fields or {})}
    if modes.get("question") == "required":
        modes["question"] = "optional"
    fields = prechat_clean(service=Service(prechat_fields=modes), data=data)
    visitor_id = visitor_from_token(visitor) or uuid.uuid4()
    contact = _recognise(visitor_id=visitor_id, fields=fields)
    conversation, _opened = conversation_open(contact=contact, service=service)
    if live_call_in(conversation) is not None:
        raise ValidationError(_("There is already a call in this conversation."))
    call = interaction_start(
        conversation=conversation, medium=Medium.VOICE, direction=Direction.INBOUND, service=service
    )
    call.details = _default_details("customer", False)
    call.save(update_fields=["details"])
    call.conversation = conversation
    _event(call, "ringing", direction=Direction.INBOUND)
    session = CallSession.objects.create(
        visitor_id=visitor_id, service=service, contact=contact, conversation=conversation, interaction=call
    )
    from conversations import events as conversation_events

    conversation_events.service_queue_changed(service_id=service.pk)
    route_on_commit(service_id=service.pk)
    _changed(call)
    return session


# --- answering, rejecting, hanging up ------------------------------------------------------------------------


def _may_answer(call: Interaction, role: str, user=None) -> bool:
    """The called party answers: the customer an agent's call, the ringing agent a customer's."""
    if call.direction == Direction.OUTBOUND:
        return role == "customer"
    return role == "agent" and user is not None and call.agent_id == user.pk


@transaction.atomic
def call_answer(*, call_id: int, role: str, user=None) -> Interaction:
    call = _locked_call(call_id)
    if call.state != Interaction.State.OFFERED or call.offers.filter(state=Offer.State.PENDING).exists():
        raise ValidationError(_("This call can no longer be answered."))
    if not _may_answer(call, role, user):
        raise ValidationError(_("This call is not yours to answer."))
    now = timezone.now()
    ring_seconds = (now - call.created_at).total_seconds()
    call = interaction_answer(interaction=call, agent=call.agent if role == "customer" else user)
    details = call.details or {}
    details["ring_seconds"] = round(ring_seconds, 3)
    call.details = details
    call.save(update_fields=["details"])
    _event(call, "answered", actor=user, ring_seconds=round(ring_seconds, 1))
    agent_work_started(user=call.agent)
    _changed(call)
    return call


@transaction.atomic
def call_reject(*, call_id: int, role: str, user=None) -> Interaction:
    """The called party declines a ringing call: it ends as missed."""
    call = _locked_call(call_id)
    if call.state != Interaction.State.OFFERED or call.answered_at is not None:
        raise ValidationError(_("This call is not ringing."))
    if not _may_answer(call, role, user):
        raise ValidationError(_("This call is not yours to answer."))
    return _finish(call, reason=f"{role}_rejected", actor=user)


@transaction.atomic
def call_hangup(*, call_id: int, role: str, user=None) -> Interaction:
    """Either party ends the call; before an answer this cancels the ringing."""
    call = _locked_call(call_id)
    if not call.is_live:
        return call
    if call.answered_at is None:
        # A customer who gives up waiting abandons the call; an agent who stops calling misses it.
        reason = "customer_left" if role == "customer" else "agent_cancelled"
    else:
        reason = f"{role}_hangup"
    return _finish(call, reason=reason, actor=user)


def _finish(call: Interaction, *, reason: str, actor=None) -> Interaction:
    now = timezone.now()
    details = call.details or {}
    if details.get("held_at"):
        details["hold_seconds"] = round(details.get("hold_seconds", 0.0) + _seconds_since(details["held_at"], now), 3)
        details["held_at"] = None
    talk = (now - call.answered_at).total_seconds() if call.answered_at else 0.0
    details["talk_seconds"] = round(talk, 3)
    Interaction.objects.filter(pk=call.pk).update(details=details)
    agent_id = call.agent_id
    call = interaction_end(interaction=call, reason=reason, actor=actor)
    kind = "ended" if call.answered_at else "missed"
    _event(
        call,
        kind,
        actor=actor,
        reason=reason,
        duration=round(talk, 1),
        hold_seconds=round(details.get("hold_seconds", 0.0), 1),
    )
    if call.service_id:
        from conversations import events as conversation_events

        conversation_events.service_queue_changed(service_id=call.service_id)
    _changed(call, previous_agent_id=agent_id)
    conversation = Conversation.objects.get(pk=call.conversation_id)
    if (
        call.answered_at is None
        and conversation.is_open
        and conversation.assigned_agent_id is None
        and not conversation.interactions.live().exists()
    ):
        # A call-first caller who gave up before anyone answered leaves nothing to wrap up.
        from conversations.services import conversation_close

        with translation.override(settings.LANGUAGE_CODE):
            notes = _("Customer left before an agent answered.")
        conversation_close(conversation=conversation, notes=notes)
    return call


# --- during the call ------------------------------------------------------------------------------------


@transaction.atomic
def call_hold(*, call_id: int, on: bool, user) -> Interaction:
    """The agent holds or resumes the call; media stops both ways and the customer sees “on hold”."""
    call = _locked_call(call_id)
    if call.agent_id != user.pk:
        raise ValidationError(_("This call is not yours."))
    wanted = Interaction.State.ON_HOLD if on else Interaction.State.ACTIVE
    if call.state == wanted:
        return call
    if call.state not in (Interaction.State.ACTIVE, Interaction.State.ON_HOLD):
        raise ValidationError(_("This call is not connected."))
    now = timezone.now()
    details = call.details or {}
    if on:
        details["held_at"] = now.isoformat()
        details["holds"] = int(details.get("holds", 0)) + 1
        call.state = Interaction.State.ON_HOLD
        call.details = details
        call.save(update_fields=["state", "details"])
        _event(call, "held", actor=user)
    else:
        held = _seconds_since(details.get("held_at"), now)
        details["hold_seconds"] = round(details.get("hold_seconds", 0.0) + held, 3)
        details["held_at"] = None
        call.state = Interaction.State.ACTIVE
        call.details = details
        call.save(update_fields=["state", "details"])
        _event(call, "resumed", actor=user, duration=round(held, 1))
    _changed(call)
    return call


@transaction.atomic
def call_flag(*, call_id: int, role: str, flag: str, on: bool, user=None) -> Interaction:
    """One party mutes/unmutes or turns their video on/off; the other side shows it."""
    if flag not in ("muted", "video") or role not in ROLES:
        raise ValidationError(_("Unknown call setting."))
    call = _locked_call(call_id)
    if call.state not in (Interaction.State.ACTIVE, Interaction.State.ON_HOLD, Interaction.State.OFFERED):
        raise ValidationError(_("This call is not connected."))
    details = call.details or {}
    flags = dict(details.get(flag) or {})
    if bool(flags.get(role)) == on:
        return call
    flags[role] = on
    details[flag] = flags
    call.details = details
    call.save(update_fields=["details"])
    if flag == "video" and call.answered_at is not None:
        _event(call, "video_on" if on else "video_off", actor=user, who=role)
        if on and call.medium != Medium.VIDEO:
            Interaction.objects.filter(pk=call.pk).update(medium=Medium.VIDEO)
            call.medium = Medium.VIDEO
    _changed(call)
    return call


def _clean_quality(stats: dict) -> dict:
    cleaned = {}
    for name, limit in QUALITY_FIELDS.items():
        value = stats.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not (0 <= value <= limit):
            raise ValidationError(_("Invalid call statistics."))
        cleaned[name] = round(float(value), 3)
    return cleaned


@transaction.atomic
def call_quality_record(*, call_id: int, role: str, stats: dict) -> Interaction:
    """Store a party's quality figures (round-trip time, jitter, loss from the browser's getStats)."""
    if role not in ROLES or not isinstance(stats, dict):
        raise ValidationError(_("Invalid call statistics."))
    cleaned = _clean_quality(stats)
    call = _locked_call(call_id)
    if call.answered_at is None:
        raise ValidationError(_("This call was never connected."))
    if call.ended_at is not None and timezone.now() - call.ended_at > timedelta(minutes=5):
        raise ValidationError(_("This call ended too long ago."))
    details = call.details or {}
    quality = dict(details.get("quality") or {})
    quality[role] = {**cleaned, "at": timezone.now().isoformat()}
    details["quality"] = quality
    Interaction.objects.filter(pk=call.pk).update(details=details)
    call.details = details
    return call


# --- missed calls ----------------------------------------------------------------------------------------------------


def _ringing_direct():
    """Calls ringing one agent or the customer directly (routing's offers expire on their own)."""
    return Interaction.objects.filter(medium__in=CALL_MEDIA, state=Interaction.State.OFFERED).exclude(
        offers__state=Offer.State.PENDING
    )


@transaction.atomic
def call_ring_expire(*, call_id: int) -> bool:
    """A call nobody answered in time is recorded as missed."""
    deadline = timezone.now() - timedelta(seconds=settings.VOICE_RING_TIMEOUT_SECONDS)
    if not _ringing_direct().filter(pk=call_id, created_at__lte=deadline).exists():
        return False
    call = _locked_call(call_id)
    if call.state != Interaction.State.OFFERED:
        return False
    _finish(call, reason="no_answer")
    return True


def calls_ring_sweep() -> int:
    """Mark every overdue ringing call missed (the safety net behind the per-call timer)."""
    deadline = timezone.now() - timedelta(seconds=settings.VOICE_RING_TIMEOUT_SECONDS)
    due = list(_ringing_direct().filter(created_at__lte=deadline).values_list("pk", flat=True))
    return sum(call_ring_expire(call_id=call_id) for call_id in due)
