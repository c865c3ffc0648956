"""The agent socket's conversation events: offers, the list, timeline entries, receipts, typing, re-sync.

Each push must reach the agent it belongs to and nobody else, and a frame
naming someone else's conversation is refused.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from agents.models import AgentState
from agents.services import agent_state_set
from channels_app.webchat.services import chat_agent_message, chat_customer_message, chat_start, chat_typing
from conversations.models import Conversation, Message, Offer
from conversations.routing import offer_accept
from conversations.services import note_add
from core.groups import conversation_group
from tests.agents.test_consumers import connect
from tests.factories import AgentFactory, ServiceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _setup() -> dict:
    service = ServiceFactory(name="Bookings")
    agent = AgentFactory(user__first_name="Anna", user__last_name="Becker")
    agent.services.add(service)
    agent_state_set(agent=agent, state=AgentState.READY)
    # Logged in and Ready, but not on this service: must never see its work.
    other = AgentFactory()
    agent_state_set(agent=other, state=AgentState.READY)
    return {"service": service, "agent": agent, "other": other}


def _chat(service, name="Jane Doe", question="Can I change my flight?"):
    return chat_start(service=service, data={"name": name, "question": question})


def _accepted_chat(service, agent, **kwargs) -> Conversation:
    session = _chat(service, **kwargs)
    offer = Offer.objects.get(interaction=session.interaction, state=Offer.State.PENDING, agent=agent.user)
    offer_accept(offer_id=offer.pk, agent_user=agent.user)
    return Conversation.objects.get(pk=session.conversation_id)


async def _connected(user):
    communicator, connected, _code = await connect(user=user)
    assert connected
    await communicator.receive_from(timeout=5)  # the overview sent on connect
    return communicator


async def _receive_until(communicator, needle: str, timeout: float = 5) -> str:
    """Frames until one contains ``needle`` (several events may be pushed for one change)."""
    while True:
        frame = await communicator.receive_from(timeout=timeout)
        if needle in frame:
            return frame


async def _drain(communicator) -> list[str]:
    frames = []
    while not await communicator.receive_nothing(timeout=0.3):
        frames.append(await communicator.receive_from())
    return frames


async def _send(communicator, frame: dict) -> None:
    await communicator.send_to(text_data=json.dumps(frame))


async def _showing_a_chat():
    """An agent's socket showing one accepted chat, drained: (conversation, communicator, chat session)."""
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator = await _connected(cast["agent"].user)
    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": 10**9})
    await _drain(communicator)
    session = await sync_to_async(conversation.chat_sessions.get)()
    return conversation, communicator, session


async def test_connect_sends_state_offers_and_list_in_one_frame():
    cast = await sync_to_async(_setup)()
    communicator, connected, _ = await connect(user=cast["agent"].user)
    assert connected

    html = await communicator.receive_from(timeout=5)

    assert 'id="agent-state"' in html
    assert 'id="offers"' in html
    assert 'id="active-conversations"' in html
    await communicator.disconnect()


async def test_a_new_offer_is_pushed_to_the_offered_agent_only():
    cast = await sync_to_async(_setup)()
    mine = await _connected(cast["agent"].user)
    theirs = await _connected(cast["other"].user)

    await sync_to_async(_chat)(cast["service"])

    html = await _receive_until(mine, 'id="offers"')
    offer = await sync_to_async(Offer.objects.get)(agent=cast["agent"].user)
    assert f'id="offer-{offer.pk}"' in html
    assert "Jane Doe" in html
    assert "Bookings" in html
    assert await theirs.receive_nothing(timeout=0.5)
    await mine.disconnect()
    await theirs.disconnect()


async def test_accepting_pushes_the_conversation_into_the_list():
    cast = await sync_to_async(_setup)()
    session = await sync_to_async(_chat)(cast["service"])
    communicator = await _connected(cast["agent"].user)
    offer = await sync_to_async(Offer.objects.get)(agent=cast["agent"].user)

    await sync_to_async(offer_accept)(offer_id=offer.pk, agent_user=cast["agent"].user)

    html = await _receive_until(communicator, f'id="acl-{session.conversation.uuid}"')
    assert "Jane Doe" in html
    await _drain(communicator)
    await communicator.disconnect()


