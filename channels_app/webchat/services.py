"""Web chat: starting a chat, messages both ways, receipts, attachments, ending."""

from __future__ import annotations

import contextlib
import functools
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from agents.models import AgentProfile, AgentState
from agents.services import agent_work_started
from channels_app.webchat.models import ChatSession
from contacts.models import Contact, ContactPoint
from contacts.normalize import normalize_email, normalize_phone
from contacts.services import contact_identify, contact_point_add
from conversations import events
from conversations.models import (
    PRECHAT_FIELDS,
    Attachment,
    Conversation,
    Direction,
    Interaction,
    Medium,
    Message,
    Service,
    TimelineEntry,
)
from conversations.routing import route_on_commit
from conversations.services import (
    CONTACT_TOUCH_EVERY,
    conversation_open,
    counts_unread_for_agent,
    interaction_end,
    interaction_start,
    message_record,
)
from core.prepared import PreparedQuery, PreparedUpdate

SESSION_SALT = "parley.webchat.session"
VISITOR_SALT = "parley.webchat.visitor"
SESSION_MAX_AGE = timedelta(days=7)
VISITOR_MAX_AGE = timedelta(days=365)
# Customers get a warning this long before an inactive chat is ended.
INACTIVITY_WARNING = timedelta(seconds=60)

ALLOWED_ATTACHMENT_TYPES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "application/pdf": (b"%PDF-",),
    "text/plain": (),
}


# --- tokens ---------------------------------------------------------------------


def session_token(session: ChatSession) -> str:
    return signing.dumps(str(session.public_id), salt=SESSION_SALT, compress=True)


def visitor_token(visitor_id: uuid.UUID) -> str:
    return signing.dumps(str(visitor_id), salt=VISITOR_SALT, compress=True)


def session_from_token(token: str) -> ChatSession | None:
    """The session a customer's token names, or None for a forged, expired or unknown token."""
    try:
        public_id = uuid.UUID(signing.loads(token, salt=SESSION_SALT, max_age=SESSION_MAX_AGE))
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return (
        ChatSession.objects.select_related("conversation", "interaction", "service", "contact")
        .filter(public_id=public_id)
        .first()
    )


def visitor_from_token(token: str | None) -> uuid.UUID | None:
    if not token:
        return None
    try:
        return uuid.UUID(signing.loads(token, salt=VISITOR_SALT, max_age=VISITOR_MAX_AGE))
    except (signing.BadSignature, ValueError, TypeError):
        return None


# --- starting -------------------------------------------------------------------


def prechat_clean(*, service: Service, data: dict) -> dict[str, str]:
    """Validate the pre-chat form against the service's field settings."""
    modes = {**dict.fromkeys(PRECHAT_FIELDS, "off"), **(service.prechat_fields or {})}
    cleaned: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in PRECHAT_FIELDS:
        value = str(data.get(name) or "").strip()
        if modes[name] == "off":
            continue
        if not value:
            if modes[name] == "required":
                errors[name] = _("This field is required.")
            continue
        try:
            if name == "email":
                value = normalize_email(value)
            elif name == "phone":
                value = normalize_phone(value)
            elif name == "name" and len(value) > 150:
                raise ValidationError(_("The name is too long."))
            elif name == "question" and len(value) > settings.CHAT_MAX_MESSAGE_CHARS:
                raise ValidationError(_("The message is too long."))
        except ValidationError as exc:
            errors[name] = " ".join(exc.messages)
            continue
        cleaned[name] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def _split_name(name: str) -> tuple[str, str]:
    first, _sep, last = name.partition(" ")
    return first, last


