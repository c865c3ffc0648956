"""Every read the customer's chat page, socket and file downloads need.

What a customer sees is narrower than the agent's timeline: the chat messages
of their own chat session and a few system lines. Notes, other media and
other sessions of the same contact never reach them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core import signing
from django.db.models import Exists, Max, OuterRef, Q
from django.urls import reverse
from django.utils.translation import gettext as _

from channels_app.webchat.models import ChatSession
from conversations.models import (
    Attachment,
    Conversation,
    Direction,
    Interaction,
    Medium,
    Message,
    Service,
    TimelineEntry,
)
from conversations.selectors import with_files
from core.prepared import PreparedQuery

ATTACHMENT_URL_SALT = "parley.webchat.attachment"
ATTACHMENT_URL_MAX_AGE = timedelta(days=1)
# Entries sent in one frame when back-filling a long chat.
ENTRIES_PAGE = 200

# What the customer is told about the chat's state; on hold is still "active" to them.
CUSTOMER_STATES = {
    Interaction.State.QUEUED: "queued",
    Interaction.State.OFFERED: "offered",
    Interaction.State.ACTIVE: "active",
    Interaction.State.ON_HOLD: "active",
}
# Timeline kinds after which the chat's state may have changed.
STATE_KINDS = (
    TimelineEntry.Kind.INTERACTION_STARTED,
    TimelineEntry.Kind.INTERACTION_ANSWERED,
    TimelineEntry.Kind.INTERACTION_ENDED,
    TimelineEntry.Kind.ASSIGNED,
    TimelineEntry.Kind.TRANSFERRED,
    TimelineEntry.Kind.CLOSED,
)


def service_for_chat(*, slug: str) -> Service | None:
    """The active service named by ``slug`` if it takes web chats."""
    service = Service.objects.filter(slug=slug, is_active=True).first()
    if service is None or Medium.CHAT not in (service.media or []):
        return None
    return service


def _visible_to(session: ChatSession) -> Q:
    return (
        Q(kind=TimelineEntry.Kind.MESSAGE, interaction_id=session.interaction_id, message__medium=Medium.CHAT)
        | Q(kind=TimelineEntry.Kind.INTERACTION_ENDED, interaction_id=session.interaction_id)
        | Q(kind=TimelineEntry.Kind.TRANSFERRED, created_at__gte=session.created_at)
    )


def chat_entries_for_customer(
    *, session: ChatSession, after: int = 0, limit: int = ENTRIES_PAGE
) -> list[TimelineEntry]:
    """The customer-visible entries of the session with an id above ``after``, oldest first."""
    return list(
        TimelineEntry.objects.filter(conversation_id=session.conversation_id, id__gt=after)
        .filter(_visible_to(session))
        .select_related("message")
        .prefetch_related("message__attachments")
        .order_by("id")[:limit]
    )


# Read for every entry pushed to a customer's chat page; prepared, as compiling it cost more than running it.
_ENTRY_FOR_CUSTOMER = PreparedQuery(
    lambda conversation_id, entry_id, interaction_id, session_created_at: (
        TimelineEntry.objects.filter(conversation_id=conversation_id, pk=entry_id)
        .filter(
            _visible_to(ChatSession(interaction_id=interaction_id, created_at=session_created_at)),
        )
        .select_related("message")
        .annotate(message_has_files=Exists(Attachment.objects.filter(message_id=OuterRef("message_id"))))
        .order_by("pk")[:1]
    ),
    conversation_id=(-730_021, int),
    entry_id=(-730_023, int),
    interaction_id=(-730_025, int),
    session_created_at=(
        datetime(1971, 3, 5, 7, 11, 13, 170_019, tzinfo=UTC),
        TimelineEntry._meta.get_field("created_at"),
    ),
)


def chat_entry_for_customer(*, session: ChatSession, entry_id: int) -> TimelineEntry | None:
    """One entry, if the customer may see it."""
    rows = _ENTRY_FOR_CUSTOMER(
        conversation_id=session.conversation_id,
        entry_id=entry_id,
        interaction_id=session.interaction_id,
        session_created_at=session.created_at,
    )
    # A message's files are read only when it has any (the read above says).
    return with_files(rows)[0] if rows else None


def chat_entry_kind(*, session: ChatSession, entry_id: int) -> str | None:
    """The kind of one of the session's conversation entries, visible or not (to know whether state moved)."""
    return (
        TimelineEntry.objects.filter(conversation_id=session.conversation_id, pk=entry_id)
        .values_list("kind", flat=True)
        .first()
    )


