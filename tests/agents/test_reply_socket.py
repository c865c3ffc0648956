"""Chat replies sent over the agent's websocket: stored once, answered, refused with the reason, never doubled."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from agents import consumers
from channels_app.webchat import services
from conversations.models import Conversation, Message
from tests.agents.test_consumers import connect as connect_agent
from tests.factories import AgentFactory
from tests.webchat.test_consumer import (
    accept_offer,
    isolated_sockets,  # noqa: F401 (fixture)
    receive_until,
    session_of,
    start,
)
from tests.webchat.test_consumer import connect as connect_customer
from tests.webchat.test_consumer import ready_agent as _ready_agent
from tests.webchat.test_consumer import service as _service

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_sockets")]
service = _service
ready_agent = _ready_agent


async def answer(communicator, timeout: float = 5.0) -> dict:
    """The next JSON frame (the socket's HTML pushes in between are skipped)."""
    while True:
        text = await communicator.receive_from(timeout=timeout)
        if text.startswith("{"):
            return json.loads(text)


async def live_chat(service, agent, *, language: bytes | None = None):
    """A customer's socket and the agent's, on an accepted chat; returns both and the conversation."""
    customer, _, _ = await connect_customer()
    session = await sync_to_async(session_of)(await start(customer, service))
    await accept_offer(agent)
    await receive_until(customer, "status", where=lambda f: f["state"] == "active")
    extra = [(b"accept-language", language)] if language else []
    desk, connected, _ = await connect_agent(user=agent.user, extra_headers=extra)
    assert connected
    conversation = await sync_to_async(Conversation.objects.get)(pk=session.conversation_id)
    # The desktop shows the conversation, as after opening it.
    await desk.send_json_to({"action": "resync", "conversation": str(conversation.uuid), "after": 0})
    return customer, desk, conversation


def replies(conversation) -> list[str]:
    agents = Message.objects.filter(conversation=conversation, author_kind=Message.Author.AGENT)
    return list(agents.values_list("body", flat=True))


async def test_a_reply_is_stored_answered_and_reaches_the_customer(service, ready_agent):
    customer, desk, conversation = await live_chat(service, ready_agent)

    await desk.send_json_to(
        {"action": "send", "conversation": str(conversation.uuid), "text": "Hello Anna", "client_id": "reply-0001"}
    )

    sent = await answer(desk)
    entries = await receive_until(customer, "entries")
    assert await sync_to_async(replies)(conversation) == ["Hello Anna"]
    message = await sync_to_async(Message.objects.select_related("entry").get)(body="Hello Anna")
    assert sent == {"sent": "reply-0001", "entry": message.entry.pk}
    assert [(e["author"], e["text"]) for e in entries["entries"]] == [("agent", "Hello Anna")]
    assert message.author_agent_id == ready_agent.user_id
    # The agent's own timeline gets the entry as every message's push.
    html = ""
    while f'id="entry-{message.entry.pk}"' not in html:
        html = await desk.receive_from(timeout=5)


async def test_the_same_reply_sent_again_is_stored_once(service, ready_agent):
    """A resend after a dropped socket, on a new socket, carries the same id: one message, both answered."""
    _customer, desk, conversation = await live_chat(service, ready_agent)
    frame = {"action": "send", "conversation": str(conversation.uuid), "text": "Only once", "client_id": "reply-0002"}
    await desk.send_json_to(frame)
    first = await answer(desk)
    await desk.disconnect()

    again, connected, _ = await connect_agent(user=ready_agent.user)
    assert connected
    await again.send_json_to(frame)
    second = await answer(again)

    assert first == second == {"sent": "reply-0002", "entry": first["entry"]}
    assert await sync_to_async(replies)(conversation) == ["Only once"]
    await again.disconnect()


async def test_a_reply_sent_again_after_the_chat_ended_is_answered_with_the_stored_one(service, ready_agent):
    """The first send was stored, its answer lost; the chat ends before the resend: the resend is confirmed."""
    _customer, desk, conversation = await live_chat(service, ready_agent)
    frame = {"action": "send", "conversation": str(conversation.uuid), "text": "Goodbye", "client_id": "reply-0010"}
    await desk.send_json_to(frame)
    first = await answer(desk)
    await sync_to_async(services.chat_end)(session=await sync_to_async(_session)(conversation), reason="customer_left")

    await desk.send_json_to(frame)
    again = await answer(desk)

    assert again == first == {"sent": "reply-0010", "entry": first["entry"]}
    assert await sync_to_async(replies)(conversation) == ["Goodbye"]
    await desk.send_json_to({**frame, "client_id": "reply-0011"})
    assert (await answer(desk))["error"] == "rejected", "a new reply to the ended chat is still refused"
    await desk.disconnect()


async def test_another_agents_conversation_is_refused_and_nothing_is_stored(service, ready_agent):
    _customer, desk, conversation = await live_chat(service, ready_agent)
    other = await sync_to_async(AgentFactory)()
    theirs, connected, _ = await connect_agent(user=other.user)
    assert connected

    await theirs.send_json_to(
        {"action": "send", "conversation": str(conversation.uuid), "text": "Hijack", "client_id": "reply-0003"}
    )

    refused = await answer(theirs)
    assert refused["error"] == "conversation_not_found"
    assert refused["client_id"] == "reply-0003"
    assert refused["message"]
    assert await sync_to_async(replies)(conversation) == []
    await theirs.disconnect()
    await desk.disconnect()


async def test_a_refused_reply_says_why_in_the_agents_language(service, ready_agent, settings):
    _customer, desk, conversation = await live_chat(service, ready_agent, language=b"de-DE,de;q=0.9")
    settings.CHAT_MAX_MESSAGE_CHARS = 20
    target = str(conversation.uuid)

    await desk.send_json_to({"action": "send", "conversation": target, "text": "x" * 21, "client_id": "reply-0004"})
    too_long = await answer(desk)
    await desk.send_json_to({"action": "send", "conversation": target, "text": "   ", "client_id": "reply-0005"})
    empty = await answer(desk)
    await sync_to_async(services.chat_end)(session=await sync_to_async(_session)(conversation), reason="customer_left")
    frame = {"action": "send", "conversation": target, "text": "Still there?", "client_id": "reply-0006"}
    await desk.send_json_to(frame)
    ended = await answer(desk)

    assert (too_long["error"], too_long["client_id"]) == ("rejected", "reply-0004")
    assert "zu lang" in too_long["message"]
    assert (empty["error"], empty["client_id"]) == ("rejected", "reply-0005")
    assert (ended["error"], ended["client_id"]) == ("rejected", "reply-0006")
    assert "Chat" in ended["message"] and "There is" not in ended["message"]
    assert await sync_to_async(replies)(conversation) == []
    await desk.disconnect()


def _session(conversation):
    from channels_app.webchat.models import ChatSession

    return ChatSession.objects.get(conversation=conversation)


async def test_while_the_database_work_is_far_behind_a_reply_is_refused_to_send_again(
    service, ready_agent, monkeypatch
):
    _customer, desk, conversation = await live_chat(service, ready_agent)
    frame = {"action": "send", "conversation": str(conversation.uuid), "text": "Wait", "client_id": "reply-0007"}
    monkeypatch.setattr(consumers, "websocket_overloaded", lambda: True)

    await desk.send_json_to(frame)
    busy = await answer(desk)
    assert (busy["error"], busy["client_id"]) == ("busy", "reply-0007")
    assert await sync_to_async(replies)(conversation) == []

    monkeypatch.setattr(consumers, "websocket_overloaded", lambda: False)
    await desk.send_json_to(frame)
    assert (await answer(desk))["sent"] == "reply-0007"
    assert await sync_to_async(replies)(conversation) == ["Wait"]
    await desk.disconnect()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"text": "Hi"}, {"error": "malformed_frame"}),
        ({"text": "Hi", "client_id": "short"}, {"error": "malformed_frame"}),
        ({"text": "Hi", "client_id": "has spaces in it"}, {"error": "malformed_frame"}),
        ({"text": ["Hi"], "client_id": "reply-0008"}, {"error": "malformed_frame", "client_id": "reply-0008"}),
        (
            {"text": "Hi", "client_id": "reply-0009", "conversation": "not-a-uuid"},
            {"error": "malformed_frame", "client_id": "reply-0009"},
        ),
    ],
)
async def test_malformed_replies_get_an_error_and_store_nothing(service, ready_agent, frame, expected):
    _customer, desk, conversation = await live_chat(service, ready_agent)
    await desk.send_json_to({"action": "send", "conversation": str(conversation.uuid), **frame})

    error = await answer(desk)

    assert {key: error[key] for key in expected} == expected
    assert await sync_to_async(replies)(conversation) == []
    await desk.disconnect()
