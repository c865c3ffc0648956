"""DB1 (QUALITY.md): the agent pages run the same number of queries, at most 10, whatever the data volume.

Two data sets from ``seed_bulk`` in one database, the second ten times the first; each agent has
three open conversations with long timelines (ten times longer in the second set) and contacts
with earlier conversations.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from channels_app.email.models import EmailMeta
from conversations.models import Conversation, Medium, Message
from conversations.views import ACL, acl_context
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

MAX_QUERIES = 10


def seed_for(agent, scale: int) -> None:
    with override_settings(DEBUG=True):
        call_command(
            "seed_bulk",
            contacts=10 * scale,
            conversations=20 * scale,
            messages=1000 * scale,
            agent=agent.user.username,
            open=3,
            open_messages=100 * scale,
            stdout=io.StringIO(),
        )


def pages(agent) -> dict:
    """What each page needs: a callable requesting it once."""
    client = Client()
    client.force_login(agent.user)
    open_conversation = Conversation.objects.open().filter(assigned_agent=agent.user).order_by("id").first()
    earlier = (
        Conversation.objects.closed().filter(contact=open_conversation.contact).order_by("-opened_at", "-id").first()
    )
    assert earlier is not None

    def get(url: str):
        def request():
            response = client.get(url)
            assert response.status_code == 200
            return response

        return request

    def acl_partial():
        return render_to_string(ACL, acl_context(user=agent.user))

    return {
        "desktop": get(reverse("desktop")),
        "workspace": get(reverse("conversations:page", args=[open_conversation.uuid])),
        "history": get(reverse("conversations:history", args=[earlier.uuid])),
        "acl": acl_partial,
    }


def count_queries(request) -> int:
    request()  # warm up: sessions, caches and lazy imports are not what is measured
    with CaptureQueriesContext(connection) as captured:
        request()
    return len(captured.captured_queries)


def test_pages_run_the_same_queries_small_and_ten_times_larger(django_assert_num_queries):
    small_agent, large_agent = AgentFactory(), AgentFactory()
    seed_for(small_agent, 1)
    small = {name: count_queries(request) for name, request in pages(small_agent).items()}
    seed_for(large_agent, 10)
    for name, request in pages(large_agent).items():
        request()
        with django_assert_num_queries(small[name]):
            request()


@pytest.mark.parametrize(
    "page",
    [
        "desktop",
        "workspace",
        "history",
        "acl",
    ],
)
def test_pages_run_at_most_ten_queries(page):
    agent = AgentFactory()
    seed_for(agent, 1)
    queries = count_queries(pages(agent)[page])
    assert queries <= MAX_QUERIES, f"{page}: {queries} queries"


def test_workspace_shows_the_newest_entries_of_a_long_timeline():
    agent = AgentFactory()
    seed_for(agent, 1)
    conversation = Conversation.objects.open().filter(assigned_agent=agent.user).order_by("id").first()
    client = Client()
    client.force_login(agent.user)
    response = client.get(reverse("conversations:page", args=[conversation.uuid]))
    assert f"Message 100 of conversation {conversation.pk}:" in response.content.decode()


def test_history_record_runs_the_same_queries_on_every_medium():
    """An email's timeline body reads its EmailMeta (quoted text, formatted version): joined, not per message."""
    agent = AgentFactory()
    seed_for(agent, 1)
    closed = Conversation.objects.closed().filter(messages__isnull=False).distinct()
    by_medium = {}
    for medium in (Medium.CHAT, Medium.SMS, Medium.EMAIL):
        conversation = closed.filter(messages__medium=medium).order_by("id").first()
        assert conversation is not None, medium
        if medium == Medium.EMAIL:
            for message in conversation.messages.order_by("id")[:5]:
                EmailMeta.objects.create(
                    message=message, rfc_message_id=f"<{message.pk}@bulk.example>", quoted_text="> hi"
                )
        client = Client()
        client.force_login(agent.user)
        url = reverse("conversations:history", args=[conversation.uuid])
        by_medium[medium] = count_queries(lambda url=url, client=client: client.get(url))
    assert len(set(by_medium.values())) == 1, by_medium
    assert by_medium[Medium.EMAIL] <= MAX_QUERIES


def test_workspace_of_an_email_thread_runs_the_same_queries_as_a_chat():
    agent = AgentFactory()
    seed_for(agent, 1)
    conversation = Conversation.objects.open().filter(assigned_agent=agent.user).order_by("id").first()
    page = pages(agent)["workspace"]
    chat = count_queries(page)
    Message.objects.filter(conversation=conversation).update(medium=Medium.EMAIL)
    for message in Message.objects.filter(conversation=conversation).order_by("-id")[:5]:
        EmailMeta.objects.create(message=message, rfc_message_id=f"<{message.pk}@bulk.example>", quoted_text="> hi")
    email = count_queries(page)
    assert email == chat
    assert "Show quoted text" in page().content.decode()
