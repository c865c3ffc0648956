"""Realtime events: exactly the right ones, only after commit, none after a rollback."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import AgentState
from agents.services import agent_state_set
from conversations.models import Direction, Interaction, Message, TimelineEntry
from conversations.services import DuplicateMessage, conversation_close, interaction_answer, message_record
from core import realtime
from core.groups import agent_group, conversation_group
from tests.factories import InteractionFactory, ServiceFactory


class RecordingLayer:
    """Stands in for the channel layer and remembers every group_send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message))


@pytest.fixture
def published(monkeypatch) -> list[tuple[str, dict]]:
    layer = RecordingLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: layer)
    return layer.sent


def _timeline_event(conversation, entry: TimelineEntry) -> tuple[str, dict]:
    return (
        f"conversation.{conversation.uuid}",
        {"type": "conversation.timeline", "conversation": str(conversation.uuid), "entry_id": entry.pk},
    )


def _record_inbound(interaction: Interaction, provider_message_id: str | None = None) -> Message:
    return message_record(
        interaction=interaction,
        direction=Direction.INBOUND,
        author_kind=Message.Author.CUSTOMER,
        body="Can I change my booking?",
        provider_message_id=provider_message_id,
    )


# --- message_record --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_message_record_publishes_timeline_event_after_commit(published, django_capture_on_commit_callbacks):
    interaction = InteractionFactory()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message = _record_inbound(interaction)
        assert published == []

    assert len(callbacks) == 1
    assert published == [_timeline_event(interaction.conversation, message.entry)]
    assert published[0][0] == conversation_group(interaction.conversation.uuid)


@pytest.mark.django_db
def test_message_record_rolled_back_publishes_nothing(published, django_capture_on_commit_callbacks):
    interaction = InteractionFactory()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        _record_inbound(interaction)
        raise RuntimeError("the view failed after recording")

    assert callbacks == []
    assert published == []
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_duplicate_message_publishes_nothing(published, django_capture_on_commit_callbacks):
    interaction = InteractionFactory()
    _record_inbound(interaction, provider_message_id="SM1")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(DuplicateMessage):
        _record_inbound(interaction, provider_message_id="SM1")

    assert callbacks == []
    assert published == []


@pytest.mark.django_db(transaction=True)
def test_message_event_waits_for_the_real_commit(published):
    interaction = InteractionFactory()

    with transaction.atomic():
        message = _record_inbound(interaction)
        assert published == []

    assert published == [_timeline_event(interaction.conversation, message.entry)]


@pytest.mark.django_db(transaction=True)
def test_message_in_a_rolled_back_transaction_is_never_published(published):
    interaction = InteractionFactory()

    with pytest.raises(RuntimeError), transaction.atomic():
        _record_inbound(interaction)
        raise RuntimeError("rolled back")

    assert published == []
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_message_event_reaches_a_channel_in_the_conversation_group(django_capture_on_commit_callbacks, settings):
    """The real in-memory layer: a consumer's channel in the group receives the event."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    interaction = InteractionFactory()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(conversation_group(interaction.conversation.uuid), channel)

    with django_capture_on_commit_callbacks(execute=True):
        message = _record_inbound(interaction)

    received = async_to_sync(layer.receive)(channel)
    assert received == _timeline_event(interaction.conversation, message.entry)[1]
    async_to_sync(layer.flush)()


# --- other conversation events ------------------------------------------------------------------------


@pytest.mark.django_db
def test_answering_publishes_change_and_timeline_events(agent, published, django_capture_on_commit_callbacks):
    interaction = InteractionFactory()

    with django_capture_on_commit_callbacks(execute=True):
        interaction_answer(interaction=interaction, agent=agent.user)

    conversation = interaction.conversation
    entry = conversation.timeline.get(kind=TimelineEntry.Kind.INTERACTION_ANSWERED)
    group = conversation_group(conversation.uuid)
    assert published == [
        (group, {"type": "conversation.changed", "conversation": str(conversation.uuid)}),
        _timeline_event(conversation, entry),
    ]


@pytest.mark.django_db
def test_closing_publishes_entries_then_the_change(published, django_capture_on_commit_callbacks):
    interaction = InteractionFactory(service=ServiceFactory())
    conversation = interaction.conversation

    with django_capture_on_commit_callbacks(execute=True):
        conversation_close(conversation=conversation)

    ended = conversation.timeline.get(kind=TimelineEntry.Kind.INTERACTION_ENDED)
    closed = conversation.timeline.get(kind=TimelineEntry.Kind.CLOSED)
    assert published == [
        _timeline_event(conversation, ended),
        _timeline_event(conversation, closed),
        (
            conversation_group(conversation.uuid),
            {"type": "conversation.changed", "conversation": str(conversation.uuid)},
        ),
    ]


# --- agent state -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_agent_state_set_publishes_agent_state_event(agent, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent_state_set(agent=agent, state=AgentState.READY, changed_by=agent.user)
        assert published == []

    user_id = agent.user_id
    assert published == [(f"agent.{user_id}", {"type": "agent.state", "user_id": user_id})]
    assert published[0][0] == agent_group(user_id)


@pytest.mark.django_db
def test_agent_state_unchanged_publishes_nothing(agent, published, django_capture_on_commit_callbacks):
    agent_state_set(agent=agent, state=AgentState.READY)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        agent_state_set(agent=agent, state=AgentState.READY)

    assert callbacks == []


@pytest.mark.django_db
def test_agent_state_refused_publishes_nothing(agent, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(ValidationError):
        agent_state_set(agent=agent, state=AgentState.BUSY)

    assert callbacks == []
    assert published == []


# --- the publisher itself -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failing_channel_layer_does_not_break_the_committed_write(
    monkeypatch, caplog, django_capture_on_commit_callbacks
):
    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: BrokenLayer())
    interaction = InteractionFactory()

    with django_capture_on_commit_callbacks(execute=True):
        message = _record_inbound(interaction)

    assert Message.objects.get() == message
    assert any(r.name == "core.realtime" and r.levelno >= logging.WARNING for r in caplog.records)
