"""Scale-out (issue: prove it): two daphne processes and two Celery workers on one database and one Redis,
behind nginx. A customer connected to one process and the agent to the other work one conversation;
what one process or a worker does reaches sockets held by the other."""

from __future__ import annotations

import json
import time
import urllib.request
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.middleware.csrf import _get_new_csrf_string

from agents.models import AgentState
from agents.services import agent_state_set
from conversations.models import Conversation, Interaction, Message, Offer
from tests.factories import AgentFactory, ServiceFactory
from tests.scaleout.cluster import running_cluster

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


@pytest.fixture
def running(tmp_path):
    with running_cluster(tmp_path) as started:
        yield started


def _agent_login(profile) -> tuple[str, str]:
    """A logged-in session for the agent, as the login view would make it: (cookie header, CSRF secret)."""
    store = SessionStore()
    store[SESSION_KEY] = str(profile.user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = profile.user.get_session_auth_hash()
    store.create()
    secret = _get_new_csrf_string()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}; {settings.CSRF_COOKIE_NAME}={secret}", secret


def _post(base: str, path: str, data: dict, *, cookie: str, csrf: str) -> int:
    request = urllib.request.Request(
        base + path,
        data=urlencode(data).encode(),
        headers={
            "Cookie": cookie,
            "X-CSRFToken": csrf,
            "Origin": base,
            "Referer": base + "/desktop/",
            "HX-Request": "true",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status


def _ws(base: str, path: str, **headers):
    from websockets.sync.client import connect

    return connect(
        base.replace("http://", "ws://") + path,
        origin=base,
        additional_headers={"Accept-Language": "en", **headers},
        open_timeout=15,
        max_size=2**22,
    )


def _until(ws, predicate, *, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            raw = ws.recv(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen.append(raw[:200])
        if predicate(raw):
            return raw
    raise AssertionError(f"{what or 'frame'} not received within {timeout} s; last frames: {seen[-5:]}")


def _wait_for(check, *, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def chat_setup(slug: str):
    """A service and a Ready agent with a logged-in session: (service, profile, cookie, csrf)."""
    service = ServiceFactory(name=slug, slug=slug, wrapup_seconds=0, offer_timeout_seconds=120)
    profile = AgentFactory()
    profile.services.add(service)
    agent_state_set(agent=profile, state=AgentState.READY)
    cookie, csrf = _agent_login(profile)
    return service, profile, cookie, csrf


def chat_open(running, *, service, profile, cookie, csrf, customer, agent_socket) -> tuple[Conversation, str]:
    """The customer starts a chat and the agent accepts it; returns the conversation and the customer's token."""
    customer.send(
        json.dumps(
            {
                "type": "start",
                "service": service.slug,
                "fields": {"name": "Nina Roth", "email": "nina@example.com", "question": "Scale-out hello"},
            }
        )
    )
    session = json.loads(_until(customer, lambda raw: json.loads(raw).get("type") == "session", what="the session"))
    offer = _wait_for(
        lambda: Offer.objects.filter(agent=profile.user, state=Offer.State.PENDING).first(), what="the offer"
    )
    _until(agent_socket, lambda raw: f"offers/{offer.pk}/accept/" in raw, what="the offer on the agent's desktop")
    assert _post(running.proxy, f"/desktop/offers/{offer.pk}/accept/", {}, cookie=cookie, csrf=csrf) == 200
    _until(
        customer,
        lambda raw: json.loads(raw).get("type") == "status" and json.loads(raw).get("state") == "active",
        what="the chat becoming active for the customer",
    )
    return Conversation.objects.get(interactions__offers=offer), session["token"]


def test_customer_and_agent_on_different_processes_chat_both_ways_through_the_proxy(running):
    service, profile, cookie, csrf = chat_setup("scale-out")
    daphne_a, daphne_b = running.web

    with _ws(daphne_b, "/ws/agent/", Cookie=cookie) as agent_socket, _ws(daphne_a, "/ws/chat/") as customer:
        # The customer starts a chat on process A; routing (in A) offers it to the agent, whose desktop is on B.
        # The agent accepts through the proxy (either process may answer); the customer on A sees it.
        conversation, _token = chat_open(
            running,
            service=service,
            profile=profile,
            cookie=cookie,
            csrf=csrf,
            customer=customer,
            agent_socket=agent_socket,
        )

        # Customer on A → agent on B.
        customer.send(json.dumps({"type": "message", "text": "sent-through-process-a", "client_id": "c1"}))
        _until(agent_socket, lambda raw: "sent-through-process-a" in raw, what="the customer's message at the agent")

        # Agent through the proxy → customer on A.
        status = _post(
            running.proxy,
            f"/desktop/c/{conversation.uuid}/send/",
            {"channel": "chat", "text": "answered-through-the-proxy"},
            cookie=cookie,
            csrf=csrf,
        )
        assert status == 200
        _until(customer, lambda raw: "answered-through-the-proxy" in raw, what="the agent's answer at the customer")

    bodies = list(Message.objects.filter(conversation=conversation).values_list("body", flat=True))
    assert bodies.count("sent-through-process-a") == 1
    assert bodies.count("answered-through-the-proxy") == 1
    chat = Interaction.objects.get(conversation=conversation)
    assert chat.agent_id == profile.user.pk
    # nginx spread the requests over both processes.
    assert running.proxied_to() == set(running.web)