async def test_new_entries_of_the_open_conversation_are_pushed_with_the_list():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    mine = await _connected(cast["agent"].user)
    theirs = await _connected(cast["other"].user)
    await _send(mine, {"action": "resync", "conversation": str(conversation.uuid), "after": 10**9})
    await _drain(mine)
    session = await sync_to_async(conversation.chat_sessions.get)()

    message = await sync_to_async(chat_customer_message)(session=session, text="Friday would be <b>great</b>")

    html = await _receive_until(mine, f"beforeend:#timeline-{conversation.uuid}")
    entry_id = await sync_to_async(lambda: message.entry.pk)()
    assert f'id="entry-{entry_id}"' in html
    assert "Friday would be &lt;b&gt;great&lt;/b&gt;" in html
    assert f'id="acl-{conversation.uuid}"' in html
    assert 'id="active-conversations"' not in html, "only the conversation's row of the list is pushed"
    assert 'data-unread="2"' in html
    assert await theirs.receive_nothing(timeout=0.5)
    await mine.disconnect()
    await theirs.disconnect()


async def test_entries_of_a_conversation_not_shown_update_only_the_list():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator = await _connected(cast["agent"].user)
    session = await sync_to_async(conversation.chat_sessions.get)()

    await sync_to_async(chat_customer_message)(session=session, text="Hello?")

    html = await _receive_until(communicator, "Hello?")
    assert "beforeend:#timeline-" not in html
    assert f'id="acl-{conversation.uuid}"' in html
    await communicator.disconnect()


async def test_resync_backfills_the_entries_after_the_last_one_seen():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    session = await sync_to_async(conversation.chat_sessions.get)()
    seen = await sync_to_async(lambda: conversation.timeline.order_by("-id").first().pk)()
    # Written while the tab was away.
    missed = [
        await sync_to_async(chat_customer_message)(session=session, text="Are you there?"),
        await sync_to_async(chat_customer_message)(session=session, text="Hello??"),
    ]
    await sync_to_async(note_add)(conversation=conversation, author=cast["agent"].user, body="call back")
    communicator = await _connected(cast["agent"].user)

    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": seen})

    html = await communicator.receive_from(timeout=5)
    assert 'id="agent-state"' in html
    assert 'id="offers"' in html
    assert 'id="active-conversations"' in html
    ids = [int(i) for i in re.findall(r'data-entry-id="(\d+)"', html)]
    missed_ids = await sync_to_async(lambda: [m.entry.pk for m in missed])()
    assert ids[:2] == missed_ids
    assert len(ids) == 3
    assert all(i > seen for i in ids)
    assert "Are you there?" in html
    assert "call back" in html
    await communicator.disconnect()


async def test_resync_after_a_gap_longer_than_a_page_sends_every_missed_entry(monkeypatch):
    from conversations import selectors

    monkeypatch.setattr(selectors, "RESYNC_PAGE", 2)
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    session = await sync_to_async(conversation.chat_sessions.get)()
    seen = await sync_to_async(lambda: conversation.timeline.order_by("-id").first().pk)()
    missed = [await sync_to_async(chat_customer_message)(session=session, text=f"Missed {n}") for n in range(5)]
    communicator = await _connected(cast["agent"].user)

    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": seen})

    html = await communicator.receive_from(timeout=5)
    ids = [int(i) for i in re.findall(r'data-entry-id="(\d+)"', html)]
    assert ids == [message.entry.pk for message in missed]
    assert all(f"Missed {n}" in html for n in range(5))
    await communicator.disconnect()


def test_entries_after_stop_at_their_limit():
    from conversations import selectors

    cast = _setup()
    conversation = _accepted_chat(cast["service"], cast["agent"])
    session = conversation.chat_sessions.get()
    seen = conversation.timeline.order_by("-id").first().pk
    missed = [chat_customer_message(session=session, text=f"Missed {n}") for n in range(5)]

    entries = selectors.conversation_entries_after(conversation=conversation, after_id=seen, limit=3)

    assert [entry.pk for entry in entries] == [message.entry.pk for message in missed[:3]]


async def test_read_frame_marks_the_customers_messages_read():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator = await _connected(cast["agent"].user)
    last = await sync_to_async(lambda: conversation.timeline.order_by("-id").first().pk)()

    await _send(communicator, {"action": "read", "conversation": str(conversation.uuid), "upto": last})

    # Only the conversation's row of the list is pushed again.
    html = await _receive_until(communicator, f'id="acl-{conversation.uuid}"')
    assert 'id="active-conversations"' not in html
    assert 'data-unread="0"' in html
    await conversation.arefresh_from_db()
    assert conversation.agent_read_upto == last
    statuses = await sync_to_async(
        lambda: set(conversation.messages.filter(author_kind="customer").values_list("delivery_status", flat=True))
    )()
    assert statuses == {Message.Status.READ}
    await communicator.disconnect()


