"""The customer's chat websocket: starting, resuming, messages both ways, receipts, limits, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.utils import timezone

from agents.models import AgentState
from agents.services import agent_state_set
from channels_app.webchat import services
from channels_app.webchat.consumers import CustomerChatConsumer
from channels_app.webchat.models import ChatSession
from config.asgi import application
from conversations.models import Conversation, Direction, Interaction, Medium, Message, Offer
from conversations.routing import conversation_transfer, offer_accept
from conversations.services import interaction_start, message_record, note_add
from core.groups import agent_group
from tests.factories import AgentFactory, ServiceFactory
from tests.webchat.silence import customer_silent_since

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_sockets")]

HOST = (b"host", b"127.0.0.1:8000")
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
FIELDS = {"name": "Anna Berg", "email": "anna@example.com", "question": "Can I change my booking?"}


_OPENED: list[WebsocketCommunicator] = []


@pytest.fixture
async def isolated_sockets():
    """A fresh channel layer for this test's event loop; every consumer stopped in it afterwards.

    The layer object is cached per process while each test has its own loop.
    channels_redis keeps loop-bound state on it (a receive lock, a per-process
    channel lock whose waiters leak a count when cancelled at disconnect),
    which would break the next test's sockets.
    """
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    while _OPENED:
        communicator = _OPENED.pop()
        with contextlib.suppress(Exception):
            await communicator.disconnect()
    cleaners = list(getattr(get_channel_layer(), "receive_cleaners", []))
    if cleaners:
        await asyncio.wait(cleaners, timeout=5)
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


async def connect(*, origin=ORIGIN, extra_headers=()) -> tuple[WebsocketCommunicator, bool, object]:
    headers = [HOST]
    if origin is not None:
        headers.append(origin)
    headers.extend(extra_headers)
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    _OPENED.append(communicator)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def receive_until(communicator, frame_type: str, *, where=None, timeout: float = 5.0) -> dict:
    """The next frame of ``frame_type`` (matching ``where``), skipping others."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no {frame_type} frame within {timeout} s")
        frame = await communicator.receive_json_from(timeout=remaining)
        if frame["type"] == frame_type and (where is None or where(frame)):
            return frame


async def drain(communicator, timeout: float = 0.3) -> list[dict]:
    frames = []
    while not await communicator.receive_nothing(timeout=timeout):
        frames.append(await communicator.receive_json_from())
    return frames


async def start(communicator, service, *, fields=None, visitor=None) -> dict:
    """Send the pre-chat form; returns every frame up to and including the receipts that end the sync."""
    await communicator.send_json_to(
        {"type": "start", "service": service.slug, "visitor": visitor, "fields": fields or FIELDS}
    )
    frames = {}
    for expected in ("session", "status", "entries", "receipts"):
        frame = await communicator.receive_json_from(timeout=5)
        assert frame["type"] == expected, frame
        frames[expected] = frame
    return frames


@pytest.fixture
def service(db):
    return ServiceFactory(name="Bookings", slug="bookings")


@pytest.fixture
def ready_agent(service):
    agent = AgentFactory(user__first_name="Lena")
    agent.services.add(service)
    agent_state_set(agent=agent, state=AgentState.READY)
    return agent


@sync_to_async
def accept_offer(agent) -> Interaction:
    offer = Offer.objects.get(agent=agent.user, state=Offer.State.PENDING)
    return offer_accept(offer_id=offer.pk, agent_user=agent.user)


def session_of(frames: dict) -> ChatSession:
    return services.session_from_token(frames["session"]["token"])


# --- starting and resuming -------------------------------------------------------------------------------


