"""Following up from the contact page: join the open conversation, or open an outbound one."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError

from agents.models import AgentProfile, AgentState
from contacts.services import contact_follow_up
from conversations.models import Conversation, Direction, Interaction, Medium, TimelineEntry
from conversations.services import inbound_contact_receive
from core import realtime
from core.groups import agent_group
from tests.contacts.builders import EMAIL, PHONE, WEBCHAT, contact_with_points
from tests.factories import AgentFactory, ContactFactory, ServiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return contact_with_points((PHONE, "+49301234567"), (EMAIL, "anna@example.com"), first_name="Anna")


@pytest.mark.parametrize("medium", [Medium.SMS, Medium.EMAIL])
def test_follow_up_opens_an_outbound_conversation_assigned_to_the_agent(customer, ready_agent, medium):
    conversation = contact_follow_up(actor=ready_agent.user, contact=customer, medium=medium)

    assert conversation.contact == customer
    assert conversation.is_open
    assert conversation.assigned_agent == ready_agent.user
    interaction = conversation.interactions.get()
    assert (interaction.medium, interaction.direction, interaction.state, interaction.agent) == (
        medium,
        Direction.OUTBOUND,
        Interaction.State.ACTIVE,
        ready_agent.user,
    )
    assert interaction.answered_at is not None
    kinds = list(conversation.timeline.order_by("created_at", "id").values_list("kind", flat=True))
    assert kinds == [TimelineEntry.Kind.OPENED, TimelineEntry.Kind.INTERACTION_STARTED]


@pytest.mark.parametrize("medium", [Medium.CHAT, Medium.VOICE])
def test_a_chat_or_call_follow_up_is_refused_while_the_customer_is_not_chatting(ready_agent, medium):
    visitor = contact_with_points((WEBCHAT, "visitor-1"), (PHONE, "+49301234567"))

    with pytest.raises(ValidationError, match="not in a chat with us now") as raised:
        contact_follow_up(actor=ready_agent.user, contact=visitor, medium=medium)

    assert raised.value.code == "not_online"
    assert not Conversation.objects.exists()


def test_a_chat_follow_up_joins_the_chat_the_visitor_has_open(ready_agent):
    visitor = contact_with_points((WEBCHAT, "visitor-1"))
    live = inbound_contact_receive(point_kind=WEBCHAT, address="visitor-1", medium=Medium.CHAT).conversation

    conversation = contact_follow_up(actor=ready_agent.user, contact=visitor, medium=Medium.CHAT)

    assert conversation == live
    assert conversation.interactions.get().medium == Medium.CHAT


def test_follow_up_uses_the_service_given(customer, ready_agent):
    service = ServiceFactory()

    conversation = contact_follow_up(actor=ready_agent.user, contact=customer, medium=Medium.SMS, service=service)

    assert conversation.service == service
    assert conversation.interactions.get().service == service


def test_follow_up_refuses_a_medium_the_service_does_not_handle(customer, ready_agent):
    service = ServiceFactory(media=[Medium.CHAT])

    with pytest.raises(ValidationError):
        contact_follow_up(actor=ready_agent.user, contact=customer, medium=Medium.SMS, service=service)


def test_follow_up_joins_the_open_conversation(customer, ready_agent, other_agent):
    live = inbound_contact_receive(point_kind=PHONE, address="030 1234567", medium=Medium.VOICE).conversation
    Conversation.objects.filter(pk=live.pk).update(assigned_agent=other_agent.user)
    interactions = Interaction.objects.count()

    conversation = contact_follow_up(actor=ready_agent.user, contact=customer, medium=Medium.EMAIL)

    assert conversation == live
    assert Conversation.objects.count() == 1
    assert Interaction.objects.count() == interactions
    assert Conversation.objects.get().assigned_agent == other_agent.user


def test_the_agent_becomes_busy_and_their_list_is_refreshed(
    customer, ready_agent, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []

    class Layer:
        async def group_send(self, group, message):
            sent.append((group, message))

    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: Layer())

    with django_capture_on_commit_callbacks(execute=True):
        contact_follow_up(actor=ready_agent.user, contact=customer, medium=Medium.SMS)

    assert AgentProfile.objects.get(pk=ready_agent.pk).state == AgentState.BUSY
    agent_events = [message["type"] for group, message in sent if group == agent_group(ready_agent.user.pk)]
    assert "agent.conversations" in agent_events


@pytest.mark.parametrize(
    ("points", "medium", "message"),
    [
        ([(EMAIL, "anna@example.com")], Medium.SMS, "no phone number"),
        ([(PHONE, "+49301234567")], Medium.EMAIL, "no email address"),
        ([(PHONE, "+49301234567")], Medium.VIDEO, "cannot be started"),
    ],
)
def test_follow_up_needs_an_address_for_the_medium(ready_agent, points, medium, message):
    contact = contact_with_points(*points)

    with pytest.raises(ValidationError, match=message):
        contact_follow_up(actor=ready_agent.user, contact=contact, medium=medium)

    assert not Conversation.objects.exists()


def test_follow_up_of_a_merged_or_erased_contact_is_refused(customer, ready_agent):
    merged = ContactFactory(merged_into=customer)

    with pytest.raises(ValidationError, match="merged into"):
        contact_follow_up(actor=ready_agent.user, contact=merged, medium=Medium.SMS)


def test_a_logged_out_agent_cannot_follow_up(customer, agent):
    assert agent.state == AgentState.LOGGED_OUT

    with pytest.raises(ValidationError, match="Log in"):
        contact_follow_up(actor=agent.user, contact=customer, medium=Medium.SMS)


@pytest.mark.parametrize("who", ["supervisor", "plain_user", "anonymous", "none"])
def test_only_agents_can_follow_up(customer, who, request):
    actor = (
        {"anonymous": AnonymousUser(), "none": None}[who]
        if who in ("anonymous", "none")
        else request.getfixturevalue(who)
    )

    with pytest.raises(PermissionDenied):
        contact_follow_up(actor=actor, contact=customer, medium=Medium.SMS)

    assert not Conversation.objects.exists()


def test_a_supervisor_who_is_also_an_agent_can_follow_up(customer, supervisor):
    AgentFactory(user=supervisor, state=AgentState.READY)

    conversation = contact_follow_up(actor=supervisor, contact=customer, medium=Medium.SMS)

    assert conversation.assigned_agent == supervisor