async def test_delivery_marks_of_the_open_conversation_are_refreshed():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator = await _connected(cast["agent"].user)
    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": 10**9})
    await _drain(communicator)
    message = await sync_to_async(chat_agent_message)(
        conversation=conversation, agent_user=cast["agent"].user, text="Yes, Friday works."
    )
    await _drain(communicator)
    last = await sync_to_async(lambda: message.entry.pk)()

    from channels_app.webchat.services import chat_mark_read

    await sync_to_async(chat_mark_read)(conversation=conversation, side="customer", upto_entry_id=last)

    html = await _receive_until(communicator, 'data-update-only="true"')
    assert f'id="entry-{last}"' in html
    assert "delivery-read" in html
    await communicator.disconnect()


async def test_customer_typing_is_shown_in_the_open_conversation():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator = await _connected(cast["agent"].user)
    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": 10**9})
    await _drain(communicator)

    await sync_to_async(chat_typing)(conversation=conversation, who="customer", typing=True)

    html = await communicator.receive_from(timeout=5)
    assert f'id="typing-{conversation.uuid}"' in html
    assert "Jane Doe is typing" in html
    await communicator.disconnect()


async def test_agent_typing_frame_reaches_the_conversation_group():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(conversation_group(conversation.uuid), listener)
    communicator = await _connected(cast["agent"].user)

    await _send(communicator, {"action": "typing", "conversation": str(conversation.uuid), "typing": True})

    event = await layer.receive(listener)
    assert event == {
        "type": "conversation.typing",
        "conversation": str(conversation.uuid),
        "who": "agent",
        "typing": True,
    }
    await communicator.disconnect()


@pytest.mark.parametrize("action", ["resync", "read", "typing"])
async def test_frames_for_another_agents_conversation_are_refused(action):
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator = await _connected(cast["other"].user)
    frame = {"action": action, "conversation": str(conversation.uuid), "after": 0, "upto": 10**6, "typing": True}

    await _send(communicator, frame)

    frames = [await communicator.receive_from(timeout=5)]
    if action == "resync":
        # The agent's own overview still comes, without anything of that conversation.
        assert 'id="agent-state"' in frames[0]
        assert "Jane Doe" not in frames[0]
        assert "Can I change my flight?" not in frames[0]
        frames.append(await communicator.receive_from(timeout=5))
    assert json.loads(frames[-1]) == {"error": "conversation_not_found"}
    await conversation.arefresh_from_db()
    assert conversation.agent_read_upto == 0
    await communicator.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "read", "conversation": "not-a-uuid", "upto": 1},
        {"action": "read", "upto": 1},
        {"action": "read", "conversation": "00000000-0000-0000-0000-000000000000", "upto": "x"},
        {"action": "read", "conversation": "00000000-0000-0000-0000-000000000000", "upto": -1},
        {"action": "typing", "conversation": "00000000-0000-0000-0000-000000000000", "typing": "yes"},
        {"action": "resync", "conversation": "nope", "after": 0},
        {"action": "resync", "conversation": "", "after": [1]},
    ],
)
async def test_malformed_conversation_frames_get_an_error_and_the_socket_keeps_serving(frame):
    cast = await sync_to_async(_setup)()
    communicator = await _connected(cast["agent"].user)

    await _send(communicator, frame)

    assert json.loads(await communicator.receive_from(timeout=5)) == {"error": "malformed_frame"}
    await _send(communicator, {"action": "resync", "conversation": "", "after": 0})
    assert 'id="agent-state"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_a_conversation_transferred_away_leaves_the_open_workspace():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    colleague = await sync_to_async(AgentFactory)()
    await sync_to_async(colleague.services.add)(cast["service"])
    await sync_to_async(agent_state_set)(agent=colleague, state=AgentState.READY)
    communicator = await _connected(cast["agent"].user)
    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": 10**9})
    await _drain(communicator)

    from conversations.routing import conversation_transfer

    await sync_to_async(conversation_transfer)(
        conversation=conversation, from_agent=cast["agent"].user, to_agent=colleague.user, note="refund"
    )

    frames = "".join(await _drain(communicator))
    assert 'id="workspace"' in frames
    assert "no longer in your list" in frames
    assert f'id="acl-{conversation.uuid}"' not in frames.split('id="active-conversations"')[-1]
    await communicator.disconnect()


