"""Fixtures of the email tests: real SMTP and IMAP servers, a service that takes email, an agent holding a chat."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from agents.models import AgentState
from contacts.models import ContactPoint
from conversations.models import Direction, Interaction, Medium
from tests.conftest import require_component
from tests.email.servers import dovecot_available, dovecot_server, smtp_server
from tests.factories import ContactPointFactory, ConversationFactory, ServiceFactory


@pytest.fixture
def smtp(settings):
    """aiosmtpd on a free port, configured as Django's SMTP backend; yields the recorder."""
    require_component(True, "aiosmtpd")
    with smtp_server() as (recorder, port):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        recorder.port = port
        yield recorder


@pytest.fixture
def dovecot():
    require_component(dovecot_available(), "dovecot (/usr/sbin/dovecot)")
    # Not pytest's tmp_path: run as root, dovecot's unprivileged users must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="parley-dovecot-"))
    try:
        with dovecot_server(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def email_service(db):
    return ServiceFactory(media=[Medium.CHAT, Medium.EMAIL])


@pytest.fixture
def ready_agent(agent, email_service):
    agent.services.add(email_service)
    agent.state = AgentState.READY
    agent.save()
    return agent


@pytest.fixture
def chat_conversation(agent, email_service):
    """A live chat the agent holds, with a contact who has an email address."""
    point = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="jane@example.com")
    conversation = ConversationFactory(contact=point.contact, service=email_service, assigned_agent=agent.user)
    Interaction.objects.create(
        conversation=conversation,
        medium=Medium.CHAT,
        direction=Direction.INBOUND,
        service=email_service,
        agent=agent.user,
        state=Interaction.State.ACTIVE,
        answered_at=conversation.opened_at,
        created_at=conversation.opened_at,
    )
    return conversation