async def test_start_creates_session_conversation_and_queued_chat(service):
    communicator, connected, _ = await connect()
    assert connected

    frames = await start(communicator, service)

    session = await sync_to_async(session_of)(frames)
    assert session is not None
    assert frames["session"]["conversation"] == str(session.conversation.uuid)
    assert await sync_to_async(services.visitor_from_token)(frames["session"]["visitor"]) == session.visitor_id
    assert session.interaction.medium == Medium.CHAT
    assert session.interaction.state == Interaction.State.QUEUED
    assert session.conversation.is_open
    assert frames["status"] == {"type": "status", "state": "queued", "position": 1, "agent": None}
    [question] = frames["entries"]["entries"]
    assert question["author"] == "customer"
    assert question["text"] == "Can I change my booking?"
    assert frames["receipts"] == {"type": "receipts", "read_upto": 0}
    await communicator.disconnect()


async def test_queue_position_counts_the_chats_waiting_before(service):
    first, _, _ = await connect()
    await start(first, service)
    second, _, _ = await connect()

    frames = await start(second, service, fields={"name": "Ben", "question": "Hi"})

    assert frames["status"]["position"] == 2
    await first.disconnect()
    await second.disconnect()


async def test_same_visitor_returning_is_the_same_contact(service):
    first, _, _ = await connect()
    frames = await start(first, service, fields={"name": "Ben", "question": "Hi"})
    await first.send_json_to({"type": "end"})
    await receive_until(first, "status", where=lambda f: f["state"] == "ended")
    await first.disconnect()

    second, _, _ = await connect()
    again = await start(
        second, service, fields={"name": "Ben", "question": "Me again"}, visitor=frames["session"]["visitor"]
    )

    one, two = await sync_to_async(lambda: (session_of(frames), session_of(again)))()
    assert one.pk != two.pk
    assert one.contact_id == two.contact_id
    await second.disconnect()


async def test_invalid_pre_chat_form_gets_field_errors_and_socket_keeps_serving(service):
    communicator, _, _ = await connect()
    await communicator.send_json_to({"type": "start", "service": service.slug, "fields": {"email": "not-an-email"}})

    error = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error"
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"name", "email", "question"}
    assert await sync_to_async(ChatSession.objects.count)() == 0
    frames = await start(communicator, service)
    assert frames["status"]["state"] == "queued"
    await communicator.disconnect()


@pytest.mark.parametrize("slug", ["no-such-service", "inactive"])
async def test_start_for_an_unknown_or_inactive_service_is_refused(slug):
    await sync_to_async(ServiceFactory)(slug="inactive", is_active=False)
    communicator, _, _ = await connect()
    await communicator.send_json_to({"type": "start", "service": slug, "fields": FIELDS})

    error = await communicator.receive_json_from(timeout=5)

    assert error["code"] == "unknown_service"
    await communicator.disconnect()


async def test_resume_backfills_every_visible_entry_after_the_last_seen(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    seen = frames["entries"]["entries"][-1]["id"]
    session = await sync_to_async(session_of)(frames)
    await communicator.disconnect()

    # While the customer is away: the agent answers and writes twice.
    await accept_offer(ready_agent)
    for text in ("Hello Anna!", "Which booking is it?"):
        await sync_to_async(services.chat_agent_message)(
            conversation=session.conversation, agent_user=ready_agent.user, text=text
        )

    again, _, _ = await connect()
    await again.send_json_to({"type": "resume", "token": frames["session"]["token"], "after": seen})
    resumed = await receive_until(again, "session")
    status = await receive_until(again, "status")
    entries = await receive_until(again, "entries")

    assert resumed["token"]
    assert status == {"type": "status", "state": "active", "position": None, "agent": "Lena"}
    assert [(e["author"], e["text"]) for e in entries["entries"]] == [
        ("agent", "Hello Anna!"),
        ("agent", "Which booking is it?"),
    ]
    assert all(e["id"] > seen for e in entries["entries"])
    await again.disconnect()


async def test_resume_with_zero_sends_the_whole_visible_chat(service):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    await communicator.send_json_to({"type": "message", "text": "Are you there?"})
    await receive_until(communicator, "entries")
    await communicator.disconnect()

    again, _, _ = await connect()
    await again.send_json_to({"type": "resume", "token": frames["session"]["token"], "after": 0})
    entries = await receive_until(again, "entries")

    assert [e["text"] for e in entries["entries"]] == ["Can I change my booking?", "Are you there?"]
    await again.disconnect()


def _groups_snapshot():
    layer = get_channel_layer()
    groups = getattr(layer, "groups", None)
    if groups is None:  # Redis: membership is not inspectable cheaply; the close is asserted instead.
        return None
    return {name: set(members) for name, members in groups.items() if members}


class _EightDaysAgoSigner(signing.TimestampSigner):
    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time()) - 8 * 86400)