def _recognise(*, visitor_id: uuid.UUID, fields: dict[str, str]) -> Contact:
    """The contact behind this chat: by email, then phone, then the browser's visitor id."""
    first, last = _split_name(fields.get("name", ""))
    if fields.get("email"):
        kind, value = ContactPoint.Kind.EMAIL, fields["email"]
    elif fields.get("phone"):
        kind, value = ContactPoint.Kind.PHONE, fields["phone"]
    else:
        kind, value = ContactPoint.Kind.WEBCHAT, str(visitor_id)
    contact, _created = contact_identify(kind=kind, value=value, first_name=first, last_name=last)
    if not (contact.first_name or contact.last_name) and (first or last):
        Contact.objects.filter(pk=contact.pk).update(first_name=first, last_name=last)
        contact.refresh_from_db()
    extra = [(ContactPoint.Kind.WEBCHAT, str(visitor_id))]
    extra += [(ContactPoint.Kind.PHONE, fields["phone"])] if fields.get("phone") else []
    for point_kind, point_value in extra:
        # An address that belongs to another contact stays there; merging is the contacts section's job.
        with contextlib.suppress(IntegrityError):
            contact_point_add(contact=contact, kind=point_kind, value=point_value)
    return contact


@transaction.atomic
def chat_start(*, service: Service, data: dict, visitor: str | None = None) -> ChatSession:
    """A customer submits the pre-chat form: recognise them, open (or join) their conversation, queue the chat."""
    if not service.is_active or Medium.CHAT not in service.media:
        raise ValidationError(_("Chat is not available for this service."))
    fields = prechat_clean(service=service, data=data)
    visitor_id = visitor_from_token(visitor) or uuid.uuid4()
    contact = _recognise(visitor_id=visitor_id, fields=fields)
    conversation, _opened = conversation_open(contact=contact, service=service)
    live_chat = conversation.interactions.live().filter(medium=Medium.CHAT).first()
    if live_chat is not None and hasattr(live_chat, "chat_session") and live_chat.chat_session.visitor_id == visitor_id:
        # The same customer in a second tab: that chat continues. Only for the same browser (visitor
        # token): an email typed into the form must not hand over someone else's live chat.
        return live_chat.chat_session
    agent = conversation.assigned_agent
    if agent is not None and not AgentProfile.objects.filter(user=agent).exclude(state=AgentState.LOGGED_OUT).exists():
        # Nobody would answer: the chat is queued, and whoever accepts it takes the conversation over.
        agent = None
    if agent is not None:
        # The agent already serving this contact's conversation takes the chat too.
        interaction = interaction_start(
            conversation=conversation,
            medium=Medium.CHAT,
            direction=Direction.INBOUND,
            service=service,
            agent=agent,
            state=Interaction.State.ACTIVE,
        )
        events.agent_conversations_changed(user_id=agent.pk)
        agent_work_started(user=agent)
    else:
        interaction = interaction_start(
            conversation=conversation, medium=Medium.CHAT, direction=Direction.INBOUND, service=service
        )
    session = ChatSession.objects.create(
        visitor_id=visitor_id,
        service=service,
        contact=contact,
        conversation=conversation,
        interaction=interaction,
        name=fields.get("name", ""),
        email=fields.get("email", ""),
        phone=fields.get("phone", ""),
    )
    if fields.get("question"):
        chat_customer_message(session=session, text=fields["question"])
    if interaction.state == Interaction.State.QUEUED:
        events.service_queue_changed(service_id=service.pk)
        route_on_commit(service_id=service.pk)
    return session


# --- messages -----------------------------------------------------------------------


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError(_("The message is empty."))
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ValidationError(
            _("The message is too long (at most %(limit)s characters).") % {"limit": settings.CHAT_MAX_MESSAGE_CHARS}
        )
    return text


# The session's activity stamp is written by a customer message only when it is this old (or a warning
# stands): the stamp may lag the customer's latest message by this much, and the inactivity sweep reads
# both. One write fewer on almost every chat message.
ACTIVITY_STAMP_EVERY = timedelta(seconds=30)


def _chat_locked(interaction_id: int) -> Interaction:
    """The chat's interaction (with conversation, contact and session), interaction and conversation locked."""
    rows = _CHAT_LOCKED(interaction_id=interaction_id)
    if not rows:
        raise Interaction.DoesNotExist(f"no interaction {interaction_id}")
    return rows[0]


