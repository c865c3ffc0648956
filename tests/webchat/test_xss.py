"""Hostile chat bodies stay text: plain strings in the JSON frames, text nodes on the page."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from playwright.sync_api import expect

from channels_app.webchat import selectors, services
from channels_app.webchat.models import ChatSession
from conversations.services import interaction_answer
from tests.factories import AgentFactory, ServiceFactory
from tests.webchat.test_consumer import connect, isolated_sockets, receive_until, start  # noqa: F401 (fixture)

HOSTILE = [
    "<script>window.__xss = 'script'</script>",
    "<img src=x onerror=\"window.__xss = 'img'\">",
    "javascript:window.__xss='link'",
    "<a href=\"javascript:window.__xss='a'\">click</a>",
    'https://example.com/"><svg onload="window.__xss=\'svg\'">',
    "<iframe srcdoc=\"<script>parent.__xss='frame'</script>\"></iframe>",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("isolated_sockets")
@pytest.mark.parametrize("body", HOSTILE)
async def test_hostile_customer_message_is_stored_and_sent_as_plain_text(body):
    service = await sync_to_async(ServiceFactory)(slug="bookings")
    communicator, _, _ = await connect()
    await start(communicator, service, fields={"name": body[:150], "question": body})

    await communicator.send_json_to({"type": "message", "text": body})
    echo = await receive_until(communicator, "entries")

    assert echo["entries"][0]["text"] == body
    assert await sync_to_async(lambda: ChatSession.objects.get().name)() == body[:150].strip()
    await communicator.disconnect()


@pytest.mark.django_db
@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_agent_message_is_sent_to_the_customer_as_plain_text(body, monkeypatch):
    from core import realtime

    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)
    session = services.chat_start(service=ServiceFactory(), data={"name": "Anna", "question": "Hi"})
    agent = AgentFactory()
    interaction_answer(interaction=session.interaction, agent=agent.user)
    message = services.chat_agent_message(conversation=session.conversation, agent_user=agent.user, text=body)

    entry = selectors.chat_entry_for_customer(session=session, entry_id=message.entry.pk)
    data = selectors.customer_entry_json(entry=entry, session=session)

    assert data["text"] == body
    assert data["author"] == "agent"


# --- in a real browser -------------------------------------------------------------------------------------------

NAME = "<img src=x onerror=\"window.__xss = 'name'\">"
QUESTION = "<script>window.__xss = 'question'</script>Is my booking OK?"
CUSTOMER_MESSAGE = (
    "<img src=x onerror=\"window.__xss = 'message'\"> see javascript:window.__xss=1 "
    'and https://example.com/path?q=1"><svg onload="window.__xss=\'svg\'"> thanks'
)
AGENT_MESSAGE = (
    "<iframe srcdoc=\"<script>parent.__xss='frame'</script>\"></iframe> "
    "Details: https://parley.example/booking?id=7&x=<b>bold</b>. <a href=javascript:alert(1)>x</a>"
)


def in_plain_thread(work):
    """Run ORM work outside Playwright's event loop and greenlet: its connection is closed, its events publish."""

    def run():
        try:
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)


def agent_answers() -> None:
    session = ChatSession.objects.get()
    agent = AgentFactory(user__first_name="Lena")
    interaction_answer(interaction=session.interaction, agent=agent.user)
    services.chat_agent_message(conversation=session.conversation, agent_user=agent.user, text=AGENT_MESSAGE)


@pytest.fixture
def bookings(transactional_db):
    # Created before the browser starts: ORM calls inside Playwright's loop use a connection of their own.
    return ServiceFactory(
        name="Bookings",
        slug="bookings",
        prechat_fields={"name": "required", "email": "optional", "phone": "off", "question": "required"},
    )


@pytest.mark.browser
def test_hostile_messages_render_as_text_in_the_embedded_chat(bookings, live_server_url, browser):
    """A customer on a website with the snippet chats; nothing anyone writes becomes markup."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{live_server_url}/chat/bookings/demo/")
    launcher = page.get_by_role("button", name="Chat with us")
    launcher.click()
    expect(page.get_by_role("button", name="Close the chat")).to_have_attribute("aria-expanded", "true")
    chat = page.frame_locator("iframe[data-parley-chat-frame]")
    chat.locator("#prechat-name").fill(NAME)
    chat.locator("#prechat-question").fill(QUESTION)
    chat.get_by_role("button", name="Start chat").click()

    log = chat.locator("#chat-log")
    expect(log.locator(".chat-entry.is-customer")).to_have_count(1)
    expect(chat.locator("#chat-status")).to_contain_text("Waiting for an agent")
    chat.locator("#composer-text").fill(CUSTOMER_MESSAGE)
    chat.locator("#composer-text").press("Enter")
    expect(log.locator(".chat-entry.is-customer")).to_have_count(2)

    # The agent answers from the desktop (here: the service layer on the same database).
    in_plain_thread(agent_answers)
    # Reloading the website and opening the chat again resumes it from the stored token and
    # back-fills everything from the database.
    page.reload()
    page.get_by_role("button", name="Chat with us").click()
    expect(log.locator(".chat-entry.is-agent")).to_have_count(1)
    expect(log.locator(".chat-entry.is-customer")).to_have_count(2)

    texts = log.locator(".entry-text").all_text_contents()
    assert texts == [QUESTION, CUSTOMER_MESSAGE, AGENT_MESSAGE]
    # Nothing injected: no element from any body, no handler, no dialog, no marker.
    assert log.locator("script, img, svg, iframe, b, [onerror], [onload]").count() == 0
    links = log.locator("a").evaluate_all("links => links.map(a => [a.getAttribute('href'), a.rel, a.target])")
    assert links == [
        ["https://example.com/path?q=1", "noopener noreferrer nofollow", "_blank"],
        ["https://parley.example/booking?id=7&x=", "noopener noreferrer nofollow", "_blank"],
    ]
    [frame] = [frame for frame in page.frames if "/chat/bookings/?embed=1" in frame.url]
    assert frame.evaluate("window.__xss") is None
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    assert errors == []
    context.close()
