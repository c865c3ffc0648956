"""Every read the views and consumers need about conversations."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FilteredRelation,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from contacts.models import Contact
from conversations.models import (
    Attachment,
    CannedResponse,
    Conversation,
    Direction,
    Disposition,
    Interaction,
    Medium,
    Message,
    Offer,
    Service,
    TimelineEntry,
)
from core.prepared import PreparedQuery, run_together


def conversations_active_for_agent(*, agent) -> QuerySet[Conversation]:
    """The agent's Active Conversations List, oldest first."""
    return (
        Conversation.objects.open().assigned_to(agent).select_related("contact", "service").order_by("opened_at", "id")
    )


def conversation_for_agent(*, agent, conversation_uuid) -> Conversation | None:
    """The conversation if ``agent`` may work it (it is assigned to them), else None (also for a malformed id).

    Every frame of an agent's socket that names a conversation (a reply, a read mark, typing) asks this, so
    its SQL is compiled once (core.prepared).
    """
    if not isinstance(conversation_uuid, uuid.UUID):
        try:
            conversation_uuid = uuid.UUID(str(conversation_uuid))
        except ValueError:
            return None  # names no conversation
    rows = _CONVERSATION_FOR_AGENT(agent_id=agent.pk, conversation_uuid=conversation_uuid)
    return rows[0] if rows else None


def conversation_timeline(
    *, conversation: Conversation, after: tuple[datetime, int] | None = None, limit: int = 100
) -> list[TimelineEntry]:
    """Timeline entries in time order, keyset-paged after ``(created_at, id)``.

    One query whatever the size of the conversation: no OFFSET, no COUNT.
    """
    entries = TimelineEntry.objects.filter(conversation=conversation).select_related(
        "message", "note", "interaction", "actor"
    )
    if after is not None:
        created_at, entry_id = after
        entries = entries.filter(Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=entry_id))
    return list(entries.order_by("created_at", "id")[:limit])


def contact_activity_history(
    *, contact: Contact, before: tuple[datetime, int] | None = None, limit: int = 20
) -> list[Conversation]:
    """The contact's conversations across every channel, newest first, keyset-paged."""
    conversations = Conversation.objects.filter(contact=contact).select_related(
        "service", "assigned_agent", "disposition"
    )
    if before is not None:
        opened_at, conversation_id = before
        conversations = conversations.filter(
            Q(opened_at__lt=opened_at) | Q(opened_at=opened_at, id__lt=conversation_id)
        )
    return list(conversations.order_by("-opened_at", "-id")[:limit])


# --- the agent desktop --------------------------------------------------------------------------------


def acl_for_agent(*, agent) -> list[Conversation]:
    """The agent's Active Conversations List with what each row shows, in two queries whatever the volume.

    Each conversation carries ``last_message_body``, ``last_message_author``,
    ``unread_count`` (customer chat messages after ``agent_read_upto``) and
    ``live_interactions`` (its live media, oldest first).
    """
    return list(_acl_rows(agent=agent))


def acl_row_for_agent(*, agent, conversation_uuid) -> Conversation | None:
    """One row of the agent's Active Conversations List (as ``acl_for_agent`` has it), if the list holds it.

    Read for every message of the agent's conversations, so its SQL is compiled once (core.prepared).
    """
    # One read: the row, once per live interaction of the conversation (or once with none), each with
    # that interaction's columns.
    return _acl_row_from(_ACL_ROW(agent_id=agent.pk, conversation_uuid=conversation_uuid))


def acl_row_and_entry_for_agent(
    *, agent, conversation_uuid, entry_id: int
) -> tuple[Conversation | None, TimelineEntry | None]:
    """``acl_row_for_agent`` and one entry of that conversation as ``timeline_entry_for`` has it, in one round trip.

    What the desktop reads for each message of the conversation it shows. The entry is read by the
    conversation's uuid beside the row, not after it; it is returned only with the row, which is the check
    that the conversation is the agent's.
    """
    rows, entries = run_together(
        (_ACL_ROW, {"agent_id": agent.pk, "conversation_uuid": conversation_uuid}),
        (_ENTRY_BY_UUID, {"conversation_uuid": conversation_uuid, "entry_id": entry_id}),
    )
    row = _acl_row_from(rows)
    if row is None:
        return None, None
    return row, with_files(entries)[0] if entries else None


def _acl_row_from(rows: list[Conversation]) -> Conversation | None:
    if not rows:
        return None
    row = rows[0]
    row.live_interactions = [
        Interaction.from_db(row._state.db, _LIVE_COLUMNS, [getattr(r, _LIVE_PREFIX + name) for name in _LIVE_COLUMNS])
        for r in rows
        if getattr(r, _LIVE_PREFIX + "id") is not None
    ]
    return row