def chat_last_visible_entry_id(*, session: ChatSession) -> int:
    entries = TimelineEntry.objects.filter(conversation_id=session.conversation_id).filter(_visible_to(session))
    return entries.aggregate(last=Max("id"))["last"] or 0


def chat_status_for_customer(*, session: ChatSession) -> dict:
    """State, queue position and the serving agent's first name, as the customer sees them.

    ``service_id`` is included for the consumer (the queue the chat waits in may
    change on a transfer) and is not sent to the customer.
    """
    interaction = Interaction.objects.select_related("agent").get(pk=session.interaction_id)
    state = CUSTOMER_STATES.get(interaction.state, "ended")
    position = None
    if state == "queued":
        ahead = Interaction.objects.filter(service_id=interaction.service_id, state=Interaction.State.QUEUED).filter(
            Q(created_at__lt=interaction.created_at) | Q(created_at=interaction.created_at, id__lt=interaction.pk)
        )
        position = ahead.count() + 1
    agent = None
    if state == "active" and interaction.agent is not None:
        agent = interaction.agent.first_name or None
    return {"state": state, "position": position, "agent": agent, "service_id": interaction.service_id}


def chat_customer_read_upto(*, session: ChatSession) -> int:
    """The highest entry id of the customer's own messages that the agent has read."""
    agent_read_upto = (
        Conversation.objects.filter(pk=session.conversation_id).values_list("agent_read_upto", flat=True).first()
    ) or 0
    if not agent_read_upto:
        return 0
    own = TimelineEntry.objects.filter(
        conversation_id=session.conversation_id,
        interaction_id=session.interaction_id,
        kind=TimelineEntry.Kind.MESSAGE,
        message__direction=Direction.INBOUND,
        id__lte=agent_read_upto,
    )
    return own.aggregate(last=Max("id"))["last"] or 0


def chat_inactivity_ends_at(*, session: ChatSession):
    """When a warned, still live chat will be ended for inactivity; None if no warning stands."""
    session = ChatSession.objects.select_related("service", "interaction").get(pk=session.pk)
    if session.inactivity_warned_at is None or not session.interaction.is_live:
        return None
    return session.last_customer_activity_at + timedelta(seconds=session.service.chat_inactivity_seconds)


# --- attachments: short-lived download links bound to one session -------------------------------------------


def attachment_url_token(*, attachment_id: int, session: ChatSession) -> str:
    return signing.dumps({"a": attachment_id, "s": str(session.public_id)}, salt=ATTACHMENT_URL_SALT)


def attachment_for_url_token(token: str) -> Attachment | None:
    """The attachment a download link names, if the link is genuine, fresh and its session may see the file."""
    try:
        data = signing.loads(token, salt=ATTACHMENT_URL_SALT, max_age=ATTACHMENT_URL_MAX_AGE)
        attachment_id, public_id = int(data["a"]), str(data["s"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    session = ChatSession.objects.filter(public_id=public_id).first()
    if session is None:
        return None
    return (
        Attachment.objects.filter(
            pk=attachment_id,
            message__conversation_id=session.conversation_id,
            message__interaction_id=session.interaction_id,
            message__medium=Medium.CHAT,
        )
        .select_related("message")
        .first()
    )


# --- what goes over the customer's socket ----------------------------------------------------------------------


def _system_text(entry: TimelineEntry) -> str:
    if entry.kind == TimelineEntry.Kind.TRANSFERRED:
        # The transfer note is internal: the customer only learns that it happens.
        return _("You are being transferred. Please wait a moment.")
    return _("The chat has ended.")


def customer_entry_json(*, entry: TimelineEntry, session: ChatSession) -> dict:
    """One entry as the customer's page renders it (plain text; the page never parses HTML)."""
    message: Message | None = entry.message if entry.kind == TimelineEntry.Kind.MESSAGE else None
    if message is None:
        return {
            "id": entry.pk,
            "kind": "system",
            "author": "system",
            "text": _system_text(entry),
            "at": entry.created_at.isoformat(),
            "attachments": [],
            "status": None,
        }
    attachments = [
        {
            "name": attachment.filename,
            "url": reverse(
                "webchat:attachment-download",
                args=[attachment_url_token(attachment_id=attachment.pk, session=session)],
            ),
            "size": attachment.size,
            "content_type": attachment.content_type,
        }
        for attachment in message.attachments.all()
    ]
    text = message.body
    if len(attachments) == 1 and text == attachments[0]["name"]:
        # A file message carries its file name as the body; the attachment already shows it.
        text = ""
    return {
        "id": entry.pk,
        "kind": "message",
        "author": message.author_kind,
        "text": text,
        "at": message.created_at.isoformat(),
        "attachments": attachments,
        "status": message.delivery_status,
    }
