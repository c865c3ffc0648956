"""Supervisor actions reaching desktops, and the supervisor's own live views, over real websockets."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from agents.models import AgentProfile, AgentState
from agents.services import agent_state_set
from channels_app.webchat.services import chat_customer_message
from conversations.models import Conversation, Interaction, Offer
from conversations.routing import offer_accept
from core.models import AuditEntry
from tests.conversations.test_desktop_consumer import _accepted_chat, _chat, _drain, _receive_until, _setup
from tests.factories import TEST_PASSWORD, AgentFactory, NotReadyReasonFactory, SupervisorFactory
from tests.supervisor.test_permissions import ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HTTP_HX_REQUEST": "true"}


def _supervisor_client() -> tuple[Client, object]:
    supervisor = SupervisorFactory(first_name="Sara", last_name="Visor")
    client = Client()
    assert client.login(username=supervisor.username, password=TEST_PASSWORD)
    return client, supervisor


async def _connected(path: str, user):
    communicator, connected, _code = await ws_connect(path, user=user)
    assert connected, path
    await communicator.receive_from(timeout=5)
    return communicator


async def test_forced_state_reaches_the_agents_desktop_at_once():
    cast = await sync_to_async(_setup)()
    agent = cast["agent"]
    await sync_to_async(NotReadyReasonFactory)(name="Coaching", code="coaching")
    client, supervisor = await sync_to_async(_supervisor_client)()
    desktop = await _connected("/ws/agent/", agent.user)

    url = reverse("supervisor:agent-state", args=[agent.pk])
    response = await sync_to_async(client.post)(url, {"choice": "not_ready:coaching"}, **HTMX)

    assert response.status_code == 200
    assert 'id="agents-board"' in response.content.decode()
    html = await _receive_until(desktop, 'id="agent-state"')
    assert 'data-state="not_ready"' in html
    assert "Coaching" in html
    entry = await sync_to_async(AuditEntry.objects.get)(action="agent_state_forced")
    assert (entry.actor_id, entry.object_id, entry.details["to"]) == (supervisor.pk, str(agent.pk), "not_ready")
    log = await sync_to_async(lambda: agent.state_log.first())()
    assert log.changed_by_id == supervisor.pk

    # Logged out by the supervisor: the desktop shows it too.
    await sync_to_async(client.post)(url, {"choice": "logged_out"}, **HTMX)
    html = await _receive_until(desktop, 'id="agent-state"')
    assert 'data-state="logged_out"' in html
    await desktop.disconnect()


async def test_forcing_a_state_is_refused_while_the_agent_is_mid_interaction():
    cast = await sync_to_async(_setup)()
    agent = cast["agent"]
    await sync_to_async(_accepted_chat)(cast["service"], agent)
    client, _supervisor = await sync_to_async(_supervisor_client)()

    response = await sync_to_async(client.post)(
        reverse("supervisor:agent-state", args=[agent.pk]), {"choice": "logged_out"}, **HTMX
    )

    assert response.status_code == 422
    assert "in the middle of an interaction" in response.content.decode()
    assert (await sync_to_async(AgentProfile.objects.get)(pk=agent.pk)).state == AgentState.BUSY
    assert not await sync_to_async(AuditEntry.objects.filter(action="agent_state_forced").exists)()


async def test_agents_board_shows_an_accepted_chat_live():
    cast = await sync_to_async(_setup)()
    agent = cast["agent"]
    supervisor = await sync_to_async(SupervisorFactory)()
    board = await _connected("/ws/supervisor/agents/", supervisor)
    queues = await _connected("/ws/supervisor/queues/", supervisor)

    session = await sync_to_async(_chat)(cast["service"])
    html = await _receive_until(queues, 'id="queues-board"')
    assert 'data-offers="1"' in html
    offer = await sync_to_async(Offer.objects.get)(interaction=session.interaction)
    await _drain(board)
    await sync_to_async(offer_accept)(offer_id=offer.pk, agent_user=agent.user)

    html = await _receive_until(board, 'data-state="busy"')
    row = html[html.index(f'id="agent-row-{agent.pk}"') :]
    row = row[: row.index("</tr>")]
    assert '<td class="num" data-medium="chat">1</td>' in row
    assert "25 %" in row
    assert "Mid-interaction" in row
    await board.disconnect()
    await queues.disconnect()


async def test_board_coalesces_a_burst_of_events_into_few_renders():
    cast = await sync_to_async(_setup)()
    supervisor = await sync_to_async(SupervisorFactory)()
    board = await _connected("/ws/supervisor/agents/", supervisor)

    def flap():
        for _ in range(5):
            agent_state_set(agent=cast["other"], state=AgentState.NOT_READY)
            agent_state_set(agent=cast["other"], state=AgentState.READY)

    await sync_to_async(flap)()
    frames = [await board.receive_from(timeout=5)]
    while not await board.receive_nothing(timeout=1):
        frames.append(await board.receive_from())
    # Ten state changes: one render after the burst, maybe one more for events that arrived during it.
    assert len(frames) <= 2
    assert f'id="agent-row-{cast["other"].pk}"' in frames[-1]
    await board.disconnect()


async def test_monitoring_shows_new_messages_read_only_and_ignores_typing_and_read():
    cast = await sync_to_async(_setup)()
    conversation = await sync_to_async(_accepted_chat)(cast["service"], cast["agent"])
    supervisor = await sync_to_async(SupervisorFactory)()
    monitor = await _connected(f"/ws/supervisor/conversations/{conversation.uuid}/", supervisor)
    session = await sync_to_async(conversation.chat_sessions.get)()

    await sync_to_async(chat_customer_message)(session=session, text="Is Friday <b>possible</b>?")

    html = await _receive_until(monitor, f"beforeend:#timeline-{conversation.uuid}")
    assert "Is Friday &lt;b&gt;possible&lt;/b&gt;?" in html
    for frame in ({"action": "read", "conversation": str(conversation.uuid), "upto": 10**6}, {"action": "typing"}):
        await monitor.send_to(text_data=json.dumps(frame))
    assert await monitor.receive_nothing(timeout=0.5)
    refreshed = await sync_to_async(Conversation.objects.get)(pk=conversation.pk)
    assert refreshed.agent_read_upto == conversation.agent_read_upto
    await monitor.send_to(text_data=json.dumps({"action": "send", "text": "hi"}))
    assert json.loads(await monitor.receive_from(timeout=5)) == {"error": "unknown_action"}

    # After a reconnect the page asks for what it missed.
    await monitor.send_to(
        text_data=json.dumps({"action": "resync", "conversation": str(conversation.uuid), "after": 0})
    )
    html = await _receive_until(monitor, "Is Friday")
    assert 'id="monitor-header"' in html
    await monitor.disconnect()


async def test_reassign_moves_the_conversation_and_both_desktops_update():
    cast = await sync_to_async(_setup)()
    anna = cast["agent"]
    ben = await sync_to_async(AgentFactory)(user__first_name="Ben", user__last_name="Berg")
    await sync_to_async(ben.services.add)(cast["service"])
    await sync_to_async(agent_state_set)(agent=ben, state=AgentState.READY)
    conversation = await sync_to_async(_accepted_chat)(cast["service"], anna)
    client, supervisor = await sync_to_async(_supervisor_client)()
    anna_desktop = await _connected("/ws/agent/", anna.user)
    ben_desktop = await _connected("/ws/agent/", ben.user)
    monitor = await _connected(f"/ws/supervisor/conversations/{conversation.uuid}/", supervisor)

    response = await sync_to_async(client.post)(
        reverse("supervisor:conversation-reassign", args=[conversation.uuid]),
        {"target": str(ben.user_id), "note": "Ben knows this customer"},
        **HTMX,
    )

    assert response.status_code == 200, response.content
    # Anna's list no longer has it; Ben is offered it with the supervisor's note.
    html = await _receive_until(anna_desktop, 'id="active-conversations"')
    assert f'id="acl-{conversation.uuid}"' not in html
    html = await _receive_until(ben_desktop, 'id="offers"')
    offer = await sync_to_async(Offer.objects.get)(agent=ben.user, state=Offer.State.PENDING)
    assert f'id="offer-{offer.pk}"' in html
    assert offer.transfer_note == "Reassigned by Sara Visor: Ben knows this customer"
    html = await _receive_until(monitor, 'id="monitor-header"')

    await sync_to_async(offer_accept)(offer_id=offer.pk, agent_user=ben.user)
    html = await _receive_until(ben_desktop, f'id="acl-{conversation.uuid}"')
    refreshed = await sync_to_async(Conversation.objects.get)(pk=conversation.pk)
    assert refreshed.assigned_agent_id == ben.user_id
    html = await _receive_until(monitor, "Ben Berg")
    entry = await sync_to_async(AuditEntry.objects.get)(action="conversation_reassigned")
    assert (entry.actor_id, entry.object_id) == (supervisor.pk, str(conversation.pk))
    for communicator in (anna_desktop, ben_desktop, monitor):
        await communicator.disconnect()


async def test_reassign_back_to_the_queue_releases_the_agent():
    cast = await sync_to_async(_setup)()
    anna = cast["agent"]
    conversation = await sync_to_async(_accepted_chat)(cast["service"], anna)
    await sync_to_async(agent_state_set)(agent=anna, state=AgentState.NOT_READY)
    client, _supervisor = await sync_to_async(_supervisor_client)()
    anna_desktop = await _connected("/ws/agent/", anna.user)

    response = await sync_to_async(client.post)(
        reverse("supervisor:conversation-reassign", args=[conversation.uuid]), {"target": "queue"}, **HTMX
    )

    assert response.status_code == 200
    html = await _receive_until(anna_desktop, 'id="active-conversations"')
    assert f'id="acl-{conversation.uuid}"' not in html
    interaction = await sync_to_async(Interaction.objects.get)(conversation=conversation)
    assert (interaction.state, interaction.agent_id) == (Interaction.State.QUEUED, None)
    refreshed = await sync_to_async(Conversation.objects.get)(pk=conversation.pk)
    assert refreshed.assigned_agent_id is None
    await anna_desktop.disconnect()


async def test_a_conversation_nobody_works_on_cannot_be_reassigned():
    cast = await sync_to_async(_setup)()
    await sync_to_async(agent_state_set)(agent=cast["agent"], state=AgentState.NOT_READY)
    await sync_to_async(agent_state_set)(agent=cast["other"], state=AgentState.NOT_READY)
    session = await sync_to_async(_chat)(cast["service"])
    client, _supervisor = await sync_to_async(_supervisor_client)()

    response = await sync_to_async(client.post)(
        reverse("supervisor:conversation-reassign", args=[session.conversation.uuid]), {"target": "queue"}, **HTMX
    )

    assert response.status_code == 422
    assert not await sync_to_async(AuditEntry.objects.exists)()
