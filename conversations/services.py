"""Every write to conversations goes through here; the business rules live here."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.services import agent_acw_end, agent_work_ended
from contacts.models import Contact
from contacts.services import contact_identify, contact_touch
from conversations import events
from conversations.models import (
    CannedResponse,
    Conversation,
    Direction,
    Disposition,
    Interaction,
    Medium,
    Message,
    Note,
    Offer,
    Service,
    TimelineEntry,
)
from core.prepared import PreparedQuery

# Media whose items continue one live interaction instead of starting another.
THREADED_MEDIA = (Medium.CHAT, Medium.SMS, Medium.EMAIL)


class DuplicateMessage(Exception):
    """A provider delivered a message we already have; ``message`` is the stored one."""

    def __init__(self, message: Message) -> None:
        super().__init__(f"message {message.pk} already recorded")
        self.message = message


# Every chat message first reads its interaction, conversation and contact under lock; prepared, since
# compiling that three-table read cost more than running it (core/prepared.py).
_INTERACTION_LOCKED = PreparedQuery(
    lambda interaction_id: Interaction.objects.select_for_update(of=("self", "conversation"))
    .select_related("conversation", "conversation__contact")
    .filter(pk=interaction_id),
    interaction_id=(-730_011, int),
)


def interaction_locked(*, interaction_id: int) -> Interaction:
    """The interaction with its conversation and contact, the first two locked until the transaction ends."""
    rows = _INTERACTION_LOCKED(interaction_id=interaction_id)
    if not rows:
        raise Interaction.DoesNotExist(f"no interaction {interaction_id}")
    return rows[0]


def _entry(conversation: Conversation, kind: str, **fields) -> TimelineEntry:
    entry = TimelineEntry.objects.create(conversation=conversation, kind=kind, **fields)
    events.conversation_timeline_appended(
        conversation_uuid=conversation.uuid, entry_id=entry.pk, agent_id=conversation.assigned_agent_id
    )
    return entry


def conversation_open(*, contact: Contact, service: Service | None = None, agent=None) -> tuple[Conversation, bool]:
    """Open a conversation for ``contact``, or join the one already open.

    Returns ``(conversation, created)``. The source document's rule: a new
    call, SMS or email from a contact with an open conversation is added to
    it. A partial unique index allows one open conversation per contact, so
    two arrivals racing each other also end up in one conversation.
    """
    existing = Conversation.objects.open().filter(contact=contact).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(contact=contact, service=service, assigned_agent=agent)
            _entry(conversation, TimelineEntry.Kind.OPENED, actor=agent)
    except IntegrityError:
        return Conversation.objects.open().get(contact=contact), False
    contact_touch(contact=contact)
    return conversation, True


@transaction.atomic
def interaction_start(
    *,
    conversation: Conversation,
    medium: str,
    direction: str,
    service: Service | None = None,
    agent=None,
    state: str = Interaction.State.QUEUED,
) -> Interaction:
    """Add a media interaction to an open conversation."""
    if not conversation.is_open:
        raise ValidationError(_("The conversation is closed."))
    if state not in (Interaction.State.QUEUED, Interaction.State.OFFERED, Interaction.State.ACTIVE):
        raise ValidationError(_("An interaction cannot start in state “%(state)s”.") % {"state": state})
    now = timezone.now()
    interaction = Interaction.objects.create(
        conversation=conversation,
        medium=medium,
        direction=direction,
        service=service or conversation.service,
        agent=agent,
        state=state,
        created_at=now,
        answered_at=now if state == Interaction.State.ACTIVE else None,
    )
    _entry(
        conversation,
        TimelineEntry.Kind.INTERACTION_STARTED,
        interaction=interaction,
        actor=agent,
        data={"medium": medium, "direction": direction},
    )
    return interaction


@transaction.atomic
def interaction_answer(*, interaction: Interaction, agent) -> Interaction:
    """The agent takes the interaction: it becomes active and the conversation is theirs."""
    interaction = Interaction.objects.select_for_update().select_related("conversation").get(pk=interaction.pk)
    if interaction.state not in (Interaction.State.QUEUED, Interaction.State.OFFERED):
        raise ValidationError(_("This interaction can no longer be answered."))
    interaction.state = Interaction.State.ACTIVE
    interaction.agent = agent
    interaction.answered_at = timezone.now()
    interaction.save(update_fields=["state", "agent", "answered_at"])
    conversation = interaction.conversation
    if conversation.assigned_agent_id != agent.pk:
        conversation.assigned_agent = agent
        conversation.save(update_fields=["assigned_agent"])
        events.conversation_changed(conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id)
    _entry(conversation, TimelineEntry.Kind.INTERACTION_ANSWERED, interaction=interaction, actor=agent)
    return interaction


@transaction.atomic
def interaction_end(*, interaction: Interaction, reason: str = "", actor=None) -> Interaction:
    """End a live interaction.

    One never answered ends as abandoned when the customer gave up
    (``reason="customer_left"``) and as missed otherwise.
    """
    interaction = Interaction.objects.select_for_update().select_related("conversation").get(pk=interaction.pk)
    if not interaction.is_live:
        return interaction
    # Only work the agent actually held needs wrap-up; a transferred chat still on offer was answered by someone else.
    handled = interaction.state in (Interaction.State.ACTIVE, Interaction.State.ON_HOLD)
    if interaction.answered_at is None:
        interaction.state = Interaction.State.ABANDONED if reason == "customer_left" else Interaction.State.MISSED
    else:
        interaction.state = Interaction.State.ENDED
    interaction.ended_at = timezone.now()
    interaction.end_reason = reason[:50]
    interaction.save(update_fields=["state", "ended_at", "end_reason"])
    for offer in interaction.offers.filter(state=Offer.State.PENDING):
        offer.state = Offer.State.CANCELLED
        offer.responded_at = interaction.ended_at
        offer.save(update_fields=["state", "responded_at"])
        events.agent_offers_changed(user_id=offer.agent_id)
    if interaction.agent_id is not None:
        _agent_released(interaction, wrapup=handled)
    _entry(
        interaction.conversation,
        TimelineEntry.Kind.INTERACTION_ENDED,
        interaction=interaction,
        actor=actor,
        data={"medium": interaction.medium, "state": interaction.state, "reason": interaction.end_reason},
    )
    return interaction


def _agent_released(interaction: Interaction, *, wrapup: bool) -> None:
    """The agent's share of this interaction is free again: wrap-up or Ready, and route."""
    # Imported here: routing builds on this module.
    from conversations.routing import route_all_on_commit

    service = interaction.service
    agent_work_ended(
        user=interaction.agent,
        wrapup=wrapup,
        wrapup_seconds=service.wrapup_seconds if service else 0,
    )
    events.agent_conversations_changed(user_id=interaction.agent_id)
    route_all_on_commit(user_id=interaction.agent_id)