def _acl_rows(*, agent, with_live: bool = True) -> QuerySet[Conversation]:
    last_message = Message.objects.filter(conversation=OuterRef("pk")).order_by("-created_at", "-id")
    unread = (
        TimelineEntry.objects.filter(
            conversation=OuterRef("pk"), id__gt=OuterRef("agent_read_upto"), unread_for_agent=True
        )
        .order_by()
        .values("conversation")
        .annotate(count=Count("id"))
        .values("count")
    )
    rows = conversations_active_for_agent(agent=agent).annotate(
        last_message_body=Subquery(last_message.values("body")[:1]),
        last_message_author=Subquery(last_message.values("author_kind")[:1]),
        unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), 0),
    )
    if not with_live:
        return rows
    return rows.prefetch_related(Prefetch("interactions", queryset=_live_interactions(), to_attr="live_interactions"))


def _live_interactions() -> QuerySet[Interaction]:
    return Interaction.objects.filter(state__in=Interaction.LIVE_STATES).order_by("created_at", "id")


# An email message's timeline body shows its quoted text and formatted version (EmailMeta, reverse
# one-to-one "email"); joined here, or the template would query once per email message on the page.
_ENTRY_RELATED = ("message", "message__author_agent", "message__email", "note", "note__author", "interaction", "actor")


def _entries_for_display() -> QuerySet[TimelineEntry]:
    return TimelineEntry.objects.select_related(*_ENTRY_RELATED).annotate(
        message_has_files=Exists(Attachment.objects.filter(message_id=OuterRef("message_id")))
    )


def mark_without_files(message: Message) -> Message:
    """Give ``message`` an empty list of attachments, as a prefetch that found none leaves it.

    ``message.attachments.all()`` then returns that list without a query. Cheaper than ``none()``, which
    clones a query and compiles it on every iteration (0.2 ms per message, on every chat message's path).
    """
    empty = Attachment.objects.get_queryset()
    empty._result_cache = []
    empty._prefetch_done = True
    message._prefetched_objects_cache = {"attachments": empty}
    return message


