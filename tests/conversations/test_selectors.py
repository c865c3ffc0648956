"""Conversation reads: the agent's list, access checks, the timeline and the activity history."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Conversation, Direction, Interaction, Medium, Message, TimelineEntry
from conversations.selectors import (
    contact_activity_history,
    conversation_for_agent,
    conversation_timeline,
    conversations_active_for_agent,
)
from conversations.services import conversation_open, interaction_start, message_record, note_add
from core import realtime
from tests.factories import ContactFactory, ConversationFactory, DispositionFactory, InteractionFactory

pytestmark = pytest.mark.django_db

BASE = timezone.now().replace(microsecond=0) - timedelta(days=30)


@pytest.fixture(autouse=True)
def _quiet_channel_layer(monkeypatch):
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


def _closed(**fields) -> Conversation:
    opened_at = fields.pop("opened_at", BASE)
    return ConversationFactory(
        status=Conversation.Status.CLOSED, opened_at=opened_at, closed_at=opened_at + timedelta(minutes=5), **fields
    )


def _walk_timeline(conversation: Conversation, *, limit: int) -> list[list[TimelineEntry]]:
    pages, after = [], None
    while True:
        page = conversation_timeline(conversation=conversation, after=after, limit=limit)
        if not page:
            return pages
        pages.append(page)
        after = (page[-1].created_at, page[-1].pk)


def _walk_history(contact, *, limit: int) -> list[list[Conversation]]:
    pages, before = [], None
    while True:
        page = contact_activity_history(contact=contact, before=before, limit=limit)
        if not page:
            return pages
        pages.append(page)
        before = (page[-1].opened_at, page[-1].pk)


# --- the agent's Active Conversations List -------------------------------------------------------


def test_active_conversations_lists_only_the_agents_open_conversations(agent, other_agent):
    older = ConversationFactory(assigned_agent=agent.user, opened_at=BASE)
    newer = ConversationFactory(assigned_agent=agent.user, opened_at=BASE + timedelta(minutes=1))
    _closed(assigned_agent=agent.user)
    ConversationFactory(assigned_agent=other_agent.user)
    ConversationFactory(assigned_agent=None)

    assert list(conversations_active_for_agent(agent=agent.user)) == [older, newer]


def test_active_conversations_is_empty_for_an_agent_without_work(agent, other_agent):
    ConversationFactory(assigned_agent=other_agent.user)

    assert list(conversations_active_for_agent(agent=agent.user)) == []


def test_active_conversations_load_contact_and_service_in_one_query(agent, django_assert_num_queries):
    for _ in range(5):
        ConversationFactory(assigned_agent=agent.user)

    with django_assert_num_queries(1):
        rows = [(c.contact.display_name, c.service.name) for c in conversations_active_for_agent(agent=agent.user)]

    assert len(rows) == 5


def test_conversation_for_agent_returns_the_agents_conversation(agent):
    conversation = ConversationFactory(assigned_agent=agent.user)

    assert conversation_for_agent(agent=agent.user, conversation_uuid=conversation.uuid) == conversation
    assert conversation_for_agent(agent=agent.user, conversation_uuid=str(conversation.uuid)) == conversation
    found = conversation_for_agent(agent=agent.user, conversation_uuid=conversation.uuid)
    assert (found.contact.pk, found.service.pk) == (conversation.contact_id, conversation.service_id)


def test_conversation_for_agent_returns_none_for_another_agents_conversation(agent, other_agent):
    theirs = ConversationFactory(assigned_agent=other_agent.user)
    unassigned = ConversationFactory(assigned_agent=None)

    assert conversation_for_agent(agent=agent.user, conversation_uuid=theirs.uuid) is None
    assert conversation_for_agent(agent=agent.user, conversation_uuid=unassigned.uuid) is None
    assert conversation_for_agent(agent=agent.user, conversation_uuid=uuid.uuid4()) is None
    assert conversation_for_agent(agent=agent.user, conversation_uuid="not-a-uuid") is None


# --- the timeline ----------------------------------------------------------------------------------


def test_timeline_keyset_pages_return_every_entry_once_in_order():
    conversation = ConversationFactory()
    other = ConversationFactory()
    # Several entries share a timestamp, and ids do not follow time: the id breaks ties.
    offsets = [5, 0, 3, 3, 3, 1, 0, 7, 3, 2, 5, 6, 1, 4]
    for seconds in offsets:
        TimelineEntry.objects.create(
            conversation=conversation, kind=TimelineEntry.Kind.ASSIGNED, created_at=BASE + timedelta(seconds=seconds)
        )
        TimelineEntry.objects.create(conversation=other, kind=TimelineEntry.Kind.ASSIGNED, created_at=BASE)
    expected = list(
        TimelineEntry.objects.filter(conversation=conversation)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)
    )

    for limit in (1, 3, 4, len(offsets), 100):
        pages = _walk_timeline(conversation, limit=limit)

        assert [entry.pk for page in pages for entry in page] == expected
        assert all(len(page) <= limit for page in pages)


def test_timeline_after_the_last_entry_is_empty():
    conversation = ConversationFactory()
    entry = TimelineEntry.objects.create(conversation=conversation, kind=TimelineEntry.Kind.OPENED)

    assert conversation_timeline(conversation=conversation) == [entry]
    assert conversation_timeline(conversation=conversation, after=(entry.created_at, entry.pk)) == []


def _conversation_with_timeline(size: int, user) -> Conversation:
    """A conversation of ``size`` entries mixing media, messages and notes, as the services write them."""
    conversation, _created = conversation_open(contact=ContactFactory(), agent=user)
    chat = interaction_start(
        conversation=conversation, medium=Medium.CHAT, direction=Direction.INBOUND, agent=user, state="active"
    )
    sms = interaction_start(
        conversation=conversation, medium=Medium.SMS, direction=Direction.OUTBOUND, agent=user, state="active"
    )
    for i in range(size - 3):
        if i % 3 == 1:
            note_add(conversation=conversation, author=user, body=f"note {i}")
        else:
            message_record(
                interaction=chat if i % 2 else sms,
                direction=Direction.OUTBOUND,
                author_kind=Message.Author.AGENT,
                author_agent=user,
                body=f"message {i}",
            )
    assert conversation.timeline.count() == size
    return conversation


@pytest.mark.parametrize("size", [5, 50])
def test_timeline_runs_one_query_whatever_its_size(agent, django_assert_num_queries, size):
    conversation = _conversation_with_timeline(size, agent.user)

    with django_assert_num_queries(1):
        entries = conversation_timeline(conversation=conversation, limit=100)
        shown = [
            (
                entry.kind,
                entry.message.body if entry.message else None,
                entry.note.body if entry.note else None,
                entry.interaction.medium if entry.interaction else None,
                entry.actor.username if entry.actor else None,
            )
            for entry in entries
        ]

    assert len(shown) == size
    assert {kind for kind, *_rest in shown} >= {TimelineEntry.Kind.MESSAGE, TimelineEntry.Kind.NOTE}


@pytest.mark.parametrize("size", [5, 50])
def test_timeline_page_after_a_cursor_runs_one_query(agent, django_assert_num_queries, size):
    conversation = _conversation_with_timeline(size, agent.user)
    first = conversation_timeline(conversation=conversation, limit=2)

    with django_assert_num_queries(1):
        rest = conversation_timeline(conversation=conversation, after=(first[-1].created_at, first[-1].pk))

    assert len(first) + len(rest) == size


# --- the contact's activity history ----------------------------------------------------------------


def test_activity_history_lists_open_and_closed_conversations_across_channels_newest_first(agent):
    contact = ContactFactory()
    by_medium = {}
    for minutes, medium in enumerate([Medium.CHAT, Medium.VOICE, Medium.EMAIL, Medium.SMS]):
        conversation = _closed(contact=contact, opened_at=BASE + timedelta(days=minutes), assigned_agent=agent.user)
        InteractionFactory(
            conversation=conversation,
            medium=medium,
            state=Interaction.State.ENDED,
            created_at=conversation.opened_at,
            ended_at=conversation.closed_at,
        )
        by_medium[medium] = conversation
    still_open = ConversationFactory(contact=contact, opened_at=BASE + timedelta(days=10))
    InteractionFactory(conversation=still_open, medium=Medium.SMS)
    _closed(contact=ContactFactory(), opened_at=BASE + timedelta(days=20))

    history = contact_activity_history(contact=contact)

    assert history == [
        still_open,
        by_medium[Medium.SMS],
        by_medium[Medium.EMAIL],
        by_medium[Medium.VOICE],
        by_medium[Medium.CHAT],
    ]
    assert {c.status for c in history} == {Conversation.Status.OPEN, Conversation.Status.CLOSED}
    media = set(Interaction.objects.filter(conversation__in=history).values_list("medium", flat=True))
    assert media == {Medium.CHAT, Medium.VOICE, Medium.EMAIL, Medium.SMS}


def test_activity_history_keyset_before_returns_every_conversation_once():
    contact = ContactFactory()
    # Ties on opened_at are broken by id, newest id first.
    for days in [0, 2, 2, 2, 1, 5, 3, 3, 4, 0]:
        _closed(contact=contact, opened_at=BASE + timedelta(days=days))
    ConversationFactory(contact=contact, opened_at=BASE + timedelta(days=2))
    expected = list(
        Conversation.objects.filter(contact=contact).order_by("-opened_at", "-id").values_list("pk", flat=True)
    )

    for limit in (1, 2, 3, 11, 20):
        pages = _walk_history(contact, limit=limit)

        assert [c.pk for page in pages for c in page] == expected
        assert all(len(page) <= limit for page in pages)


def test_activity_history_before_the_oldest_is_empty():
    conversation = _closed()

    history = contact_activity_history(contact=conversation.contact, before=(conversation.opened_at, conversation.pk))

    assert history == []


@pytest.mark.parametrize("size", [5, 50])
def test_activity_history_runs_one_query_whatever_its_size(agent, django_assert_num_queries, size):
    contact = ContactFactory()
    disposition = DispositionFactory()
    for i in range(size):
        _closed(
            contact=contact,
            opened_at=BASE + timedelta(hours=i),
            assigned_agent=agent.user,
            disposition=disposition,
        )

    with django_assert_num_queries(1):
        history = contact_activity_history(contact=contact, limit=100)
        rows = [(c.service.name, c.assigned_agent.username, c.disposition.name, c.closed_at) for c in history]

    assert len(rows) == size


def test_the_list_counts_the_customers_chat_messages_after_the_read_marker_as_unread(agent):
    from importlib import import_module

    from django.apps import apps

    from conversations.selectors import acl_for_agent

    user = agent.user
    conversation, _created = conversation_open(contact=ContactFactory(), agent=user)
    chat = interaction_start(
        conversation=conversation, medium=Medium.CHAT, direction=Direction.INBOUND, agent=user, state="active"
    )
    sms = interaction_start(
        conversation=conversation, medium=Medium.SMS, direction=Direction.INBOUND, agent=user, state="active"
    )

    def customer(interaction, body):
        return message_record(
            interaction=interaction, direction=Direction.INBOUND, author_kind=Message.Author.CUSTOMER, body=body
        )

    first = customer(chat, "Hello?")
    customer(chat, "Anyone there?")
    reply = message_record(
        interaction=chat,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=user,
        body="Yes, how can I help?",
    )
    text = customer(sms, "Also by text")
    note_add(conversation=conversation, author=user, body="Regular customer")

    marked = {entry.message_id: entry.unread_for_agent for entry in conversation.timeline.filter(kind="message")}
    assert marked == {first.pk: True, first.pk + 1: True, reply.pk: False, text.pk: False}
    assert [row.unread_count for row in acl_for_agent(agent=user)] == [2]
    Conversation.objects.filter(pk=conversation.pk).update(agent_read_upto=first.entry.pk)
    assert [row.unread_count for row in acl_for_agent(agent=user)] == [1]

    # The migration that added the mark sets it on what was stored before, from the messages.
    TimelineEntry.objects.update(unread_for_agent=False)
    migration = import_module("conversations.migrations.0007_timeline_unread_for_agent")
    migration.mark_customer_chat_messages(apps, None)
    assert {
        entry.message_id: entry.unread_for_agent for entry in conversation.timeline.filter(kind="message")
    } == marked