def _expired_token(session) -> str:
    """A session token signed eight days ago (sessions last seven)."""
    return _EightDaysAgoSigner(salt=services.SESSION_SALT).sign_object(str(session.public_id), compress=True)


@pytest.mark.parametrize("kind", ["tampered", "visitor_token", "expired", "unknown_session", "garbage"])
async def test_forged_expired_or_foreign_tokens_are_refused_and_join_nothing(service, kind):
    owner, _, _ = await connect()
    frames = await start(owner, service)
    session = await sync_to_async(session_of)(frames)
    token = {
        "tampered": frames["session"]["token"][:-3] + "abc",
        "visitor_token": frames["session"]["visitor"],
        "expired": await sync_to_async(_expired_token)(session),
        "unknown_session": signing.dumps(str(uuid.uuid4()), salt=services.SESSION_SALT, compress=True),
        "garbage": "not-a-token",
    }[kind]
    before = _groups_snapshot()

    intruder, _, _ = await connect()
    await intruder.send_json_to({"type": "resume", "token": token, "after": 0})

    error = await intruder.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "invalid_session"
    assert await intruder.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    assert _groups_snapshot() == before
    await owner.disconnect()


async def test_a_token_only_reaches_its_own_session(service):
    anna, _, _ = await connect()
    anna_frames = await start(anna, service)
    ben, _, _ = await connect()
    ben_frames = await start(ben, service, fields={"name": "Ben", "question": "Ben's private question"})

    await anna.send_json_to({"type": "message", "text": "Anna's private message"})
    await receive_until(anna, "entries")

    assert await ben.receive_nothing(timeout=0.5)
    assert anna_frames["session"]["conversation"] != ben_frames["session"]["conversation"]
    await anna.disconnect()
    await ben.disconnect()


async def test_someone_typing_another_customers_email_does_not_get_their_live_chat(service):
    anna, _, _ = await connect()
    anna_frames = await start(anna, service)
    stranger, _, _ = await connect()

    frames = await start(stranger, service, fields={**FIELDS, "question": "Show me Anna's chat"})

    assert frames["session"]["token"] != anna_frames["session"]["token"]
    assert [e["text"] for e in frames["entries"]["entries"]] == ["Show me Anna's chat"]
    assert await anna.receive_nothing(timeout=0.5)
    await anna.disconnect()
    await stranger.disconnect()


async def test_socket_without_start_or_resume_is_closed_after_the_timeout(monkeypatch):
    monkeypatch.setattr(CustomerChatConsumer, "start_timeout", 0.2)
    communicator, connected, _ = await connect()
    assert connected

    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": 4401}


async def test_frames_before_start_are_refused_but_ping_is_answered(service):
    communicator, _, _ = await connect()
    await communicator.send_json_to({"type": "message", "text": "hello"})
    assert (await communicator.receive_json_from(timeout=5))["code"] == "not_started"
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
    await communicator.disconnect()


async def test_second_start_on_the_same_socket_is_refused(service):
    communicator, _, _ = await connect()
    await start(communicator, service)
    await communicator.send_json_to({"type": "start", "service": service.slug, "fields": FIELDS})

    assert (await communicator.receive_json_from(timeout=5))["code"] == "already_started"
    assert await sync_to_async(ChatSession.objects.count)() == 1
    await communicator.disconnect()