def message_record(
    *,
    interaction: Interaction,
    direction: str,
    author_kind: str,
    body: str,
    subject: str = "",
    author_agent=None,
    provider_message_id: str | None = None,
    delivery_status: str | None = None,
    locked: bool = False,
    duplicate_checked: bool = False,
) -> Message:
    """Store one chat/SMS/email item and put it on the conversation's timeline.

    Raises ``DuplicateMessage`` when the provider's id was already recorded
    for this medium; the unique constraint decides, so concurrent duplicates
    also yield exactly one message, and the caller's transaction goes on.
    ``locked``: the caller has just read the interaction (with its
    conversation) under ``select_for_update`` in this transaction. The
    message comes back with its timeline entry as ``entry``.
    ``duplicate_checked``: the caller looked for the provider's id in this
    transaction and found none. The insert then takes no savepoint (two round
    trips): a duplicate stored since by a concurrent transaction raises
    ``IntegrityError`` and spoils the caller's transaction, which the caller
    runs again to find it.
    """
    duplicate: Message | None = None
    refused: ValidationError | None = None
    # No savepoint of its own (two round trips per chat message). What the caller may catch and go on from
    # (a duplicate, an ended interaction) is raised after the block, so its transaction stays usable.
    with transaction.atomic(savepoint=False):
        if not locked:
            # Re-read under lock: the caller's copy may predate another request ending it.
            interaction = interaction_locked(interaction_id=interaction.pk)
        if not interaction.is_live and direction == Direction.OUTBOUND:
            refused = ValidationError(_("This interaction has ended."))
        else:
            message, duplicate = _message_insert(
                interaction=interaction,
                direction=direction,
                author_kind=author_kind,
                body=body,
                subject=subject,
                author_agent=author_agent,
                provider_message_id=provider_message_id,
                delivery_status=delivery_status,
                savepoint=provider_message_id is not None and not duplicate_checked,
            )
    if refused is not None:
        raise refused
    if duplicate is not None:
        raise DuplicateMessage(duplicate)
    return message


def counts_unread_for_agent(message: Message) -> bool:
    """Whether the message counts as unread for the agent until read: a customer's chat message."""
    return message.author_kind == Message.Author.CUSTOMER and message.medium == Medium.CHAT


def _message_insert(
    *,
    interaction: Interaction,
    direction: str,
    author_kind: str,
    body: str,
    subject: str,
    author_agent,
    provider_message_id: str | None,
    delivery_status: str | None,
    savepoint: bool,
) -> tuple[Message | None, Message | None]:
    """The message and its timeline entry; or, when the provider's id is stored already, that message."""
    conversation = interaction.conversation
    if delivery_status is None:
        delivery_status = Message.Status.RECEIVED if direction == Direction.INBOUND else Message.Status.PENDING
    try:
        # A provider's id may arrive twice: only then is a failed insert expected, and survived.
        with transaction.atomic(savepoint=savepoint):
            message = Message.objects.create(
                conversation=conversation,
                interaction=interaction,
                medium=interaction.medium,
                direction=direction,
                author_kind=author_kind,
                author_agent=author_agent,
                subject=subject,
                body=body,
                delivery_status=delivery_status,
                provider_message_id=provider_message_id,
            )
    except IntegrityError:
        if not savepoint:
            raise
        return None, Message.objects.get(medium=interaction.medium, provider_message_id=provider_message_id)
    message.entry = _entry(
        conversation,
        TimelineEntry.Kind.MESSAGE,
        interaction=interaction,
        message=message,
        actor=author_agent,
        unread_for_agent=counts_unread_for_agent(message),
    )
    if direction == Direction.INBOUND:
        _contact_touch_unless_recent(conversation)
    return message, None


