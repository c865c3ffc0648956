"""Shared set-up for the voice tests: a live chat between an agent and a customer, and sockets."""

from __future__ import annotations

import asyncio
import contextlib

from asgiref.sync import sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from agents.models import AgentState
from agents.services import agent_state_set
from channels_app.webchat import services as chat_services
from config.asgi import application
from conversations.models import Offer
from conversations.routing import offer_accept
from tests.factories import TEST_PASSWORD, AgentFactory, ServiceFactory

HOST = (b"host", b"127.0.0.1:8000")
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
FIELDS = {"name": "Anna Berg", "email": "anna@example.com", "question": "Can you call me?"}

OPENED: list[WebsocketCommunicator] = []


async def close_all() -> None:
    while OPENED:
        communicator = OPENED.pop()
        with contextlib.suppress(Exception):
            await communicator.disconnect()
    cleaners = list(getattr(get_channel_layer(), "receive_cleaners", []))
    if cleaners:
        await asyncio.wait(cleaners, timeout=5)
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


def session_cookie(user) -> bytes:
    client = Client()
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def voice_socket(*, user=None, origin=ORIGIN) -> tuple[WebsocketCommunicator, bool, object]:
    headers = [HOST]
    if origin is not None:
        headers.append(origin)
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, "/ws/voice/", headers=headers)
    OPENED.append(communicator)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def receive_until(communicator, frame_type: str, *, where=None, timeout: float = 5.0) -> dict:
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


def live_chat(*, slug: str = "bookings", email: str = "anna@example.com"):
    """A chat the agent has accepted: returns (agent, service, chat session, token)."""
    from conversations.models import Service

    service = Service.objects.filter(slug=slug).first() or ServiceFactory(name=slug.title(), slug=slug)
    agent = AgentFactory(user__first_name="Lena")
    agent.services.add(service)
    agent_state_set(agent=agent, state=AgentState.READY)
    session = chat_services.chat_start(service=service, data={**FIELDS, "email": email})
    offer = Offer.objects.get(agent=agent.user, state=Offer.State.PENDING)
    offer_accept(offer_id=offer.pk, agent_user=agent.user)
    session = type(session).objects.select_related("conversation", "interaction").get(pk=session.pk)
    return agent, service, session, chat_services.session_token(session)


async def customer_socket(token: str) -> WebsocketCommunicator:
    communicator, connected, _code = await voice_socket()
    assert connected
    await communicator.send_json_to({"type": "hello", "token": token})
    hello = await receive_until(communicator, "hello")
    assert hello["role"] == "customer"
    await receive_until(communicator, "calls")
    return communicator


async def agent_socket(user) -> WebsocketCommunicator:
    communicator, connected, _code = await voice_socket(user=user)
    assert connected
    hello = await receive_until(communicator, "hello")
    assert hello["role"] == "agent"
    await receive_until(communicator, "calls")
    return communicator