def chat_customer_message(*, session: ChatSession, text: str) -> Message:
    """Store the customer's chat message; it comes back with its timeline entry as ``entry``."""
    text = _clean_text(text)
    if transaction.get_connection().vendor == "postgresql":
        return _customer_message_in_one_statement(session=session, text=text)
    return _customer_message_step_by_step(session=session, text=text)


@transaction.atomic
def _customer_message_step_by_step(*, session: ChatSession, text: str) -> Message:
    interaction = _chat_locked(session.interaction_id)
    if not interaction.is_live:
        raise ValidationError(_("This chat has ended."))
    message = message_record(
        interaction=interaction,
        direction=Direction.INBOUND,
        author_kind=Message.Author.CUSTOMER,
        body=text,
        locked=True,
    )
    now = timezone.now()
    if interaction.conversation.customer_waiting_since is None:
        _CUSTOMER_WAITING_FROM(conversation_id=session.conversation_id, now=now)
    stored = interaction.chat_session
    if stored.inactivity_warned_at is not None or now - stored.last_customer_activity_at >= ACTIVITY_STAMP_EVERY:
        _CUSTOMER_ACTIVE_AT(session_id=stored.pk, now=now)
    return message


# What ``_customer_message_step_by_step`` does, as one statement: it is its own transaction, so a chat
# message costs one round trip to PostgreSQL instead of six (BEGIN, the locking read, two inserts, the
# waiting timer, COMMIT), and the database thread, which every socket of the process shares, is held for
# less than half as long (docs/PERFORMANCE.md, 2026-12-04 afternoon). The same rows and the same locks: the
# interaction and the conversation are locked first, so an end, a close or an agent's reply in the same
# conversation is waited for and seen; nothing is written unless the interaction is live; the stamps on
# the session and the contact are written when the step-by-step version would write them. The
# step-by-step version stays for SQLite, and tests compare the two (tests/webchat/test_services.py).
_CUSTOMER_MESSAGE_SQL = """
WITH locked AS (
    SELECT i.id, i.state, i.medium, i.conversation_id, c.uuid, c.assigned_agent_id, c.contact_id,
           s.id AS session_id
    FROM {interaction} i
    JOIN {conversation} c ON c.id = i.conversation_id
    JOIN {session} s ON s.interaction_id = i.id
    WHERE i.id = %(interaction_id)s
    FOR UPDATE OF i, c
), stored AS (
    INSERT INTO {message} (conversation_id, interaction_id, medium, direction, author_kind, author_agent_id,
                           subject, body, delivery_status, status_reason, provider_message_id, created_at)
    SELECT conversation_id, id, medium, %(direction)s, %(author)s, NULL, '', %(body)s, %(status)s, '', NULL, %(now)s
    FROM locked WHERE state IN ({live})
    RETURNING id, conversation_id, interaction_id
), entry AS (
    INSERT INTO {entry} (conversation_id, kind, interaction_id, message_id, note_id, actor_id, data, created_at,
                         unread_for_agent)
    SELECT conversation_id, %(kind)s, interaction_id, id, NULL, NULL, '{{}}', %(now)s, TRUE FROM stored
    RETURNING id
), waiting AS (
    UPDATE {conversation} SET customer_waiting_since = %(now)s
    WHERE id = (SELECT conversation_id FROM stored) AND customer_waiting_since IS NULL
), active AS (
    UPDATE {session} SET last_customer_activity_at = %(now)s, inactivity_warned_at = NULL
    WHERE id = (SELECT session_id FROM locked WHERE EXISTS (SELECT FROM stored))
      AND (inactivity_warned_at IS NOT NULL OR last_customer_activity_at <= %(stamp_before)s)
), touched AS (
    UPDATE {contact} SET last_activity_at = %(now)s
    WHERE id = (SELECT contact_id FROM locked WHERE EXISTS (SELECT FROM stored))
      AND (last_activity_at IS NULL OR last_activity_at <= %(touch_before)s)
)
SELECT locked.conversation_id, locked.uuid, locked.assigned_agent_id, (SELECT id FROM stored), (SELECT id FROM entry)
FROM locked
"""