# Contacts are listed by their latest activity; within a minute the order hardly changes, and a chat
# message need not write the contact's row each time.
CONTACT_TOUCH_EVERY = timedelta(seconds=60)


def _contact_touch_unless_recent(conversation: Conversation) -> None:
    contact = conversation.contact if Conversation.contact.is_cached(conversation) else None
    now = timezone.now()
    if contact is not None and contact.last_activity_at and now - contact.last_activity_at < CONTACT_TOUCH_EVERY:
        return
    contact_touch(contact_id=conversation.contact_id)


@transaction.atomic
def note_add(*, conversation: Conversation, author, body: str) -> Note:
    body = body.strip()
    if not body:
        raise ValidationError(_("A note cannot be empty."))
    note = Note.objects.create(conversation=conversation, author=author, body=body)
    _entry(conversation, TimelineEntry.Kind.NOTE, note=note, actor=author)
    return note


@transaction.atomic
def conversation_close(
    *, conversation: Conversation, disposition: Disposition | None = None, notes: str = "", closed_by=None
) -> Conversation:
    """Close the conversation into the contact's activity history.

    Live interactions end with it. When the service lists dispositions, the
    one recorded must be among them.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if not conversation.is_open:
        raise ValidationError(_("The conversation is already closed."))
    if disposition is not None and conversation.service_id is not None:
        allowed = conversation.service.dispositions.all()
        if allowed.exists() and not allowed.filter(pk=disposition.pk).exists():
            raise ValidationError(_("This disposition is not available for the conversation's service."))
    for interaction in conversation.interactions.live():
        interaction_end(interaction=interaction, reason="conversation_closed", actor=closed_by)
    conversation.status = Conversation.Status.CLOSED
    conversation.closed_at = timezone.now()
    conversation.disposition = disposition
    conversation.notes = notes
    conversation.save(update_fields=["status", "closed_at", "disposition", "notes"])
    _entry(
        conversation,
        TimelineEntry.Kind.CLOSED,
        actor=closed_by,
        data={"disposition": disposition.name if disposition else ""},
    )
    events.conversation_changed(conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id)
    contact_touch(contact=conversation.contact)
    if conversation.assigned_agent_id is not None:
        events.agent_conversations_changed(user_id=conversation.assigned_agent_id)
        _wrapup_done(conversation.assigned_agent_id, closed_by)
    return conversation


def _wrapup_done(agent_id: int, closed_by) -> None:
    """Wrap-up recorded: After Call Work ends unless another conversation still awaits it."""
    from agents.models import AgentProfile, AgentState

    profile = AgentProfile.objects.filter(user_id=agent_id, state=AgentState.AFTER_CALL_WORK).first()
    if profile is None:
        return
    awaiting = (
        Conversation.objects.open()
        .filter(assigned_agent_id=agent_id)
        .exclude(interactions__state__in=Interaction.LIVE_STATES)
        .exists()
    )
    if not awaiting:
        agent_acw_end(agent=profile, changed_by=closed_by)


@transaction.atomic
def inbound_contact_receive(
    *,
    point_kind: str,
    address: str,
    medium: str,
    service: Service | None = None,
    first_name: str = "",
    last_name: str = "",
) -> Interaction:
    """A customer gets in touch on ``medium`` from ``address``.

    Recognises (or creates) the contact, joins their open conversation or
    opens one, and returns the live interaction of that medium in it, starting
    one when there is none. Text media (chat, SMS, email) keep using their
    live interaction as a thread; every call is an interaction of its own.
    """
    contact, _created = contact_identify(kind=point_kind, value=address, first_name=first_name, last_name=last_name)
    conversation, opened = conversation_open(contact=contact, service=service)
    if not opened:
        live = None
        if medium in THREADED_MEDIA:
            live = conversation.interactions.live().filter(medium=medium).order_by("-created_at").first()
        if live is not None:
            return live
        _entry(conversation, TimelineEntry.Kind.JOINED, data={"medium": medium})
    return interaction_start(conversation=conversation, medium=medium, direction=Direction.INBOUND, service=service)


def canned_response_save(*, owner, form) -> CannedResponse:
    """Store an agent's own canned response from a valid ``CannedResponseForm``."""
    response = form.save(commit=False)
    response.owner = owner
    response.save()
    return response


def canned_response_delete(*, owner, response_id: int) -> bool:
    """Delete one of the agent's own canned responses; shared ones are the admins'."""
    deleted, _rows = CannedResponse.objects.filter(pk=response_id, owner=owner).delete()
    return bool(deleted)
