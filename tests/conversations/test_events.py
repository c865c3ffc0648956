"""Realtime events: exactly the right ones, only after commit, none after a rollback."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import AgentProfile, AgentState
from agents.services import agent_state_set
from conversations.models import Direction, Interaction, Message, Offer, TimelineEntry
from conversations.routing import offer_accept, route_next
from conversations.services import DuplicateMessage, conversation_close, interaction_answer, message_record
from core import realtime
from core.groups import agent_group, conversation_group, service_group
from tests.factories import AgentFactory, InteractionFactory, ServiceFactory


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


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Offer and wrap-up timers are Celery tasks scheduled on commit; they are not events."""
    monkeypatch.setattr("conversations.tasks.offer_expire.apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr("agents.tasks.agent_acw_expire.apply_async", lambda *args, **kwargs: None)


def _timeline_event(conversation, entry: TimelineEntry) -> tuple[str, dict]:
    return (
        f"conversation.{conversation.uuid}",
        {"type": "conversation.timeline", "conversation": str(conversation.uuid), "entry_id": entry.pk},
    )


def _to_conversation_and_agent(event: tuple[str, dict], agent_id: int) -> list[tuple[str, dict]]:
    """A conversation event goes to the conversation's group, then to its agent's group."""
    return [event, (agent_group(agent_id), event[1])]


def _changed(conversation) -> tuple[str, dict]:
    return (
        conversation_group(conversation.uuid),
        {"type": "conversation.changed", "conversation": str(conversation.uuid)},
    )


def _agent_event(kind: str, user_id: int) -> tuple[str, dict]:
    return (agent_group(user_id), {"type": f"agent.{kind}", "user_id": user_id})


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
    assert published == [
        *_to_conversation_and_agent(_changed(conversation), agent.user_id),
        *_to_conversation_and_agent(_timeline_event(conversation, entry), agent.user_id),
    ]
    assert [group for group, _event in published] == [
        conversation_group(conversation.uuid),
        agent_group(agent.user_id),
    ] * 2


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


@pytest.mark.django_db
def test_closing_an_assigned_conversation_tells_the_agent_too(agent, published, django_capture_on_commit_callbacks):
    service = ServiceFactory(wrapup_seconds=0)
    interaction = InteractionFactory(service=service)
    interaction_answer(interaction=interaction, agent=agent.user)
    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)
    conversation = interaction.conversation
    user_id = agent.user_id

    with django_capture_on_commit_callbacks(execute=True):
        conversation_close(conversation=conversation, closed_by=agent.user)
        assert published == []

    ended = conversation.timeline.get(kind=TimelineEntry.Kind.INTERACTION_ENDED)
    closed = conversation.timeline.get(kind=TimelineEntry.Kind.CLOSED)
    assert published == [
        # The agent's last interaction ended without wrap-up: Ready again.
        _agent_event("state", user_id),
        _agent_event("conversations", user_id),
        *_to_conversation_and_agent(_timeline_event(conversation, ended), user_id),
        *_to_conversation_and_agent(_timeline_event(conversation, closed), user_id),
        *_to_conversation_and_agent(_changed(conversation), user_id),
        _agent_event("conversations", user_id),
    ]


@pytest.mark.django_db
def test_closing_rolled_back_publishes_nothing(agent, published, django_capture_on_commit_callbacks):
    interaction = InteractionFactory(service=ServiceFactory())
    interaction_answer(interaction=interaction, agent=agent.user)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        conversation_close(conversation=interaction.conversation, closed_by=agent.user)
        raise RuntimeError("the view failed after closing")

    assert callbacks == []
    assert published == []
    interaction.conversation.refresh_from_db()
    assert interaction.conversation.is_open


# --- routing ---------------------------------------------------------------------------------------------


def _ready_agent_for(service) -> AgentProfile:
    profile = AgentFactory()
    profile.services.add(service)
    agent_state_set(agent=profile, state=AgentState.READY)
    return profile


@pytest.mark.django_db
def test_an_offer_tells_the_agent_the_queue_and_the_conversation(published, django_capture_on_commit_callbacks):
    service = ServiceFactory()
    profile = _ready_agent_for(service)
    interaction = InteractionFactory(service=service)

    with django_capture_on_commit_callbacks(execute=True):
        route_next(service=service)
        assert published == []

    assert published == [
        _agent_event("offers", profile.user_id),
        (service_group(service.pk), {"type": "service.queue", "service_id": service.pk}),
        # Nobody is assigned yet: the conversation's own group only.
        _changed(interaction.conversation),
    ]


@pytest.mark.django_db
def test_accepting_an_offer_publishes_assignment_state_offers_and_queue(published, django_capture_on_commit_callbacks):
    service = ServiceFactory()
    profile = _ready_agent_for(service)
    interaction = InteractionFactory(service=service)
    offer = route_next(service=service)
    user_id = profile.user_id

    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent_user=profile.user)
        assert published == []

    conversation = interaction.conversation
    answered = conversation.timeline.get(kind=TimelineEntry.Kind.INTERACTION_ANSWERED)
    assert published == [
        *_to_conversation_and_agent(_changed(conversation), user_id),
        *_to_conversation_and_agent(_timeline_event(conversation, answered), user_id),
        _agent_event("state", user_id),
        _agent_event("offers", user_id),
        _agent_event("conversations", user_id),
        (service_group(service.pk), {"type": "service.queue", "service_id": service.pk}),
    ]


@pytest.mark.django_db
def test_a_refused_accept_publishes_nothing(other_agent, published, django_capture_on_commit_callbacks):
    service = ServiceFactory()
    _ready_agent_for(service)
    InteractionFactory(service=service)
    offer = route_next(service=service)

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(ValidationError):
        offer_accept(offer_id=offer.pk, agent_user=other_agent.user)

    assert callbacks == []
    assert published == []


@pytest.mark.django_db
def test_routing_rolled_back_publishes_nothing(published, django_capture_on_commit_callbacks):
    service = ServiceFactory()
    _ready_agent_for(service)
    InteractionFactory(service=service)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        route_next(service=service)
        raise RuntimeError("rolled back")

    assert callbacks == []
    assert published == []
    assert not Offer.objects.exists()


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
