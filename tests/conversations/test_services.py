"""Conversation services: open-or-join, interactions, messages, notes and closing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from contacts.models import Contact, ContactPoint
from conversations.models import Conversation, Direction, Interaction, Medium, Message, TimelineEntry
from conversations.services import (
    DuplicateMessage,
    conversation_close,
    conversation_open,
    inbound_contact_receive,
    interaction_answer,
    interaction_end,
    interaction_start,
    message_record,
    note_add,
)
from core import realtime
from tests.factories import (
    ContactFactory,
    ContactPointFactory,
    ConversationFactory,
    DispositionFactory,
    InteractionFactory,
    ServiceFactory,
)

PHONE = ContactPoint.Kind.PHONE
EMAIL = ContactPoint.Kind.EMAIL


@pytest.fixture(autouse=True)
def _quiet_channel_layer(monkeypatch, settings):
    """Events are asserted in test_events.py; here they go nowhere."""
    settings.DEFAULT_PHONE_REGION = "DE"
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


def _kinds(conversation: Conversation) -> list[str]:
    return list(conversation.timeline.order_by("created_at", "id").values_list("kind", flat=True))


def _receive_sms(address: str, **kwargs) -> Interaction:
    return inbound_contact_receive(point_kind=PHONE, address=address, medium=Medium.SMS, **kwargs)


# --- conversation_open ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_conversation_open_creates_an_open_conversation_with_opened_entry(agent):
    contact = ContactFactory()
    service = ServiceFactory()

    conversation, created = conversation_open(contact=contact, service=service, agent=agent.user)

    assert created is True
    assert (conversation.contact, conversation.service, conversation.assigned_agent) == (contact, service, agent.user)
    assert conversation.is_open
    assert conversation.closed_at is None
    assert _kinds(conversation) == [TimelineEntry.Kind.OPENED]


@pytest.mark.django_db
def test_conversation_open_returns_the_open_conversation_of_the_contact():
    contact = ContactFactory()
    first, _created = conversation_open(contact=contact)

    again, created = conversation_open(contact=contact, service=ServiceFactory())

    assert (again, created) == (first, False)
    assert Conversation.objects.filter(contact=contact).count() == 1
    assert _kinds(first) == [TimelineEntry.Kind.OPENED]


@pytest.mark.django_db
def test_conversation_open_after_close_opens_a_new_one():
    contact = ContactFactory()
    first, _created = conversation_open(contact=contact)
    conversation_close(conversation=first)

    second, created = conversation_open(contact=contact)

    assert created is True
    assert second != first
    assert list(Conversation.objects.open().filter(contact=contact)) == [second]


@pytest.mark.django_db
def test_conversation_open_joins_when_the_insert_loses_a_race(monkeypatch):
    """A rival committed between the look-up and the insert: the partial unique index decides."""
    existing = ConversationFactory()
    real_first = QuerySet.first
    missed = []

    def first_misses_the_rival(queryset):
        if queryset.model is Conversation and not missed:
            missed.append(queryset)
            return None
        return real_first(queryset)

    monkeypatch.setattr(QuerySet, "first", first_misses_the_rival)

    conversation, created = conversation_open(contact=existing.contact)

    assert missed
    assert (conversation, created) == (existing, False)
    assert Conversation.objects.count() == 1


@pytest.mark.django_db
def test_conversation_open_moves_the_contact_to_the_top_of_recent_activity():
    contact = ContactFactory(last_activity_at=timezone.now() - timedelta(days=1))
    before = timezone.now()

    conversation_open(contact=contact)

    contact.refresh_from_db()
    assert contact.last_activity_at >= before


# --- inbound_contact_receive: the open-or-join rule ---------------------------------------------


@pytest.mark.django_db
def test_first_sms_opens_conversation_and_interaction():
    service = ServiceFactory()

    interaction = _receive_sms("+49 30 1234567", service=service, first_name="Anna")

    conversation = interaction.conversation
    assert conversation.is_open
    assert conversation.service == service
    assert conversation.contact.first_name == "Anna"
    assert conversation.contact.points.get().value == "+49301234567"
    assert (interaction.medium, interaction.direction, interaction.state) == (
        Medium.SMS,
        Direction.INBOUND,
        Interaction.State.QUEUED,
    )
    assert interaction.service == service
    assert _kinds(conversation) == [TimelineEntry.Kind.OPENED, TimelineEntry.Kind.INTERACTION_STARTED]


@pytest.mark.django_db
@pytest.mark.parametrize("reply_from", ["+49 30 1234567", "030 1234567", "0049301234567"])
def test_sms_reply_joins_open_conversation(reply_from):
    first = _receive_sms("+49 30 1234567")

    reply = _receive_sms(reply_from)

    assert reply == first
    assert Contact.objects.count() == 1
    assert ContactPoint.objects.count() == 1
    assert Conversation.objects.count() == 1
    assert Interaction.objects.count() == 1
    assert _kinds(first.conversation) == [TimelineEntry.Kind.OPENED, TimelineEntry.Kind.INTERACTION_STARTED]


@pytest.mark.django_db
def test_email_during_live_call_joins_conversation_with_new_email_interaction(agent):
    contact = ContactPointFactory(kind=PHONE, value="+49301234567").contact
    ContactPointFactory(contact=contact, kind=EMAIL, value="anna@example.com")
    call = inbound_contact_receive(point_kind=PHONE, address="030 1234567", medium=Medium.VOICE)
    interaction_answer(interaction=call, agent=agent.user)

    email = inbound_contact_receive(point_kind=EMAIL, address="Anna@Example.com", medium=Medium.EMAIL)

    assert email.conversation == call.conversation
    assert email != call
    assert (email.medium, email.direction, email.state) == (Medium.EMAIL, Direction.INBOUND, Interaction.State.QUEUED)
    call.refresh_from_db()
    assert call.state == Interaction.State.ACTIVE
    assert Conversation.objects.count() == 1
    assert _kinds(call.conversation) == [
        TimelineEntry.Kind.OPENED,
        TimelineEntry.Kind.INTERACTION_STARTED,
        TimelineEntry.Kind.INTERACTION_ANSWERED,
        TimelineEntry.Kind.JOINED,
        TimelineEntry.Kind.INTERACTION_STARTED,
    ]
    joined = call.conversation.timeline.get(kind=TimelineEntry.Kind.JOINED)
    assert joined.data == {"medium": Medium.EMAIL}


@pytest.mark.django_db
def test_sms_after_its_interaction_ended_starts_a_new_one_in_the_same_conversation():
    first = _receive_sms("+49 30 1234567")
    interaction_end(interaction=first, reason="expired")

    again = _receive_sms("030 1234567")

    assert again.conversation == first.conversation
    assert again != first
    assert again.is_live
    assert _kinds(first.conversation)[-2:] == [TimelineEntry.Kind.JOINED, TimelineEntry.Kind.INTERACTION_STARTED]


@pytest.mark.django_db
def test_sms_after_the_conversation_closed_opens_a_new_conversation():
    first = _receive_sms("+49 30 1234567")
    conversation_close(conversation=first.conversation)

    again = _receive_sms("+49 30 1234567")

    assert again.conversation != first.conversation
    assert again.conversation.contact == first.conversation.contact
    assert Conversation.objects.open().count() == 1


@pytest.mark.django_db
def test_different_contact_gets_a_different_conversation():
    anna = _receive_sms("+49 30 1234567")
    ben = _receive_sms("+49 30 7654321")

    assert ben.conversation != anna.conversation
    assert ben.conversation.contact != anna.conversation.contact
    assert Conversation.objects.open().count() == 2


@pytest.mark.django_db
def test_inbound_contact_from_invalid_address_writes_nothing():
    with pytest.raises(ValidationError):
        _receive_sms("not a number")

    assert not Contact.objects.exists()
    assert not Conversation.objects.exists()


# --- interactions ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_interaction_start_uses_the_conversation_service_by_default():
    conversation = ConversationFactory()

    interaction = interaction_start(conversation=conversation, medium=Medium.CHAT, direction=Direction.INBOUND)

    assert interaction.service == conversation.service
    entry = conversation.timeline.get()
    assert (entry.kind, entry.interaction, entry.data) == (
        TimelineEntry.Kind.INTERACTION_STARTED,
        interaction,
        {"medium": Medium.CHAT, "direction": Direction.INBOUND},
    )


@pytest.mark.django_db
def test_outbound_interaction_started_active_is_answered_at_once(agent):
    conversation = ConversationFactory(assigned_agent=agent.user)

    sms = interaction_start(
        conversation=conversation,
        medium=Medium.SMS,
        direction=Direction.OUTBOUND,
        agent=agent.user,
        state=Interaction.State.ACTIVE,
    )

    assert sms.state == Interaction.State.ACTIVE
    assert sms.answered_at == sms.created_at


@pytest.mark.django_db
def test_interaction_cannot_start_in_a_closed_conversation():
    now = timezone.now()
    conversation = ConversationFactory(status=Conversation.Status.CLOSED, opened_at=now, closed_at=now)

    with pytest.raises(ValidationError):
        interaction_start(conversation=conversation, medium=Medium.SMS, direction=Direction.OUTBOUND)

    assert not conversation.interactions.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("state", [Interaction.State.ON_HOLD, *Interaction.FINAL_STATES])
def test_interaction_cannot_start_in_a_later_state(state):
    with pytest.raises(ValidationError):
        interaction_start(conversation=ConversationFactory(), medium=Medium.CHAT, direction="inbound", state=state)


@pytest.mark.django_db
def test_answering_assigns_the_conversation_to_the_agent(agent):
    chat = inbound_contact_receive(point_kind=ContactPoint.Kind.WEBCHAT, address="visitor-1", medium=Medium.CHAT)

    interaction_answer(interaction=chat, agent=agent.user)

    chat.refresh_from_db()
    assert (chat.state, chat.agent) == (Interaction.State.ACTIVE, agent.user)
    assert chat.answered_at is not None
    assert Conversation.objects.get(pk=chat.conversation_id).assigned_agent == agent.user


@pytest.mark.django_db
def test_interaction_cannot_be_answered_twice(agent, other_agent):
    chat = InteractionFactory()
    interaction_answer(interaction=chat, agent=agent.user)

    with pytest.raises(ValidationError):
        interaction_answer(interaction=chat, agent=other_agent.user)

    chat.refresh_from_db()
    assert chat.agent == agent.user


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answered", "reason", "final_state"),
    [
        (True, "agent_hung_up", Interaction.State.ENDED),
        (False, "timeout", Interaction.State.MISSED),
        (False, "customer_left", Interaction.State.ABANDONED),
    ],
)
def test_interaction_end_state_follows_whether_it_was_answered(agent, answered, reason, final_state):
    interaction = InteractionFactory()
    if answered:
        interaction_answer(interaction=interaction, agent=agent.user)

    ended = interaction_end(interaction=interaction, reason=reason, actor=agent.user)

    assert ended.state == final_state
    assert ended.ended_at is not None
    assert ended.end_reason == reason
    entry = ended.conversation.timeline.get(kind=TimelineEntry.Kind.INTERACTION_ENDED)
    assert entry.data == {"medium": Medium.CHAT, "state": final_state, "reason": reason}


@pytest.mark.django_db
def test_ending_an_ended_interaction_changes_nothing():
    interaction = interaction_end(interaction=InteractionFactory(), reason="timeout")

    again = interaction_end(interaction=interaction, reason="other")

    assert (again.state, again.end_reason) == (Interaction.State.MISSED, "timeout")
    assert interaction.conversation.timeline.filter(kind=TimelineEntry.Kind.INTERACTION_ENDED).count() == 1


# --- closing ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_closing_ends_live_interactions_and_records_closed_entry(agent):
    disposition = DispositionFactory(name="Problem solved")
    sms = _receive_sms("+49 30 1234567")
    conversation = sms.conversation
    answered = interaction_start(conversation=conversation, medium=Medium.VOICE, direction=Direction.INBOUND)
    interaction_answer(interaction=answered, agent=agent.user)
    never_answered = interaction_start(conversation=conversation, medium=Medium.EMAIL, direction=Direction.INBOUND)

    closed = conversation_close(
        conversation=conversation, disposition=disposition, notes="Rebooked.", closed_by=agent.user
    )

    assert closed.status == Conversation.Status.CLOSED
    assert closed.closed_at is not None
    assert (closed.disposition, closed.notes) == (disposition, "Rebooked.")
    states = dict(conversation.interactions.values_list("pk", "state"))
    assert states == {
        sms.pk: Interaction.State.MISSED,
        answered.pk: Interaction.State.ENDED,
        never_answered.pk: Interaction.State.MISSED,
    }
    assert not conversation.interactions.live().exists()
    assert all(i.end_reason == "conversation_closed" for i in conversation.interactions.all())
    last = conversation.timeline.order_by("created_at", "id").last()
    assert (last.kind, last.actor, last.data) == (
        TimelineEntry.Kind.CLOSED,
        agent.user,
        {"disposition": "Problem solved"},
    )


@pytest.mark.django_db
def test_closing_twice_raises():
    conversation = ConversationFactory()
    conversation_close(conversation=conversation)

    with pytest.raises(ValidationError):
        conversation_close(conversation=conversation)

    assert conversation.timeline.filter(kind=TimelineEntry.Kind.CLOSED).count() == 1


@pytest.mark.django_db
def test_disposition_not_allowed_for_the_service_is_refused():
    service = ServiceFactory()
    service.dispositions.add(DispositionFactory())
    conversation = ConversationFactory(service=service)

    with pytest.raises(ValidationError):
        conversation_close(conversation=conversation, disposition=DispositionFactory())

    conversation.refresh_from_db()
    assert conversation.is_open


@pytest.mark.django_db
def test_disposition_listed_for_the_service_is_accepted():
    service = ServiceFactory()
    allowed = DispositionFactory()
    service.dispositions.add(allowed)

    closed = conversation_close(conversation=ConversationFactory(service=service), disposition=allowed)

    assert closed.disposition == allowed


@pytest.mark.django_db
def test_any_disposition_is_accepted_when_the_service_lists_none():
    closed = conversation_close(conversation=ConversationFactory(), disposition=DispositionFactory())

    assert closed.disposition is not None


# --- messages and notes ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_inbound_message_is_recorded_on_the_timeline():
    sms = _receive_sms("+49 30 1234567")

    message = message_record(
        interaction=sms,
        direction=Direction.INBOUND,
        author_kind=Message.Author.CUSTOMER,
        body="Can I move my flight?",
        provider_message_id="SM1",
    )

    assert (message.conversation, message.medium, message.delivery_status) == (
        sms.conversation,
        Medium.SMS,
        Message.Status.RECEIVED,
    )
    assert message.entry.kind == TimelineEntry.Kind.MESSAGE
    assert message.entry.interaction == sms


@pytest.mark.django_db
def test_outbound_message_starts_pending(agent):
    now = timezone.now()
    chat = InteractionFactory(state=Interaction.State.ACTIVE, agent=agent.user, created_at=now, answered_at=now)

    message = message_record(
        interaction=chat,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=agent.user,
        body="Done!",
    )

    assert message.delivery_status == Message.Status.PENDING
    assert message.entry.actor == agent.user


@pytest.mark.django_db
def test_duplicate_provider_id_raises_duplicate_message_with_the_stored_one():
    sms = _receive_sms("+49 30 1234567")
    stored = message_record(
        interaction=sms, direction=Direction.INBOUND, author_kind="customer", body="Hi", provider_message_id="SM9"
    )

    with pytest.raises(DuplicateMessage) as caught:
        message_record(
            interaction=sms, direction=Direction.INBOUND, author_kind="customer", body="Hi", provider_message_id="SM9"
        )

    assert caught.value.message == stored
    assert Message.objects.filter(provider_message_id="SM9").count() == 1
    assert sms.conversation.timeline.filter(kind=TimelineEntry.Kind.MESSAGE).count() == 1


@pytest.mark.django_db
def test_same_provider_id_on_another_medium_is_recorded():
    sms = _receive_sms("+49 30 1234567")
    chat = interaction_start(conversation=sms.conversation, medium=Medium.CHAT, direction=Direction.INBOUND)

    for interaction in (sms, chat):
        message_record(
            interaction=interaction, direction="inbound", author_kind="customer", body="Hi", provider_message_id="x1"
        )

    assert Message.objects.filter(provider_message_id="x1").count() == 2


@pytest.mark.django_db
def test_outbound_message_into_an_ended_interaction_is_refused(agent):
    sms = interaction_end(interaction=_receive_sms("+49 30 1234567"), reason="timeout")

    with pytest.raises(ValidationError):
        message_record(
            interaction=sms, direction=Direction.OUTBOUND, author_kind="agent", author_agent=agent.user, body="Hi"
        )

    assert not Message.objects.exists()


@pytest.mark.django_db
def test_note_is_added_to_the_timeline(agent):
    conversation = ConversationFactory()

    note = note_add(conversation=conversation, author=agent.user, body="  Customer prefers SMS.  ")

    assert note.body == "Customer prefers SMS."
    assert (note.entry.kind, note.entry.actor) == (TimelineEntry.Kind.NOTE, agent.user)


@pytest.mark.django_db
def test_empty_note_is_refused(agent):
    with pytest.raises(ValidationError):
        note_add(conversation=ConversationFactory(), author=agent.user, body="   ")


# --- concurrency (PostgreSQL: SQLite serialises every writer) --------------------------------------

ON_POSTGRESQL = connection.vendor == "postgresql"
THREADS = 8


def _run_at_once(target, count: int) -> tuple[list, list[BaseException]]:
    """Run ``target(i)`` in ``count`` threads released together; each closes its connection."""
    barrier = threading.Barrier(count)
    results: list = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(target(i))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


@pytest.mark.skipif(not ON_POSTGRESQL, reason="needs PostgreSQL: SQLite runs one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_sms_from_one_number_ends_in_one_conversation():
    spellings = ["+49 30 1234567", "030 1234567", "0049301234567", "+49301234567"]

    results, errors = _run_at_once(lambda i: _receive_sms(spellings[i % len(spellings)]).pk, THREADS)

    assert errors == []
    assert len(results) == THREADS
    assert Contact.objects.count() == 1
    assert ContactPoint.objects.count() == 1
    assert Conversation.objects.open().count() == 1
    assert Conversation.objects.count() == 1
    # Every arrival after the first reuses the live SMS interaction.
    assert set(results) == set(Interaction.objects.values_list("pk", flat=True))
    assert Interaction.objects.count() == 1


@pytest.mark.skipif(not ON_POSTGRESQL, reason="needs PostgreSQL: SQLite runs one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_record_one_message():
    sms = _receive_sms("+49 30 1234567")

    def deliver(_i: int) -> int:
        try:
            return message_record(
                interaction=sms, direction="inbound", author_kind="customer", body="Hi", provider_message_id="SM-dup"
            ).pk
        except DuplicateMessage as duplicate:
            return duplicate.message.pk

    results, errors = _run_at_once(deliver, THREADS)

    assert errors == []
    assert Message.objects.count() == 1
    assert set(results) == {Message.objects.get().pk}
    assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.MESSAGE).count() == 1