async def test_a_socket_sending_too_many_frames_is_slowed_down_and_keeps_serving(monkeypatch):
    from agents import consumers

    monkeypatch.setattr(consumers, "FRAME_BUDGET", 3)
    monkeypatch.setattr(consumers, "FRAME_WINDOW", 0.5)
    cast = await sync_to_async(_setup)()
    communicator = await _connected(cast["agent"].user)

    for _ in range(3):
        await _send(communicator, {"action": "resync", "conversation": "", "after": 0})
        assert 'id="agent-state"' in await communicator.receive_from(timeout=5)
    await _send(communicator, {"action": "resync", "conversation": "", "after": 0})
    assert json.loads(await communicator.receive_from(timeout=5)) == {"error": "rate_limited"}

    await asyncio.sleep(0.6)
    await _send(communicator, {"action": "resync", "conversation": "", "after": 0})
    assert 'id="agent-state"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_a_push_builds_the_composer_in_the_sockets_language_like_the_page_does():
    """The wrap-up composer pushed to a German desktop carries the same words (and swap key) as the page.

    Its context holds translated reasons ("no phone number"); built in another language, the key
    differs from the page's and the desktop replaces the wrap-up form the agent is filling in.
    """
    from django.test import Client

    from channels_app.webchat.services import chat_end
    from tests.factories import TEST_PASSWORD

    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator, connected, _ = await connect(
        user=cast["agent"].user, extra_headers=[(b"accept-language", b"de-DE,de;q=0.9")]
    )
    assert connected
    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": 10**9})
    await _drain(communicator)
    chat = await sync_to_async(lambda: conversation.interactions.get())()

    await sync_to_async(chat_end)(interaction=chat, reason="agent_ended", actor=cast["agent"].user)

    pushed = await _receive_until(communicator, "wrapup-form")
    assert "Der Kontakt hat keine Telefonnummer." in pushed
    assert "no phone number" not in pushed

    def page_in_german() -> str:
        client = Client(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
        assert client.login(username=cast["agent"].user.username, password=TEST_PASSWORD)
        return client.get(f"/desktop/c/{conversation.uuid}/").content.decode()

    page = await sync_to_async(page_in_german)()
    key = re.compile(rf'id="composer-{conversation.uuid}"[^>]*data-swap-key="([^"]*)"')
    assert key.search(pushed).group(1) == key.search(page).group(1)
    await communicator.disconnect()


async def test_an_address_added_to_the_contact_offers_its_channel_in_the_open_workspace():
    from contacts.services import contact_point_create

    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    communicator = await _connected(cast["agent"].user)
    await _send(communicator, {"action": "resync", "conversation": str(conversation.uuid), "after": 10**9})
    composer = "".join(await _drain(communicator))
    assert 'name="channel" value="sms" disabled' in composer

    contact = await sync_to_async(lambda: conversation.contact)()
    await sync_to_async(contact_point_create)(
        actor=cast["agent"].user, contact=contact, kind="phone", value="+4930123456"
    )

    pushed = await _receive_until(communicator, f'id="composer-{conversation.uuid}"')
    assert 'name="channel" value="sms">' in pushed
    assert 'id="contact-panel"' in pushed
    assert "+4930123456" in pushed
    await communicator.disconnect()


async def test_a_burst_of_events_is_pushed_in_one_render_with_nothing_left_out():
    """Events name what changed; the desktop renders what a burst named once, so it never queues renders."""
    conversation, communicator, session = await _showing_a_chat()

    def ten_messages() -> list[int]:
        from django.db import transaction

        # One transaction: the ten events are published together when it commits.
        with transaction.atomic():
            return [chat_customer_message(session=session, text=f"part {n}").entry.pk for n in range(10)]

    entry_ids = await sync_to_async(ten_messages)()

    frames = await _drain(communicator)
    pushed = "".join(frames)
    assert len(frames) < 10
    for entry_id in entry_ids:
        assert pushed.count(f'id="entry-{entry_id}"') >= 1
    assert f'id="acl-{conversation.uuid}"' in pushed
    assert 'data-unread="11"' in frames[-1]
    await communicator.disconnect()


async def test_events_that_come_while_the_render_waits_for_a_thread_go_out_with_it():
    """Under load the render takes what is pending when it starts on its thread, not when it was queued."""
    import threading

    from django.conf import settings

    from core.db import websocket_db_executor

    _conversation, communicator, session = await _showing_a_chat()

    # Every database thread of the websockets busy, as under load: the push of the first message waits.
    release = threading.Event()
    busy = [websocket_db_executor().submit(release.wait, 10) for _ in range(settings.WEBSOCKET_DB_THREADS)]
    try:
        entry_ids = []
        for n in range(3):
            # One transaction each: three events, the first of which queues the render.
            message = await sync_to_async(chat_customer_message)(session=session, text=f"while busy {n}")
            entry_ids.append(message.entry.pk)
            await asyncio.sleep(0.05)
        assert await communicator.receive_nothing(timeout=0.2)
    finally:
        release.set()
    for future in busy:
        await asyncio.wrap_future(future)

    frames = await _drain(communicator)
    assert len(frames) == 1
    for entry_id in entry_ids:
        assert frames[0].count(f'id="entry-{entry_id}"') == 1
    assert 'data-unread="4"' in frames[0]
    await communicator.disconnect()
