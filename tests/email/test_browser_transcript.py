"""The customer asks for the chat transcript by email at the end of a chat, in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from channels_app.email.models import TranscriptRequest
from tests.browser.test_desktop_conversations import demo_data  # noqa: F401 (fixture)
from tests.webchat.test_xss import in_plain_thread

pytestmark = [pytest.mark.browser]


def _agent_answers_and_ends() -> None:
    from channels_app.webchat.models import ChatSession
    from channels_app.webchat.services import chat_agent_message, chat_end
    from conversations.services import interaction_answer
    from tests.factories import AgentFactory

    session = ChatSession.objects.get()
    agent = AgentFactory()
    interaction_answer(interaction=session.interaction, agent=agent.user)
    chat_agent_message(conversation=session.conversation, agent_user=agent.user, text="Your booking is moved.")
    chat_end(interaction=session.interaction, reason="agent_ended", actor=agent.user)


def test_customer_gets_the_transcript_form_after_the_chat_and_requests_it(
    demo_data,  # noqa: F811
    live_server_url,
    browser,
    monkeypatch,
):
    from core import realtime

    monkeypatch.setattr(realtime, "RELAY_THROUGH_DATABASE", realtime.layer_is_in_memory())
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server_url}/chat/bookings/")
    page.locator("#prechat-name").fill("Jane Doe")
    page.locator("#prechat-question").fill("Can I move my booking?")
    page.locator("#prechat-submit").click()
    expect(page.locator("#chat-log")).to_contain_text("Can I move my booking?")
    form = page.locator("#chat-transcript")
    expect(form).to_be_hidden()

    in_plain_thread(_agent_answers_and_ends)
    expect(page.locator("#new-chat")).to_be_visible(timeout=15_000)
    expect(form).to_be_visible()
    page.get_by_label("Email me a transcript of this chat").fill("jane@example.com")
    page.get_by_role("button", name="Send transcript").click()
    expect(page.locator("#chat-transcript-status")).to_have_text("The transcript is on its way.")
    request = in_plain_thread(lambda: TranscriptRequest.objects.get())
    assert request.address == "jane@example.com"
    expect(page.get_by_role("button", name="Send transcript")).to_be_disabled()
    assert errors == []
    context.close()
