"""The read-only record of a conversation, linked from the contact panel's activity history."""

from __future__ import annotations

import pytest

from conversations.models import Direction, Interaction, Medium, Message
from conversations.services import conversation_close, interaction_start, message_record, note_add
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed_conversation(other_agent):
    conversation = ConversationFactory(assigned_agent=other_agent.user)
    chat = interaction_start(
        conversation=conversation,
        medium=Medium.CHAT,
        direction=Direction.INBOUND,
        agent=other_agent.user,
        state=Interaction.State.ACTIVE,
    )
    message_record(
        interaction=chat, direction=Direction.INBOUND, author_kind=Message.Author.CUSTOMER, body="<script>x()</script>"
    )
    message_record(
        interaction=chat,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=other_agent.user,
        body="Your booking is changed.",
    )
    note_add(conversation=conversation, author=other_agent.user, body="Customer prefers email")
    return conversation_close(conversation=conversation, notes="Rebooked", closed_by=other_agent.user)


def test_any_agent_reads_a_closed_conversation_of_a_contact(agent_client, closed_conversation):
    response = agent_client.get(f"/desktop/history/{closed_conversation.uuid}/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Your booking is changed." in content
    assert "Customer prefers email" in content
    assert "Rebooked" in content
    assert "&lt;script&gt;x()&lt;/script&gt;" in content
    assert "<script>x()" not in content


def test_supervisor_reads_the_record(supervisor_client, closed_conversation):
    assert supervisor_client.get(f"/desktop/history/{closed_conversation.uuid}/").status_code == 200


def test_users_who_are_not_agents_are_refused(plain_user, closed_conversation):
    from tests.conftest import _client_for

    assert _client_for(plain_user).get(f"/desktop/history/{closed_conversation.uuid}/").status_code == 403


def test_anonymous_is_sent_to_login(anonymous_client, closed_conversation):
    response = anonymous_client.get(f"/desktop/history/{closed_conversation.uuid}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_unknown_conversation_is_404(agent_client):
    assert agent_client.get("/desktop/history/00000000-0000-4000-8000-000000000000/").status_code == 404


def test_record_pages_by_entry_id(agent_client, closed_conversation, monkeypatch):
    from conversations import views

    monkeypatch.setattr(views, "HISTORY_PAGE", 2)
    first = agent_client.get(f"/desktop/history/{closed_conversation.uuid}/").content.decode()
    assert "?after=" in first
    entries = list(closed_conversation.timeline.order_by("id").values_list("id", flat=True))
    second = agent_client.get(f"/desktop/history/{closed_conversation.uuid}/?after={entries[1]}").content.decode()
    assert f'id="entry-{entries[2]}"' in second
    assert f'id="entry-{entries[0]}"' not in second
