"""Call-first: “Call us” on the chat page queues a voice conversation that routing offers like a chat."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from agents.models import AgentState
from agents.services import agent_state_set
from channels_app.voice import services
from conversations.models import Conversation, Interaction, Offer
from conversations.routing import agent_can_take, offer_accept
from tests.factories import AgentFactory, ServiceFactory
from tests.voice.helpers import agent_socket, close_all, receive_until, voice_socket

pytestmark = [pytest.mark.django_db(transaction=True)]

FIELDS = {"name": "Carla Call", "email": "carla@example.com"}


@pytest.fixture(autouse=True)
async def sockets_closed():
    yield
    await close_all()


def ready_agent(service):
    agent = AgentFactory(user__first_name="Lena")
    agent.services.add(service)
    agent_state_set(agent=agent, state=AgentState.READY)
    return agent


def test_call_first_queues_a_voice_conversation_offered_with_the_voice_share():
    service = ServiceFactory(slug="bookings")
    agent = ready_agent(service)
    session = services.call_first_start(service=service, data=FIELDS)
    call = session.interaction
    assert (call.medium, call.direction) == ("voice", "inbound")
    offer = Offer.objects.get(interaction=call, state=Offer.State.PENDING)
    assert offer.agent_id == agent.user.pk
    answered = offer_accept(offer_id=offer.pk, agent_user=agent.user)
    assert answered.state == Interaction.State.ACTIVE
    # A whole agent: no further call, and no chat unless the service allows chats during calls.
    second = services.call_first_start(service=service, data={"name": "Other", "email": "o@example.com"})
    assert not Offer.objects.filter(interaction=second.interaction, state=Offer.State.PENDING).exists()
    chat = Interaction(medium="chat", service=service)
    assert agent_can_take(profile=agent, interaction=chat, service=service) is False


def test_call_first_refuses_a_service_without_voice():
    service = ServiceFactory(slug="mail-only", media=["chat", "email"])
    with pytest.raises(services.ValidationError):
        services.call_first_start(service=service, data=FIELDS)


def test_caller_giving_up_in_the_queue_abandons_and_closes_the_empty_conversation():
    service = ServiceFactory(slug="bookings")
    session = services.call_first_start(service=service, data=FIELDS)
    ended = services.call_hangup(call_id=session.interaction_id, role="customer")
    assert ended.state == Interaction.State.ABANDONED
    assert Conversation.objects.get(pk=session.conversation_id).status == Conversation.Status.CLOSED


async def test_call_first_socket_gets_a_token_and_learns_when_an_agent_answers():
    service = await sync_to_async(ServiceFactory)(slug="bookings")
    agent = await sync_to_async(ready_agent)(service)
    agent_ws = await agent_socket(agent.user)
    customer, connected, _ = await voice_socket()
    assert connected
    await customer.send_json_to({"type": "start_call", "service": "bookings", "fields": FIELDS})
    session = await receive_until(customer, "session")
    assert session["call_token"]
    await receive_until(customer, "hello")
    calls = await receive_until(customer, "calls")
    [call] = calls["calls"]
    assert call["state"] in ("queued", "ringing")

    offer = await sync_to_async(Offer.objects.get)(interaction_id=call["id"], state=Offer.State.PENDING)
    await sync_to_async(offer_accept)(offer_id=offer.pk, agent_user=agent.user)
    active = await receive_until(
        customer, "calls", where=lambda f: f["calls"] and f["calls"][0]["state"] == "active", timeout=5
    )
    assert active["calls"][0]["agent"] == "Lena"
    mine = await receive_until(
        agent_ws, "calls", where=lambda f: f["calls"] and f["calls"][0]["state"] == "active", timeout=5
    )
    assert mine["calls"][0]["id"] == call["id"]

    # A reload resumes with the token.
    again, _, _ = await voice_socket()
    await again.send_json_to({"type": "hello", "call_token": session["call_token"]})
    assert (await receive_until(again, "hello"))["role"] == "customer"
    assert (await receive_until(again, "calls"))["calls"][0]["id"] == call["id"]


async def test_call_first_with_invalid_details_is_refused():
    await sync_to_async(ServiceFactory)(slug="bookings")
    customer, _, _ = await voice_socket()
    await customer.send_json_to({"type": "start_call", "service": "bookings", "fields": {"email": "not-an-email"}})
    error = await receive_until(customer, "error")
    assert error["code"] == "invalid"
    assert "name" in error["fields"]
    await customer.send_json_to({"type": "sync"})
    assert (await receive_until(customer, "error"))["code"] == "not_authenticated"


async def test_forged_call_token_is_refused():
    customer, _, _ = await voice_socket()
    await customer.send_json_to({"type": "hello", "call_token": "forged"})
    assert (await receive_until(customer, "error"))["code"] == "invalid_session"