@functools.cache
def _with_tables(sql: str) -> str:
    # The live states are written into the statement: a list parameter's array dumper would tie the cursor's
    # adapters into a reference cycle, about 60 objects per message left for the cycle collector.
    if not all(state.isidentifier() for state in Interaction.LIVE_STATES):
        raise ValueError("live states must be plain words to be written into SQL")
    return sql.format(
        live=", ".join(f"'{state}'" for state in Interaction.LIVE_STATES),
        interaction=Interaction._meta.db_table,
        conversation=Conversation._meta.db_table,
        session=ChatSession._meta.db_table,
        message=Message._meta.db_table,
        entry=TimelineEntry._meta.db_table,
        contact=Contact._meta.db_table,
    )


def _one_statement(sql: str, params: dict) -> tuple | None:
    """Run one of the statements above (the tables named by their models) and return its row, if any."""
    with transaction.mark_for_rollback_on_error(), transaction.get_connection().cursor() as cursor:
        cursor.execute(_with_tables(sql), params)
        return cursor.fetchone()


def _stored_message(*, message_id: int, entry_id: int, conversation_id: int, interaction_id: int, **fields) -> Message:
    """The chat message and its timeline entry as a statement above stored them, without reading them back."""
    alias = transaction.get_connection().alias
    message = Message(
        id=message_id, conversation_id=conversation_id, interaction_id=interaction_id, medium=Medium.CHAT, **fields
    )
    message.entry = TimelineEntry(
        id=entry_id,
        conversation_id=conversation_id,
        kind=TimelineEntry.Kind.MESSAGE,
        interaction_id=interaction_id,
        message=message,
        actor=fields.get("author_agent"),
        created_at=message.created_at,
        unread_for_agent=counts_unread_for_agent(message),
    )
    for stored in (message, message.entry):
        stored._state.adding = False
        stored._state.db = alias
    return message


def _customer_message_in_one_statement(*, session: ChatSession, text: str) -> Message:
    now = timezone.now()
    row = _one_statement(
        _CUSTOMER_MESSAGE_SQL,
        {
            "interaction_id": session.interaction_id,
            "direction": Direction.INBOUND,
            "author": Message.Author.CUSTOMER,
            "body": text,
            "status": Message.Status.RECEIVED,
            "now": now,
            "kind": TimelineEntry.Kind.MESSAGE,
            "stamp_before": now - ACTIVITY_STAMP_EVERY,
            "touch_before": now - CONTACT_TOUCH_EVERY,
        },
    )
    if row is None:
        raise Interaction.DoesNotExist(f"no interaction {session.interaction_id}")
    conversation_id, conversation_uuid, agent_id, message_id, entry_id = row
    if message_id is None:
        raise ValidationError(_("This chat has ended."))
    message = _stored_message(
        message_id=message_id,
        entry_id=entry_id,
        conversation_id=conversation_id,
        interaction_id=session.interaction_id,
        direction=Direction.INBOUND,
        author_kind=Message.Author.CUSTOMER,
        body=text,
        delivery_status=Message.Status.RECEIVED,
        created_at=now,
    )
    events.conversation_timeline_appended(conversation_uuid=conversation_uuid, entry_id=entry_id, agent_id=agent_id)
    return message


