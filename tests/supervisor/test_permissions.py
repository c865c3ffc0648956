"""Every supervisor URL and socket: supervisors allowed; agents, other users and anonymous visitors refused."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from agents.models import AgentState
from config.asgi import application
from conversations.models import Direction, Interaction, Medium
from tests.factories import (
    TEST_PASSWORD,
    AgentFactory,
    ConversationFactory,
    InteractionFactory,
    SupervisorFactory,
    UserFactory,
)


@pytest.fixture
def live_conversation(db, agent):
    conversation = ConversationFactory(assigned_agent=agent.user)
    InteractionFactory(
        conversation=conversation,
        medium=Medium.CHAT,
        direction=Direction.INBOUND,
        state=Interaction.State.ACTIVE,
        agent=agent.user,
    )
    return conversation


def _urls(agent, conversation) -> list[tuple[str, str]]:
    return [
        ("get", reverse("supervisor:home")),
        ("get", reverse("supervisor:agents")),
        ("get", reverse("supervisor:queues")),
        ("get", reverse("supervisor:conversations")),
        ("get", reverse("supervisor:conversation", args=[conversation.uuid])),
        ("get", reverse("supervisor:reports")),
        ("get", reverse("supervisor:reports-csv")),
        ("get", reverse("supervisor:audit")),
        ("post", reverse("supervisor:agent-state", args=[agent.pk])),
        ("post", reverse("supervisor:conversation-reassign", args=[conversation.uuid])),
    ]


def _request(client: Client, method: str, url: str):
    return client.get(url) if method == "get" else client.post(url, {"choice": "ready", "target": "queue"})


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login(anonymous_client, agent, live_conversation):
    for method, url in _urls(agent, live_conversation):
        response = _request(anonymous_client, method, url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


@pytest.mark.django_db
def test_agents_are_refused_everywhere(agent_client, agent, live_conversation):
    for method, url in _urls(agent, live_conversation):
        assert _request(agent_client, method, url).status_code == 403, url
    agent.refresh_from_db()
    assert live_conversation.interactions.get().state == Interaction.State.ACTIVE


@pytest.mark.django_db
def test_users_who_are_not_staff_are_refused(agent, live_conversation):
    client = Client()
    assert client.login(username=UserFactory().username, password=TEST_PASSWORD)
    for method, url in _urls(agent, live_conversation):
        assert _request(client, method, url).status_code == 403, url


@pytest.mark.django_db
def test_supervisors_are_allowed_everywhere(supervisor_client, agent, live_conversation):
    for method, url in _urls(agent, live_conversation):
        response = _request(supervisor_client, method, url)
        # The force-state POST is refused by the rule (mid-interaction), not by permissions; same for none.
        assert response.status_code in (200, 302), (url, response.status_code)


@pytest.mark.django_db
def test_staff_without_superuser_is_a_supervisor(agent, live_conversation):
    staff = UserFactory(is_staff=True)
    client = Client()
    assert client.login(username=staff.username, password=TEST_PASSWORD)
    assert client.get(reverse("supervisor:agents")).status_code == 200


@pytest.mark.django_db
def test_agents_cannot_enter_the_admin(agent_client):
    response = agent_client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- sockets -----------------------------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def session_cookie(user) -> bytes:
    client = Client()
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def ws_connect(path: str, user=None, origin=ORIGIN):
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append(origin)
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


def _socket_paths(conversation) -> list[str]:
    return ["/ws/supervisor/agents/", "/ws/supervisor/queues/", f"/ws/supervisor/conversations/{conversation.uuid}/"]


@pytest.mark.django_db(transaction=True)
async def test_sockets_refuse_anonymous_agents_and_foreign_origins():
    agent = await sync_to_async(AgentFactory)()
    supervisor = await sync_to_async(SupervisorFactory)()
    conversation = await sync_to_async(ConversationFactory)()
    for path in _socket_paths(conversation):
        _c, connected, code = await ws_connect(path)
        assert (connected, code) == (False, 4401), path
        _c, connected, code = await ws_connect(path, user=agent.user)
        assert (connected, code) == (False, 4403), path
        _c, connected, _code = await ws_connect(path, user=supervisor, origin=(b"origin", b"https://evil.example"))
        assert not connected, path


@pytest.mark.django_db(transaction=True)
async def test_sockets_accept_supervisors_and_send_the_current_view():
    supervisor = await sync_to_async(SupervisorFactory)()
    agent = await sync_to_async(AgentFactory)(state=AgentState.READY)
    conversation = await sync_to_async(ConversationFactory)()
    expected = ['id="agents-board"', 'id="queues-board"', 'id="monitor-header"']
    for path, marker in zip(_socket_paths(conversation), expected, strict=True):
        communicator, connected, _code = await ws_connect(path, user=supervisor)
        assert connected, path
        html = await communicator.receive_from(timeout=5)
        assert marker in html
        if "agents" in path:
            assert f'id="agent-row-{agent.pk}"' in html
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_monitor_socket_refuses_an_unknown_conversation():
    supervisor = await sync_to_async(SupervisorFactory)()
    _c, connected, code = await ws_connect(
        "/ws/supervisor/conversations/00000000-0000-4000-8000-000000000000/", user=supervisor
    )
    assert (connected, code) == (False, 4403)