async def test_socket_without_origin_is_refused():
    _communicator, connected, _code = await connect(origin=None)
    assert not connected


async def test_socket_from_foreign_origin_is_refused():
    _communicator, connected, _code = await connect(origin=(b"origin", b"https://evil.example"))
    assert not connected


# --- messages both ways ---------------------------------------------------------------------------------------


async def test_customer_message_is_stored_and_echoed_with_its_client_id(service):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    await communicator.send_json_to({"type": "message", "text": "  My booking is LX-4711  ", "client_id": "c-1"})

    echo = await receive_until(communicator, "entries")

    [entry] = echo["entries"]
    assert entry["client_id"] == "c-1"
    assert entry["author"] == "customer"
    assert entry["text"] == "My booking is LX-4711"
    message = await sync_to_async(Message.objects.get)(entry__id=entry["id"])
    assert message.direction == Direction.INBOUND
    assert message.author_kind == Message.Author.CUSTOMER
    session = await sync_to_async(session_of)(frames)
    assert message.interaction_id == session.interaction_id
    # The event for the same entry is not sent a second time.
    assert [f for f in await drain(communicator) if f["type"] == "entries"] == []
    await communicator.disconnect()


async def test_agent_reply_reaches_the_customer(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)

    await accept_offer(ready_agent)
    status = await receive_until(communicator, "status", where=lambda f: f["state"] == "active")
    assert status["agent"] == "Lena"
    await sync_to_async(services.chat_agent_message)(
        conversation=session.conversation, agent_user=ready_agent.user, text="Hello Anna, how can I help?"
    )

    frame = await receive_until(communicator, "entries")
    [entry] = frame["entries"]
    assert entry["author"] == "agent"
    assert entry["text"] == "Hello Anna, how can I help?"
    assert entry["status"] == Message.Status.SENT
    await communicator.disconnect()


