"""Conversation tables: the rules the database itself enforces, and small row-local helpers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import Conversation, Direction, Interaction, Medium, Message, Service, TimelineEntry
from tests.factories import ContactFactory, ConversationFactory, InteractionFactory, ServiceFactory

pytestmark = pytest.mark.django_db


def _message(interaction: Interaction, **fields) -> Message:
    defaults = {
        "conversation": interaction.conversation,
        "interaction": interaction,
        "medium": interaction.medium,
        "direction": Direction.INBOUND,
        "author_kind": Message.Author.CUSTOMER,
        "body": "Hello",
        "delivery_status": Message.Status.RECEIVED,
    }
    return Message.objects.create(**(defaults | fields))


# --- conversations ------------------------------------------------------------------------------


def test_contact_can_have_only_one_open_conversation():
    contact = ContactFactory()
    ConversationFactory(contact=contact)

    with pytest.raises(IntegrityError), transaction.atomic():
        ConversationFactory(contact=contact)

    assert Conversation.objects.filter(contact=contact).count() == 1


def test_contact_can_have_many_closed_conversations_and_one_open():
    contact = ContactFactory()
    now = timezone.now()
    for _ in range(3):
        ConversationFactory(contact=contact, status=Conversation.Status.CLOSED, opened_at=now, closed_at=now)
    ConversationFactory(contact=contact)

    assert Conversation.objects.filter(contact=contact).count() == 4


def test_closed_conversation_needs_closed_at():
    with pytest.raises(IntegrityError), transaction.atomic():
        ConversationFactory(status=Conversation.Status.CLOSED, closed_at=None)


def test_open_conversation_cannot_have_closed_at():
    now = timezone.now()

    with pytest.raises(IntegrityError), transaction.atomic():
        ConversationFactory(status=Conversation.Status.OPEN, opened_at=now, closed_at=now)


def test_conversation_cannot_close_before_it_opened():
    now = timezone.now()

    with pytest.raises(IntegrityError), transaction.atomic():
        ConversationFactory(status=Conversation.Status.CLOSED, opened_at=now, closed_at=now - timedelta(seconds=1))


def test_conversation_status_helpers():
    conversation = ConversationFactory()
    now = timezone.now()
    closed = ConversationFactory(status=Conversation.Status.CLOSED, opened_at=now, closed_at=now)

    assert conversation.is_open
    assert not closed.is_open
    assert list(Conversation.objects.open()) == [conversation]
    assert list(Conversation.objects.closed()) == [closed]
    assert str(conversation.contact) in str(conversation)


# --- interactions -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", Interaction.FINAL_STATES)
def test_final_interaction_needs_ended_at(state):
    with pytest.raises(IntegrityError), transaction.atomic():
        InteractionFactory(state=state, ended_at=None)


@pytest.mark.parametrize("state", Interaction.LIVE_STATES)
def test_live_interaction_cannot_have_ended_at(state):
    now = timezone.now()

    with pytest.raises(IntegrityError), transaction.atomic():
        InteractionFactory(state=state, created_at=now, ended_at=now)


@pytest.mark.parametrize("state", Interaction.FINAL_STATES)
def test_final_interaction_with_ended_at_is_stored(state):
    now = timezone.now()
    interaction = InteractionFactory(state=state, created_at=now, ended_at=now)

    assert not interaction.is_live


def test_interaction_cannot_end_before_it_was_created():
    now = timezone.now()

    with pytest.raises(IntegrityError), transaction.atomic():
        InteractionFactory(state=Interaction.State.ENDED, created_at=now, ended_at=now - timedelta(seconds=1))


def test_interaction_cannot_be_answered_before_it_was_created():
    now = timezone.now()

    with pytest.raises(IntegrityError), transaction.atomic():
        InteractionFactory(state=Interaction.State.ACTIVE, created_at=now, answered_at=now - timedelta(seconds=1))


def test_interaction_duration_runs_from_answer_to_end():
    start = timezone.now()
    interaction = InteractionFactory(
        state=Interaction.State.ENDED,
        created_at=start,
        answered_at=start + timedelta(seconds=10),
        ended_at=start + timedelta(seconds=70),
    )

    assert interaction.duration == timedelta(seconds=60)
    assert InteractionFactory().duration is None


def test_live_queryset_lists_only_live_interactions():
    conversation = ConversationFactory()
    live = [InteractionFactory(conversation=conversation, state=state) for state in Interaction.LIVE_STATES]
    now = timezone.now()
    InteractionFactory(conversation=conversation, state=Interaction.State.ENDED, created_at=now, ended_at=now)

    assert list(conversation.interactions.live()) == live
    assert all(interaction.is_live for interaction in live)


# --- messages -----------------------------------------------------------------------------------


def test_message_provider_id_is_unique_per_medium():
    sms = InteractionFactory(medium=Medium.SMS)
    _message(sms, provider_message_id="SM123")

    with pytest.raises(IntegrityError), transaction.atomic():
        _message(sms, provider_message_id="SM123")

    assert Message.objects.filter(provider_message_id="SM123").count() == 1


def test_same_provider_id_on_another_medium_is_allowed():
    sms = InteractionFactory(medium=Medium.SMS)
    email = InteractionFactory(conversation=sms.conversation, medium=Medium.EMAIL)

    _message(sms, provider_message_id="id-1")
    _message(email, provider_message_id="id-1")

    assert Message.objects.filter(provider_message_id="id-1").count() == 2


def test_messages_without_provider_id_are_not_unique():
    chat = InteractionFactory(medium=Medium.CHAT)

    _message(chat, provider_message_id=None)
    _message(chat, provider_message_id=None)

    assert Message.objects.filter(provider_message_id__isnull=True).count() == 2


# --- services -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["share_voice", "share_chat", "share_email", "share_sms"])
@pytest.mark.parametrize("value", [0, 101])
def test_service_share_must_be_between_1_and_100(field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        ServiceFactory(**{field: value})


@pytest.mark.parametrize("value", [1, 100])
def test_service_share_bounds_are_allowed(value):
    service = ServiceFactory(share_voice=value, share_chat=value, share_email=value, share_sms=value)

    assert Service.objects.get(pk=service.pk).share_chat == value


def test_service_share_for_each_medium():
    service = ServiceFactory(share_voice=100, share_chat=25, share_email=20, share_sms=10)

    assert service.share_for(Medium.VOICE) == 100
    assert service.share_for(Medium.VIDEO) == 100
    assert service.share_for(Medium.CHAT) == 25
    assert service.share_for(Medium.EMAIL) == 20
    assert service.share_for(Medium.SMS) == 10


def test_service_accepts_chat_voice_sms_and_email_by_default():
    assert ServiceFactory().media == [Medium.CHAT, Medium.VOICE, Medium.SMS, Medium.EMAIL]


# --- timeline -----------------------------------------------------------------------------------


def test_message_timeline_entry_needs_its_message():
    conversation = ConversationFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        TimelineEntry.objects.create(conversation=conversation, kind=TimelineEntry.Kind.MESSAGE)


def test_note_timeline_entry_needs_its_note():
    conversation = ConversationFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        TimelineEntry.objects.create(conversation=conversation, kind=TimelineEntry.Kind.NOTE)