def customer_last_active(*, session: ChatSession):
    """When the customer last wrote: the session's stamp, or their latest message if that is newer."""
    latest = (
        Message.objects.filter(interaction_id=session.interaction_id, author_kind=Message.Author.CUSTOMER)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    stamp = session.last_customer_activity_at
    return max(stamp, latest) if latest is not None else stamp


# Written by every customer message; prepared, as compiling them cost more than running them (core/prepared.py).
_CUSTOMER_WAITING_FROM = PreparedUpdate(
    lambda conversation_id, now: (
        Conversation.objects.filter(pk=conversation_id, customer_waiting_since__isnull=True),
        {"customer_waiting_since": now},
    ),
    conversation_id=(-730_031, int),
    now=(datetime(1971, 3, 5, 7, 11, 17, 170_033, tzinfo=UTC), Conversation._meta.get_field("customer_waiting_since")),
)
_CHAT_LOCKED = PreparedQuery(
    lambda interaction_id: Interaction.objects.select_for_update(of=("self", "conversation"))
    .select_related("conversation", "conversation__contact", "chat_session")
    .filter(pk=interaction_id),
    interaction_id=(-730_041, int),
)
_CUSTOMER_ACTIVE_AT = PreparedUpdate(
    lambda session_id, now: (
        ChatSession.objects.filter(pk=session_id),
        {"last_customer_activity_at": now, "inactivity_warned_at": None},
    ),
    session_id=(-730_035, int),
    now=(
        datetime(1971, 3, 5, 7, 11, 19, 170_037, tzinfo=UTC),
        ChatSession._meta.get_field("last_customer_activity_at"),
    ),
)


def live_chat_for(*, conversation: Conversation) -> Interaction | None:
    return (
        conversation.interactions.filter(medium=Medium.CHAT, state__in=Interaction.LIVE_STATES)
        .order_by("-created_at")
        .first()
    )


# The agent's every reply reads this; prepared, as compiling it cost more than running it (core/prepared.py).
_LIVE_CHAT_LOCKED = PreparedQuery(
    lambda conversation_id, key: Interaction.objects.select_for_update(of=("self", "conversation"))
    .select_related("conversation")
    .annotate(
        # The reply stored under this key, if any: read with the lock, so the insert needs no savepoint.
        stored_reply_id=Subquery(Message.objects.filter(medium=Medium.CHAT, provider_message_id=key).values("pk")[:1])
    )
    .filter(conversation_id=conversation_id, medium=Medium.CHAT, state__in=Interaction.LIVE_STATES)
    .order_by("-created_at")[:1],
    conversation_id=(-730_013, int),
    key=("desktop:-730043:sample", str),
)


# A reply the agent desktop sends over its socket carries the tab's id for it; a resend after a dropped
# socket carries the same id and finds the stored message. For the web chat Parley is the provider, so the
# key is kept where a provider's id would be, unique per medium.
DESKTOP_KEY_PREFIX = "desktop"
MAX_CLIENT_KEY_CHARS = 64


def desktop_message_key(*, agent_user, client_key: str) -> str:
    return f"{DESKTOP_KEY_PREFIX}:{agent_user.pk}:{client_key}"


def _stored_reply(*, conversation: Conversation, key: str | None) -> Message | None:
    if key is None:
        return None
    return Message.objects.filter(conversation=conversation, medium=Medium.CHAT, provider_message_id=key).first()


def chat_agent_message(*, conversation: Conversation, agent_user, text: str, client_key: str | None = None) -> Message:
    """The agent answers in the conversation's live chat.

    ``client_key``: the sending tab's id for this reply; sending the same key again returns the message
    stored the first time instead of a second one.
    """
    text = _clean_text(text)
    if client_key is not None and not 0 < len(client_key) <= MAX_CLIENT_KEY_CHARS:
        raise ValidationError(_("The message could not be sent."))
    key = desktop_message_key(agent_user=agent_user, client_key=client_key) if client_key is not None else None
    if transaction.get_connection().vendor == "postgresql":
        stored = _agent_message_in_one_statement(conversation=conversation, agent_user=agent_user, text=text, key=key)
        if stored is not None:
            return stored
        # Refused, a resend, or a resend's race: nothing was written; the step-by-step version says which.
    try:
        return _chat_agent_message(conversation=conversation, agent_user=agent_user, text=text, key=key)
    except IntegrityError:
        if key is None:
            raise
        # A resend of the same reply was stored by another transaction between our read and our insert
        # (the unique key refused ours): read again, and find it.
        return _chat_agent_message(conversation=conversation, agent_user=agent_user, text=text, key=key)


@transaction.atomic
def _chat_agent_message(*, conversation: Conversation, agent_user, text: str, key: str | None) -> Message:
    # The live chat and its conversation under lock, in one read: the conversation may have been
    # transferred, or the chat ended, since the caller looked.
    rows = _LIVE_CHAT_LOCKED(conversation_id=conversation.pk, key=key or "")
    interaction = rows[0] if rows else None
    current = interaction.conversation if interaction is not None else conversation
    refusal = None
    if current.assigned_agent_id != agent_user.pk:
        refusal = _("This conversation is not yours.")
    elif interaction is None or interaction.state != Interaction.State.ACTIVE:
        refusal = _("There is no live chat in this conversation.")
    if refusal is not None:
        # A resend of a reply stored before the chat ended or moved on is answered with that reply.
        stored = _stored_reply(conversation=current, key=key)
        if stored is not None:
            return stored
        raise ValidationError(refusal)
    if key is not None and interaction.stored_reply_id is not None:
        stored = Message.objects.get(pk=interaction.stored_reply_id)
        if stored.conversation_id != current.pk:
            raise ValidationError(_("The message could not be sent."))
        return stored
    message = message_record(
        interaction=interaction,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=agent_user,
        body=text,
        delivery_status=Message.Status.SENT,
        provider_message_id=key,
        locked=True,
        duplicate_checked=True,
    )
    if current.customer_waiting_since is not None:
        _CUSTOMER_ANSWERED(conversation_id=current.pk)
    return message


# The usual reply (the agent's own live chat, a key not seen before) as one statement, its own transaction,
# as for the customer's messages (``_CUSTOMER_MESSAGE_SQL``): the same locks and rows as
# ``_chat_agent_message``, which runs instead whenever this one writes nothing.
_AGENT_MESSAGE_SQL = """
WITH locked AS (
    SELECT i.id, i.state, i.medium, i.conversation_id, c.uuid, c.assigned_agent_id,
           (SELECT m.id FROM {message} m WHERE m.medium = %(medium)s AND m.provider_message_id = %(key)s LIMIT 1)
               AS stored_reply_id
    FROM {interaction} i
    JOIN {conversation} c ON c.id = i.conversation_id
    WHERE i.conversation_id = %(conversation_id)s AND i.medium = %(medium)s AND i.state IN ({live})
    ORDER BY i.created_at DESC
    LIMIT 1
    FOR UPDATE OF i, c
), stored AS (
    INSERT INTO {message} (conversation_id, interaction_id, medium, direction, author_kind, author_agent_id,
                           subject, body, delivery_status, status_reason, provider_message_id, created_at)
    SELECT conversation_id, id, medium, %(direction)s, %(author)s, %(agent_id)s, '', %(body)s, %(status)s, '',
           %(key)s, %(now)s
    FROM locked
    WHERE assigned_agent_id = %(agent_id)s AND state = %(active)s AND stored_reply_id IS NULL
    ON CONFLICT (medium, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING
    RETURNING id, conversation_id, interaction_id
), entry AS (
    INSERT INTO {entry} (conversation_id, kind, interaction_id, message_id, note_id, actor_id, data, created_at,
                         unread_for_agent)
    SELECT conversation_id, %(kind)s, interaction_id, id, NULL, %(agent_id)s, '{{}}', %(now)s, FALSE FROM stored
    RETURNING id
), answered AS (
    UPDATE {conversation} SET customer_waiting_since = NULL
    WHERE id = (SELECT conversation_id FROM stored) AND customer_waiting_since IS NOT NULL
)
SELECT stored.id, stored.conversation_id, stored.interaction_id, locked.uuid, entry.id
FROM stored, entry, locked
"""


def _agent_message_in_one_statement(*, conversation: Conversation, agent_user, text: str, key: str | None):
    """The reply, stored in one statement; None when that wrote nothing (see ``_AGENT_MESSAGE_SQL``)."""
    now = timezone.now()
    row = _one_statement(
        _AGENT_MESSAGE_SQL,
        {
            "conversation_id": conversation.pk,
            "medium": Medium.CHAT,
            "key": key,
            "direction": Direction.OUTBOUND,
            "author": Message.Author.AGENT,
            "agent_id": agent_user.pk,
            "body": text,
            "status": Message.Status.SENT,
            "now": now,
            "active": Interaction.State.ACTIVE,
            "kind": TimelineEntry.Kind.MESSAGE,
        },
    )
    if row is None:
        return None
    message_id, conversation_id, interaction_id, conversation_uuid, entry_id = row
    message = _stored_message(
        message_id=message_id,
        entry_id=entry_id,
        conversation_id=conversation_id,
        interaction_id=interaction_id,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=agent_user,
        body=text,
        delivery_status=Message.Status.SENT,
        provider_message_id=key,
        created_at=now,
    )
    events.conversation_timeline_appended(
        conversation_uuid=conversation_uuid, entry_id=entry_id, agent_id=agent_user.pk
    )
    return message


_CUSTOMER_ANSWERED = PreparedUpdate(
    lambda conversation_id: (Conversation.objects.filter(pk=conversation_id), {"customer_waiting_since": None}),
    conversation_id=(-730_039, int),
)


def _sniff_ok(content_type: str, head: bytes) -> bool:
    signatures = ALLOWED_ATTACHMENT_TYPES[content_type]
    if content_type == "image/webp":
        return head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    if content_type == "text/plain":
        return b"\x00" not in head
    return any(head.startswith(signature) for signature in signatures)


def attachment_check(upload: UploadedFile) -> str:
    """Validate size and type (by content, not only by name); returns the content type."""
    if upload.size > settings.CHAT_MAX_ATTACHMENT_BYTES:
        raise ValidationError(
            _("The file is too large (at most %(mb)s MB).")
            % {"mb": settings.CHAT_MAX_ATTACHMENT_BYTES // (1024 * 1024)}
        )
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if content_type not in ALLOWED_ATTACHMENT_TYPES:
        raise ValidationError(_("This kind of file cannot be sent. Images, PDF and text files can."))
    head = upload.read(16)
    upload.seek(0)
    if not _sniff_ok(content_type, head):
        raise ValidationError(_("The file's content does not match its type."))
    return content_type


@transaction.atomic
def chat_attachment_send(
    *, interaction: Interaction, upload: UploadedFile, direction: str, author_kind: str, agent_user=None
) -> Message:
    """Send a file in the chat as its own message."""
    content_type = attachment_check(upload)
    # Re-read under lock: the caller's copy may predate the chat ending (message_record accepts inbound items then).
    interaction = Interaction.objects.select_for_update().get(pk=interaction.pk)
    if not interaction.is_live:
        raise ValidationError(_("This chat has ended."))
    filename = (upload.name or "file").replace("/", "_").replace("\\", "_")[-200:]
    message = message_record(
        interaction=interaction,
        direction=direction,
        author_kind=author_kind,
        author_agent=agent_user,
        body=filename,
        delivery_status=Message.Status.SENT if direction == Direction.OUTBOUND else None,
    )
    attachment = Attachment(message=message, filename=filename, content_type=content_type, size=upload.size)
    attachment.file.save(filename, upload, save=False)
    attachment.save()
    now = timezone.now()
    if author_kind == Message.Author.CUSTOMER:
        # Sending a file is activity too: it must not end the chat for inactivity.
        ChatSession.objects.filter(interaction=interaction).update(
            last_customer_activity_at=now, inactivity_warned_at=None
        )
        Conversation.objects.filter(pk=interaction.conversation_id, customer_waiting_since__isnull=True).update(
            customer_waiting_since=now
        )
    else:
        Conversation.objects.filter(pk=interaction.conversation_id).update(customer_waiting_since=None)
    return message


# --- typing, receipts -------------------------------------------------------------


def chat_typing(*, conversation: Conversation, who: str, typing: bool) -> None:
    events.conversation_typing(
        conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id, who=who, typing=typing
    )


@transaction.atomic
def chat_mark_read(*, conversation: Conversation, side: str, upto_entry_id: int) -> bool:
    """One side has shown the timeline up to ``upto_entry_id``: the other side's messages become read."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    field = "agent_read_upto" if side == "agent" else "customer_read_upto"
    upto = min(int(upto_entry_id), _last_entry_id(conversation))
    if upto <= getattr(conversation, field):
        return False
    setattr(conversation, field, upto)
    conversation.save(update_fields=[field])
    direction = Direction.INBOUND if side == "agent" else Direction.OUTBOUND
    Message.objects.filter(
        conversation=conversation, direction=direction, entry__id__lte=upto, medium=Medium.CHAT
    ).exclude(delivery_status__in=(Message.Status.READ, Message.Status.FAILED)).update(
        delivery_status=Message.Status.READ
    )
    events.conversation_receipts(conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id)
    return True


@transaction.atomic
def chat_mark_delivered(*, conversation: Conversation, upto_entry_id: int) -> bool:
    """The customer's browser received the agent's messages up to ``upto_entry_id``."""
    updated = Message.objects.filter(
        conversation=conversation,
        direction=Direction.OUTBOUND,
        medium=Medium.CHAT,
        entry__id__lte=int(upto_entry_id),
        delivery_status=Message.Status.SENT,
    ).update(delivery_status=Message.Status.DELIVERED)
    if updated:
        events.conversation_receipts(conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id)
    return bool(updated)


def _last_entry_id(conversation: Conversation) -> int:
    last = TimelineEntry.objects.filter(conversation=conversation).order_by("-id").values_list("id", flat=True)
    return last.first() or 0


# --- ending ---------------------------------------------------------------------------


@transaction.atomic
def chat_end(*, session: ChatSession | None = None, interaction: Interaction | None = None, reason: str, actor=None):
    """End the chat (customer left, agent ended it, inactivity). The conversation stays open for wrap-up."""
    interaction = interaction or Interaction.objects.get(pk=session.interaction_id)
    ended = interaction_end(interaction=interaction, reason=reason, actor=actor)
    if ended.service_id:
        events.service_queue_changed(service_id=ended.service_id)
    # An unanswered chat the customer left has nobody to wrap it up: close it.
    conversation = ended.conversation
    if ended.answered_at is None and not conversation.interactions.live().exists():
        from conversations.services import conversation_close

        conversation.refresh_from_db()
        if conversation.is_open and conversation.assigned_agent_id is None:
            # Stored text is read by everyone later: written in the site's language, not the request's.
            with translation.override(settings.LANGUAGE_CODE):
                notes = _("Customer left before an agent answered.")
            conversation_close(conversation=conversation, notes=notes)
    return ended


def chat_inactivity_sweep() -> tuple[int, int]:
    """Warn, then end, chats whose customer has been silent too long. Returns (warned, ended).

    The session's stamp never runs ahead of the customer's latest message, so a chat it shows as active
    is; one it shows as silent is looked at again under the chat's lock (which a customer message takes
    too), with the latest message. A warning writes that time into the stamp, so the countdown shown
    (``selectors.chat_inactivity_ends_at``) reads it from there.
    """
    warned = ended = 0
    sessions = ChatSession.objects.filter(
        interaction__state__in=(Interaction.State.ACTIVE, Interaction.State.ON_HOLD)
    ).select_related("service")
    for candidate in sessions:
        limit = timedelta(seconds=candidate.service.chat_inactivity_seconds)
        if timezone.now() - candidate.last_customer_activity_at < limit - INACTIVITY_WARNING:
            continue
        with transaction.atomic():
            interaction = _chat_locked(candidate.interaction_id)
            session = interaction.chat_session
            if not interaction.is_live:
                continue
            now = timezone.now()
            last_active = customer_last_active(session=session)
            silent = now - last_active
            if silent >= limit:
                chat_end(interaction=interaction, reason="customer_inactive")
                ended += 1
            elif silent >= limit - INACTIVITY_WARNING and session.inactivity_warned_at is None:
                ChatSession.objects.filter(pk=session.pk).update(
                    inactivity_warned_at=now, last_customer_activity_at=last_active
                )
                events.chat_inactivity_warning(
                    conversation_uuid=interaction.conversation.uuid, ends_at=(last_active + limit).isoformat()
                )
                warned += 1
    return warned, ended