async def test_internal_notes_and_other_media_never_reach_the_customer(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    await accept_offer(ready_agent)
    await receive_until(communicator, "status", where=lambda f: f["state"] == "active")
    await drain(communicator)

    @sync_to_async
    def agent_writes_internally():
        note_add(conversation=session.conversation, author=ready_agent.user, body="VIP; owes us 200 EUR")
        sms = interaction_start(
            conversation=session.conversation,
            medium=Medium.SMS,
            direction=Direction.OUTBOUND,
            agent=ready_agent.user,
            state=Interaction.State.ACTIVE,
        )
        message_record(
            interaction=sms,
            direction=Direction.OUTBOUND,
            author_kind=Message.Author.AGENT,
            author_agent=ready_agent.user,
            body="SMS to the customer's phone",
        )

    await agent_writes_internally()

    leaked = await drain(communicator, timeout=0.7)
    assert [f for f in leaked if f["type"] == "entries"] == []
    assert "VIP" not in json.dumps(leaked)
    await communicator.disconnect()

    again, _, _ = await connect()
    await again.send_json_to({"type": "resume", "token": frames["session"]["token"], "after": 0})
    backlog = await receive_until(again, "entries")
    assert [e["text"] for e in backlog["entries"]] == ["Can I change my booking?"]
    await again.disconnect()


async def test_transfer_shows_a_system_line_without_the_internal_note(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    await accept_offer(ready_agent)
    await receive_until(communicator, "status", where=lambda f: f["state"] == "active")
    other_service = await sync_to_async(ServiceFactory)(name="Refunds", slug="refunds")

    await sync_to_async(conversation_transfer)(
        conversation=session.conversation,
        from_agent=ready_agent.user,
        to_service=other_service,
        note="Customer is rude, careful",
    )

    # Status is read from the database when an event arrives, so it may come before or after the line.
    frames = await drain(communicator, timeout=1.0)
    [line] = [entry for frame in frames if frame["type"] == "entries" for entry in frame["entries"]]
    assert line["author"] == "system"
    assert "rude" not in json.dumps(frames)
    assert [frame["state"] for frame in frames if frame["type"] == "status"][-1] == "queued"
    await communicator.disconnect()


# --- typing and receipts ---------------------------------------------------------------------------------------------


async def test_typing_goes_both_ways_and_is_not_echoed(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    await accept_offer(ready_agent)
    await receive_until(communicator, "status", where=lambda f: f["state"] == "active")
    layer = get_channel_layer()
    agent_channel = await layer.new_channel()
    await layer.group_add(agent_group(ready_agent.user_id), agent_channel)

    await communicator.send_json_to({"type": "typing", "typing": True})

    async def agent_sees_typing():
        while True:
            event = await layer.receive(agent_channel)
            if event["type"] == "conversation.typing":
                return event

    event = await asyncio.wait_for(agent_sees_typing(), timeout=5)
    assert (event["who"], event["typing"]) == ("customer", True)
    assert [f for f in await drain(communicator) if f["type"] == "typing"] == []

    conversation = await sync_to_async(Conversation.objects.get)(pk=session.conversation_id)
    await sync_to_async(services.chat_typing)(conversation=conversation, who="agent", typing=True)
    assert await receive_until(communicator, "typing") == {"type": "typing", "who": "agent", "typing": True}
    await layer.group_discard(agent_group(ready_agent.user_id), agent_channel)
    await communicator.disconnect()


async def test_read_receipt_reaches_the_customer_when_the_agent_has_seen_the_message(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    question_id = frames["entries"]["entries"][0]["id"]
    await accept_offer(ready_agent)
    await receive_until(communicator, "status", where=lambda f: f["state"] == "active")

    conversation = await sync_to_async(Conversation.objects.get)(pk=session.conversation_id)
    await sync_to_async(services.chat_mark_read)(conversation=conversation, side="agent", upto_entry_id=question_id)

    assert await receive_until(communicator, "receipts") == {"type": "receipts", "read_upto": question_id}
    await communicator.disconnect()


async def test_customer_delivered_and_read_frames_mark_the_agents_messages(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    await accept_offer(ready_agent)
    message = await sync_to_async(services.chat_agent_message)(
        conversation=session.conversation, agent_user=ready_agent.user, text="Hello"
    )
    entry = (await receive_until(communicator, "entries"))["entries"][0]

    await communicator.send_json_to({"type": "delivered", "upto": entry["id"]})
    await communicator.send_json_to({"type": "ping"})
    await receive_until(communicator, "pong")
    await sync_to_async(message.refresh_from_db)()
    assert message.delivery_status == Message.Status.DELIVERED

    await communicator.send_json_to({"type": "read", "upto": entry["id"] + 1000})
    await communicator.send_json_to({"type": "ping"})
    await receive_until(communicator, "pong")
    await sync_to_async(message.refresh_from_db)()
    assert message.delivery_status == Message.Status.READ
    conversation = await sync_to_async(Conversation.objects.get)(pk=session.conversation_id)
    # Clamped to what this customer can see.
    assert conversation.customer_read_upto == entry["id"]
    await communicator.disconnect()


# --- limits and bad frames ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "malformed_frame"),
        ("[1, 2]", "malformed_frame"),
        ('{"no": "type"}', "malformed_frame"),
        ('{"type": "explode"}', "unknown_type"),
        (json.dumps({"type": "message", "text": "x" * 20000}), "frame_too_large"),
        ('{"type": "message", "text": 42}', "malformed_frame"),
        ('{"type": "typing", "typing": "yes"}', "malformed_frame"),
        ('{"type": "read", "upto": -1}', "malformed_frame"),
        ('{"type": "delivered", "upto": "7"}', "malformed_frame"),
        ('{"type": "message", "text": "   "}', "empty_message"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_keeps_serving(service, frame, error):
    communicator, _, _ = await connect()
    await start(communicator, service)
    await communicator.send_to(text_data=frame)

    reply = await communicator.receive_json_from(timeout=5)

    assert reply["type"] == "error"
    assert reply["code"] == error
    assert reply["message"]
    await communicator.send_json_to({"type": "message", "text": "still here"})
    assert (await receive_until(communicator, "entries"))["entries"][0]["text"] == "still here"
    await communicator.disconnect()


async def test_message_over_the_length_limit_is_refused_and_not_stored(service, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    communicator, _, _ = await connect()
    await start(communicator, service, fields={"name": "Anna", "question": "Hi"})
    await communicator.send_json_to({"type": "message", "text": "x" * 51, "client_id": "long-1"})

    reply = await communicator.receive_json_from(timeout=5)

    assert reply["code"] == "message_too_long"
    assert reply["client_id"] == "long-1"
    assert "50" in reply["message"]
    assert await sync_to_async(Message.objects.filter(body__startswith="xxx").exists)() is False
    await communicator.disconnect()


async def test_error_messages_are_in_the_clients_language(service):
    communicator, _, _ = await connect(extra_headers=[(b"accept-language", b"de-DE,de;q=0.9")])
    await communicator.send_json_to({"type": "start", "service": service.slug, "fields": {"name": "Anna"}})

    reply = await communicator.receive_json_from(timeout=5)

    assert reply["code"] == "invalid"
    # Django's own catalogue has this one; ours is regenerated by the integrator.
    assert reply["fields"]["question"] == "Dieses Feld ist zwingend erforderlich."
    await communicator.disconnect()


async def test_messages_and_typing_beyond_the_rate_limit_are_refused(service, settings):
    settings.CHAT_RATE_LIMIT_PER_10S = 3
    communicator, _, _ = await connect()
    await start(communicator, service)

    for _ in range(3):
        await communicator.send_json_to({"type": "typing", "typing": True})
    await communicator.send_json_to({"type": "message", "text": "one too many", "client_id": "c-9"})

    errors = [f for f in await drain(communicator, timeout=0.5) if f["type"] == "error"]
    assert [(e["code"], e["client_id"]) for e in errors] == [("rate_limited", "c-9")]
    assert await sync_to_async(Message.objects.filter(body="one too many").exists)() is False
    # Other frames still work.
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
    await communicator.disconnect()


# --- ending and inactivity ---------------------------------------------------------------


async def test_customer_ends_the_chat(service):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)

    await communicator.send_json_to({"type": "end"})

    status = await receive_until(communicator, "status")
    assert status["state"] == "ended"
    session = await sync_to_async(session_of)(frames)
    assert session.interaction.state == Interaction.State.ABANDONED
    await communicator.send_json_to({"type": "message", "text": "hello?"})
    reply = await receive_until(communicator, "error")
    assert reply["code"] == "rejected"
    await communicator.disconnect()


async def test_ended_chat_shows_a_system_line_to_the_customer(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    interaction = await accept_offer(ready_agent)
    await receive_until(communicator, "status", where=lambda f: f["state"] == "active")

    await sync_to_async(services.chat_end)(interaction=interaction, reason="agent_ended", actor=ready_agent.user)

    frames = await drain(communicator, timeout=1.0)
    [line] = [entry for frame in frames if frame["type"] == "entries" for entry in frame["entries"]]
    assert line["author"] == "system"
    assert [frame["state"] for frame in frames if frame["type"] == "status"][-1] == "ended"
    await sync_to_async(session.interaction.refresh_from_db)()
    assert session.interaction.state == Interaction.State.ENDED
    await communicator.disconnect()


async def test_inactivity_warning_is_forwarded_and_the_chat_then_ends(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    await accept_offer(ready_agent)
    await receive_until(communicator, "status", where=lambda f: f["state"] == "active")

    silent_since = timezone.now() - timedelta(seconds=service.chat_inactivity_seconds - 30)
    await sync_to_async(customer_silent_since)(session, silent_since)
    assert await sync_to_async(services.chat_inactivity_sweep)() == (1, 0)

    warning = await receive_until(communicator, "inactivity")
    expected = silent_since + timedelta(seconds=service.chat_inactivity_seconds)
    assert warning["ends_at"] == expected.isoformat()

    long_ago = timezone.now() - timedelta(seconds=service.chat_inactivity_seconds + 1)
    await sync_to_async(customer_silent_since)(session, long_ago)
    assert await sync_to_async(services.chat_inactivity_sweep)() == (0, 1)
    assert (await receive_until(communicator, "status", where=lambda f: f["state"] == "ended"))["state"] == "ended"
    await communicator.disconnect()


async def test_resume_repeats_a_standing_inactivity_warning(service, ready_agent):
    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    await accept_offer(ready_agent)
    await communicator.disconnect()
    silent_since = timezone.now() - timedelta(seconds=service.chat_inactivity_seconds - 30)
    await sync_to_async(customer_silent_since)(session, silent_since)
    await sync_to_async(services.chat_inactivity_sweep)()

    again, _, _ = await connect()
    await again.send_json_to({"type": "resume", "token": frames["session"]["token"], "after": 0})

    warning = await receive_until(again, "inactivity")
    assert warning["ends_at"] == (silent_since + timedelta(seconds=service.chat_inactivity_seconds)).isoformat()
    await again.disconnect()


async def test_starting_chats_is_limited_per_client_address(service, settings):
    settings.RATE_LIMIT_CHAT_START = "2/60"
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    for _chat in range(2):
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[HOST, ORIGIN])
        communicator.scope["client"] = (address, 50000)
        _OPENED.append(communicator)
        assert (await communicator.connect())[0]
        await start(communicator, service)
    third = WebsocketCommunicator(application, "/ws/chat/", headers=[HOST, ORIGIN])
    third.scope["client"] = (address, 50001)
    _OPENED.append(third)
    assert (await third.connect())[0]
    await third.send_json_to({"type": "start", "service": service.slug, "fields": FIELDS})
    frame = await receive_until(third, "error")
    assert frame["code"] == "too_many_chats"
    assert await sync_to_async(ChatSession.objects.count)() == 2
    # The socket keeps serving: a ping still answers.
    await third.send_json_to({"type": "ping"})
    assert (await receive_until(third, "pong"))["type"] == "pong"


async def test_while_the_database_work_is_far_behind_a_message_is_refused_to_send_again(service, monkeypatch):
    """Overload: a message is turned away with "send again" (the page keeps its text), nothing half-stored."""
    from channels_app.webchat import consumers

    communicator, _, _ = await connect()
    frames = await start(communicator, service)
    session = await sync_to_async(session_of)(frames)
    stored_before = await sync_to_async(Message.objects.filter(conversation_id=session.conversation_id).count)()
    monkeypatch.setattr(consumers, "websocket_overloaded", lambda: True)

    await communicator.send_json_to({"type": "message", "text": "Are you there?", "client_id": "c-9"})
    error = await receive_until(communicator, "error")
    await communicator.send_json_to({"type": "typing", "typing": True})
    await communicator.send_json_to({"type": "read", "upto": 10**6})

    assert error["code"] == "busy"
    assert error["client_id"] == "c-9"
    assert "send yours again" in error["message"]
    assert await drain(communicator) == []
    stored = await sync_to_async(Message.objects.filter(conversation_id=session.conversation_id).count)()
    assert stored == stored_before

    monkeypatch.setattr(consumers, "websocket_overloaded", lambda: False)
    await communicator.send_json_to({"type": "message", "text": "Are you there?", "client_id": "c-9"})
    echo = await receive_until(communicator, "entries")
    assert echo["entries"][0]["client_id"] == "c-9"
    await communicator.disconnect()
