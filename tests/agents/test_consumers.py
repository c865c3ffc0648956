"""The agent websocket: who may connect, what it receives, how it handles bad frames."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from agents.models import AgentState
from agents.services import agent_state_set
from config.asgi import application
from tests.factories import TEST_PASSWORD, AgentFactory, NotReadyReasonFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def session_cookie(user) -> bytes:
    client = Client()
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def connect(*, user=None, origin=ORIGIN, extra_headers=()) -> tuple[WebsocketCommunicator, bool, object]:
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append(origin)
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    headers.extend(extra_headers)
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def test_anonymous_socket_is_refused():
    _communicator, connected, code = await connect()
    assert not connected
    assert code == 4401


async def test_socket_without_origin_is_refused():
    agent = await sync_to_async(AgentFactory)()
    _communicator, connected, _code = await connect(user=agent.user, origin=None)
    assert not connected


async def test_socket_from_foreign_origin_is_refused():
    agent = await sync_to_async(AgentFactory)()
    _communicator, connected, _code = await connect(user=agent.user, origin=(b"origin", b"https://evil.example"))
    assert not connected


async def test_user_without_agent_profile_is_refused():
    user = await sync_to_async(UserFactory)()
    _communicator, connected, code = await connect(user=user)
    assert not connected
    assert code == 4403


async def test_agent_receives_current_state_on_connect():
    agent = await sync_to_async(AgentFactory)()
    await sync_to_async(agent_state_set)(agent=agent, state=AgentState.READY)
    communicator, connected, _code = await connect(user=agent.user)
    assert connected
    html = await communicator.receive_from(timeout=5)
    assert 'id="agent-state"' in html
    assert 'data-state="ready"' in html
    await communicator.disconnect()


async def test_state_change_is_pushed_to_that_agent_only():
    agent, other = await sync_to_async(lambda: (AgentFactory(), AgentFactory()))()
    reason = await sync_to_async(NotReadyReasonFactory)(name="Lunch", code="lunch")
    mine, connected, _ = await connect(user=agent.user)
    assert connected
    theirs, connected, _ = await connect(user=other.user)
    assert connected
    await mine.receive_from(timeout=5)
    await theirs.receive_from(timeout=5)

    await sync_to_async(agent_state_set)(agent=agent, state=AgentState.NOT_READY, reason=reason)

    html = await mine.receive_from(timeout=5)
    assert 'data-state="not_ready"' in html
    assert "Lunch" in html
    assert await theirs.receive_nothing(timeout=0.5)
    await mine.disconnect()
    await theirs.disconnect()


async def test_state_partial_is_rendered_in_the_clients_language():
    agent = await sync_to_async(AgentFactory)()
    await sync_to_async(agent_state_set)(agent=agent, state=AgentState.READY)
    communicator, connected, _ = await connect(user=agent.user, extra_headers=[(b"accept-language", b"de-DE,de;q=0.9")])
    assert connected
    html = await communicator.receive_from(timeout=5)
    assert "Bereit" in html
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "malformed_frame"),
        ("[1, 2]", "malformed_frame"),
        ('{"action": "explode"}', "unknown_action"),
        (json.dumps({"action": "resync", "pad": "x" * 20000}), "frame_too_large"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_keeps_serving(frame, error):
    agent = await sync_to_async(AgentFactory)()
    communicator, connected, _ = await connect(user=agent.user)
    assert connected
    await communicator.receive_from(timeout=5)
    await communicator.send_to(text_data=frame)
    assert json.loads(await communicator.receive_from(timeout=5)) == {"error": error}
    await communicator.send_to(text_data=json.dumps({"action": "resync"}))
    assert 'id="agent-state"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()
