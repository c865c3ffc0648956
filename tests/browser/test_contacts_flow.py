"""An agent in a live chat looks the customer up, reads their earlier calls and SMS, and follows up by email."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from channels_app.webchat.services import chat_start
from contacts.models import ContactPoint
from conversations import routing
from conversations.models import Conversation, Offer, Service
from tests.browser.test_desktop_conversations import log_in

pytestmark = [pytest.mark.browser]


@pytest.fixture
def demo_data(transactional_db):
    call_command("seed_demo", allow_production=True, stdout=io.StringIO())


def _accepted_chat_of(email: str, agent_user) -> Conversation:
    service = Service.objects.get(slug="bookings")
    session = chat_start(service=service, data={"name": "Thomas Müller", "email": email, "question": "Hotel again?"})
    offer = Offer.objects.filter(interaction__conversation=session.conversation).order_by("-id").first()
    if offer is None:
        offer = routing.route_next(service=service)
    routing.offer_accept(offer_id=offer.pk, agent_user=agent_user)
    return session.conversation


def test_agent_finds_the_caller_by_phone_and_follows_up_by_email_in_the_open_conversation(
    demo_data, live_server_url, browser
):
    from django.contrib.auth import get_user_model

    context = browser.new_context(locale="en-US")
    agent = context.new_page()
    log_in(agent, live_server_url, "agent1")
    thomas = ContactPoint.objects.get(kind=ContactPoint.Kind.EMAIL, value="t.mueller@example.org").contact
    conversation = _accepted_chat_of("t.mueller@example.org", get_user_model().objects.get(username="agent1"))
    assert conversation.contact_id == thomas.pk
    conversation_url = f"{live_server_url}/desktop/c/{conversation.uuid}/"
    agent.goto(conversation_url)
    expect(agent.locator("#contact-panel")).to_contain_text("Thomas Müller")
    expect(agent.get_by_role("link", name="Contacts")).to_be_visible()

    # The stored number is +494066969231; the agent types it the national way.
    agent.locator("#contact-panel-q").fill("040 6696-9231")
    with context.expect_page() as new_tab:
        agent.locator("#contact-panel .contact-search button").click()
    contacts = new_tab.value
    refused = []
    contacts.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    contacts.wait_for_load_state()
    expect(contacts.locator(".contact-result")).to_have_count(1)
    contacts.get_by_role("link", name="Thomas Müller").click()
    contacts.wait_for_url(re.compile(rf".*/contacts/{thomas.pk}/$"))

    activities = contacts.locator(".activities")
    expect(activities).to_contain_text("Voice")
    expect(activities).to_contain_text("SMS")
    # The live chat stayed where it was.
    expect(agent).to_have_url(conversation_url)

    contacts.locator("[data-follow-up='email']").click()
    contacts.wait_for_url(re.compile(rf".*/desktop/c/{conversation.uuid}/$"))
    expect(contacts.locator("#contact-panel")).to_contain_text("Thomas Müller")
    assert Conversation.objects.filter(contact=thomas, status=Conversation.Status.OPEN).count() == 1
    assert refused == []
    context.close()