def with_files(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Load the attachments of the messages that have any, in one query; none at all when no message has.

    Messages without files get an empty list up front, so the template's ``message.attachments.all``
    never queries per message.
    """
    with_files = [entry.message for entry in entries if entry.message_id and entry.message_has_files]
    for entry in entries:
        if entry.message_id and not entry.message_has_files:
            mark_without_files(entry.message)
    if with_files:
        prefetch_related_objects(with_files, "attachments")
    return entries


def conversation_timeline_tail(*, conversation: Conversation, limit: int = 100) -> tuple[list[TimelineEntry], bool]:
    """The newest ``limit`` timeline entries in time order, and whether older ones exist."""
    newest = list(_entries_for_display().filter(conversation=conversation).order_by("-created_at", "-id")[: limit + 1])
    return with_files(list(reversed(newest[:limit]))), len(newest) > limit


def conversation_timeline_before(
    *, conversation: Conversation, before_id: int, limit: int = 100
) -> tuple[list[TimelineEntry], bool]:
    """The ``limit`` entries just before the entry ``before_id``, in time order, and whether older ones exist."""
    anchor = TimelineEntry.objects.filter(conversation=conversation, pk=before_id).values("created_at").first()
    if anchor is None:
        return [], False
    older = list(
        _entries_for_display()
        .filter(conversation=conversation)
        .filter(Q(created_at__lt=anchor["created_at"]) | Q(created_at=anchor["created_at"], id__lt=before_id))
        .order_by("-created_at", "-id")[: limit + 1]
    )
    return with_files(list(reversed(older[:limit]))), len(older) > limit


# A client back after a gap is sent what it missed a page at a time, up to RESYNC_MAX_ENTRIES.
RESYNC_PAGE = 500
RESYNC_MAX_ENTRIES = 5000


def conversation_entries_after(
    *, conversation: Conversation, after_id: int, limit: int = RESYNC_MAX_ENTRIES
) -> list[TimelineEntry]:
    """Entries a client has not seen yet, in id order (the order the desktop shows delivered entries in).

    Read a page at a time through the ``(conversation, id)`` index, so a gap longer than a page (a tab
    away while hundreds of messages came in) is filled, not cut at the first page.
    """
    entries: list[TimelineEntry] = []
    while len(entries) < limit:
        size = min(RESYNC_PAGE, limit - len(entries))
        page = list(_entries_for_display().filter(conversation=conversation, id__gt=after_id).order_by("id")[:size])
        entries.extend(page)
        if len(page) < size:
            break
        after_id = page[-1].pk
    return with_files(entries)


def timeline_entry_for(*, conversation: Conversation, entry_id: int) -> TimelineEntry | None:
    """One entry as the timeline shows it; read for every message pushed, so compiled once (core.prepared)."""
    rows = _ENTRY(conversation_id=conversation.pk, entry_id=entry_id)
    return with_files(rows)[0] if rows else None


def timeline_entries_for(*, conversation: Conversation, entry_ids) -> list[TimelineEntry]:
    """Some entries of the conversation as the timeline shows them, in time order."""
    ids = sorted(entry_ids)
    if len(ids) == 1:
        entry = timeline_entry_for(conversation=conversation, entry_id=ids[0])
        return [entry] if entry is not None else []
    return with_files(
        list(_entries_for_display().filter(conversation=conversation, pk__in=ids).order_by("created_at", "id"))
    )


def conversation_receipt_entries(*, conversation: Conversation, limit: int = 50) -> list[TimelineEntry]:
    """The agent's latest chat messages, whose delivery marks may have moved on."""
    return with_files(
        list(
            _entries_for_display()
            .filter(
                conversation=conversation,
                kind=TimelineEntry.Kind.MESSAGE,
                message__direction=Direction.OUTBOUND,
                message__medium=Medium.CHAT,
            )
            .order_by("-created_at", "-id")[:limit]
        )
    )


def conversation_live_interactions(*, conversation: Conversation) -> list[Interaction]:
    return list(conversation.interactions.live().order_by("created_at", "id"))


def offers_pending_for_agent(*, agent) -> list[Offer]:
    """The agent's open offers, newest first."""
    return list(
        Offer.objects.filter(agent=agent, state=Offer.State.PENDING, expires_at__gt=timezone.now())
        .select_related("interaction__conversation__contact", "interaction__service", "transferred_by")
        .order_by("-created_at", "-id")
    )


def offer_for_agent(*, agent, offer_id: int) -> Offer | None:
    return Offer.objects.select_related("interaction__conversation").filter(pk=offer_id, agent=agent).first()


def canned_responses_for(*, user, query: str = "", limit: int = 10) -> list[CannedResponse]:
    """Responses the user may use (their own first, then shared) whose shortcut or title matches ``query``."""
    responses = CannedResponse.objects.available_to(user)
    query = query.strip()
    if query:
        responses = responses.filter(Q(shortcut__istartswith=query) | Q(title__icontains=query))
    own_first = Case(When(owner__isnull=True, then=1), default=0, output_field=IntegerField())
    return list(responses.order_by(own_first, "shortcut")[:limit])


def dispositions_for(*, conversation: Conversation) -> QuerySet[Disposition]:
    """Outcomes the wrap-up may record: the service's own, or every active one when it lists none."""
    active = Disposition.objects.filter(is_active=True)
    if conversation.service_id is not None:
        own = active.filter(services=conversation.service_id)
        if own.exists():
            return own
    return active


def transfer_targets_for(*, conversation: Conversation, agent) -> tuple[list, list[Service]]:
    """Agents (logged in, sharing the service) and active services the conversation can be handed to."""
    from agents.models import AgentProfile, AgentState

    profiles = AgentProfile.objects.exclude(user=agent).exclude(state=AgentState.LOGGED_OUT).select_related("user")
    if conversation.service_id is not None:
        profiles = profiles.filter(services=conversation.service_id)
    else:
        profiles = profiles.filter(services__agents__user=agent)
    profiles = profiles.filter(user__is_active=True).distinct().order_by("user__first_name", "user__last_name", "pk")
    services = list(Service.objects.filter(is_active=True).order_by("name"))
    return list(profiles), services


def contact_previous_conversations(
    *, contact: Contact, exclude: Conversation | None = None, limit: int = 20
) -> list[Conversation]:
    """The contact's other conversations, newest first, each with the ``media`` it used (one query).

    The media come from one ``EXISTS`` per medium on the interaction index, in the same query,
    rather than from a second query over the page's interactions.
    """
    media = sorted(Medium.values)
    conversations = Conversation.objects.filter(contact=contact).select_related(
        "service", "assigned_agent", "disposition"
    )
    if exclude is not None:
        conversations = conversations.exclude(pk=exclude.pk)
    conversations = conversations.annotate(
        **{
            f"_used_{medium}": Exists(Interaction.objects.filter(conversation=OuterRef("pk"), medium=medium))
            for medium in media
        }
    )
    history = list(conversations.order_by("-opened_at", "-id")[:limit])
    for conversation in history:
        conversation.media = [medium for medium in media if getattr(conversation, f"_used_{medium}")]
    return history


def attachment_for_user(*, user, attachment_id: int) -> Attachment | None:
    """The attachment if ``user`` may download it, else None.

    Allowed: the conversation's assigned agent, any agent who had an
    interaction in it, and supervisors (staff).
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    attachment = Attachment.objects.select_related("message__conversation").filter(pk=attachment_id).first()
    if attachment is None:
        return None
    conversation = attachment.message.conversation
    if user.is_staff or conversation.assigned_agent_id == user.pk:
        return attachment
    return attachment if agent_worked_on(agent=user, conversation=conversation) else None


def agent_worked_on(*, agent, conversation: Conversation) -> bool:
    """Whether ``agent`` holds or held an interaction of the conversation.

    A transfer moves the interaction row to the next agent, so earlier
    holders are known from the timeline (answered, took over, transferred)
    and from the offers they accepted.
    """
    held = (
        TimelineEntry.Kind.INTERACTION_ANSWERED,
        TimelineEntry.Kind.ASSIGNED,
        TimelineEntry.Kind.TRANSFERRED,
    )
    return (
        Interaction.objects.filter(conversation=conversation, agent=agent).exists()
        or TimelineEntry.objects.filter(conversation=conversation, actor=agent, kind__in=held).exists()
        or Offer.objects.filter(
            interaction__conversation=conversation, agent=agent, state=Offer.State.ACCEPTED
        ).exists()
    )


def conversation_record(*, conversation_uuid) -> Conversation | None:
    """Any conversation by its public id, with what its record page shows."""
    return (
        Conversation.objects.select_related("contact", "service", "assigned_agent", "disposition")
        .filter(uuid=conversation_uuid)
        .first()
    )


def conversation_timeline_after(*, conversation: Conversation, after_id: int, limit: int) -> list[TimelineEntry]:
    """Entries with id above ``after_id``, in the order they were recorded (keyset by id)."""
    return list(
        TimelineEntry.objects.filter(conversation=conversation, id__gt=after_id)
        .select_related(*_ENTRY_RELATED)
        .prefetch_related("message__attachments")
        .order_by("id")[:limit]
    )


def conversation_media(*, conversation: Conversation) -> list[str]:
    return list(conversation.interactions.order_by("medium").values_list("medium", flat=True).distinct())


# Sample values for the prepared reads: distinct from each other and from every constant in the queries.
_CONVERSATION_FOR_AGENT = PreparedQuery(
    lambda agent_id, conversation_uuid: Conversation.objects.select_related("contact", "service")
    .filter(uuid=conversation_uuid, assigned_agent_id=agent_id)
    .order_by("pk")[:1],
    agent_id=(-730_031, int),
    conversation_uuid=(uuid.UUID("3e9f7c1a-0b5d-4e2f-8a6c-d4b3a2f1e0c9"), Conversation._meta.get_field("uuid")),
)
_LIVE_PREFIX = "live_interaction_"
_LIVE_COLUMNS = tuple(field.attname for field in Interaction._meta.concrete_fields)


def _acl_row_with_live(agent_id, conversation_uuid) -> QuerySet[Conversation]:
    return (
        _acl_rows(agent=agent_id, with_live=False)
        .filter(uuid=conversation_uuid)
        .annotate(live=FilteredRelation("interactions", condition=Q(interactions__state__in=Interaction.LIVE_STATES)))
        .annotate(**{_LIVE_PREFIX + name: F(f"live__{name}") for name in _LIVE_COLUMNS})
        .order_by("live__created_at", "live__id")
    )


_ACL_ROW = PreparedQuery(
    _acl_row_with_live,
    agent_id=(-730_001, int),
    conversation_uuid=(uuid.UUID("7d0c6a5e-3f1b-4c2a-9e8d-5b4a3c2d1e0f"), Conversation._meta.get_field("uuid")),
)
_ENTRY = PreparedQuery(
    lambda conversation_id, entry_id: _entries_for_display().filter(conversation_id=conversation_id, pk=entry_id)[:1],
    conversation_id=(-730_003, int),
    entry_id=(-730_005, int),
)
_ENTRY_BY_UUID = PreparedQuery(
    lambda conversation_uuid, entry_id: (
        _entries_for_display().filter(conversation__uuid=conversation_uuid, pk=entry_id)[:1]
    ),
    conversation_uuid=(uuid.UUID("0e1d2c3b-4a59-4687-9a8b-7c6d5e4f3a2b"), Conversation._meta.get_field("uuid")),
    entry_id=(-730_007, int),
)
