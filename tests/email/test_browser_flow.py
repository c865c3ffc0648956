"""The source document's flow in Chromium: a chat is live, the agent emails the updated booking, the SMTP server
receives it, the customer's reply arrives by IMAP and appears in the same conversation on the agent's screen."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from channels_app.email.imap import mailbox_poll
from channels_app.email.models import Mailbox
from conversations.models import Service
from tests.browser.test_desktop_conversations import demo_data, log_in  # noqa: F401 (fixture)
from tests.email.mail import mail
from tests.live import celery_worker, daphne_server
from tests.webchat.test_xss import in_plain_thread

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_chat_then_email_booking_then_reply_by_imap_joins_the_conversation(
    demo_data,  # noqa: F811 (the imported fixture)
    smtp,
    dovecot,
    browser,
    tmp_path,
    monkeypatch,
):
    from core import realtime

    # This process polls IMAP like the beat would; its events reach daphne through the database relay.
    # With Redis every process publishes to the shared layer and nothing is relayed.
    monkeypatch.setattr(realtime, "RELAY_THROUGH_DATABASE", realtime.layer_is_in_memory())
    service = Service.objects.get(slug="bookings")
    Mailbox.objects.create(
        name="Bookings",
        address="bookings@example.test",
        service=service,
        host="127.0.0.1",
        port=dovecot.port,
        security=Mailbox.Security.STARTTLS,
        verify_certificate=False,
        username=dovecot.user,
        password=dovecot.password,
    )
    email_url = f"smtp://127.0.0.1:{smtp.port}"
    with (
        daphne_server(tmp_path / "daphne.log", EMAIL_URL=email_url) as base_url,
        celery_worker(tmp_path / "worker.log", "email-flow", EMAIL_URL=email_url),
    ):
        agent_context = browser.new_context(locale="en-US")
        agent = agent_context.new_page()
        log_in(agent, base_url, "agent2")
        expect(agent.locator("#connection-status")).to_have_attribute("data-connected", "true")

        customer_context = browser.new_context(locale="en-US")
        customer = customer_context.new_page()
        customer.goto(f"{base_url}/chat/bookings/")
        customer.locator("#prechat-name").fill("Jane Doe")
        if customer.locator("#prechat-email").count():
            customer.locator("#prechat-email").fill("jane.flow@example.com")
        customer.locator("#prechat-question").fill("Can I move my booking to Friday?")
        customer.locator("#prechat-submit").click()

        expect(agent.locator("#offers .offer")).to_have_count(1)
        agent.locator("[data-offer-accept]").first.click()
        expect(agent).to_have_url(re.compile(r"/desktop/c/[0-9a-f-]{36}/$"))
        uuid = agent.url.rstrip("/").rsplit("/", 1)[-1]
        timeline = agent.locator(f"#timeline-{uuid}")
        expect(timeline).to_contain_text("Can I move my booking to Friday?")

        # The agent continues by email while the chat is live.
        agent.locator(f"#composer-form-{uuid} input[name='channel'][value='email']").check()
        fields = agent.locator(f"#composer-form-{uuid} [data-channel-fields='email']")
        expect(fields).to_be_visible()
        expect(agent.locator(f"#email-to-{uuid}")).to_have_value("jane.flow@example.com")
        agent.locator(f"#email-subject-{uuid}").fill("Your updated booking")
        agent.locator(f"#email-attachments-{uuid}").set_input_files(
            files=[{"name": "booking.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 Friday"}]
        )
        agent.locator(f"#composer-text-{uuid}").fill("Your booking is now on **Friday**.")
        agent.locator(f"#composer-form-{uuid} button[type='submit']").click()
        sent_entry = timeline.locator(".entry", has_text="Your booking is now on **Friday**.")
        expect(sent_entry).to_have_count(1)

        deadline = time.monotonic() + 30
        while not smtp.received and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(smtp.received) == 1, (tmp_path / "worker.log").read_text()[-3000:]
        sent = smtp.received[0].message
        assert smtp.received[0].rcpt_tos == ["jane.flow@example.com"]
        assert re.search(r"\[#[A-Z2-9]{8}\]$", sent["Subject"])
        assert [a.get_filename() for a in sent.iter_attachments()] == ["booking.pdf"]
        assert "<strong>Friday</strong>" in sent.get_body(("html",)).get_content()
        # The worker's delivery result reaches the agent's screen.
        expect(sent_entry.locator(".delivery")).to_have_class(re.compile("delivery-sent"))

        # The customer replies from their mail program; the mailbox is polled.
        reply = mail(
            sender="Jane Doe <jane.flow@example.com>",
            to="bookings@example.test",
            subject=f"Re: {sent['Subject']}",
            in_reply_to=sent["Message-ID"],
            references=sent["Message-ID"],
            text="Friday is perfect, thank you!\n\nOn Mon, Parley wrote:\n> Your booking is now on Friday.\n",
        )
        dovecot.deliver(reply)
        counts = in_plain_thread(lambda: mailbox_poll(mailbox=Mailbox.objects.get()))
        assert counts == {"message": 1}
        expect(timeline.locator(".entry", has_text="Friday is perfect, thank you!")).to_have_count(1)
        expect(timeline).to_contain_text("Show quoted text")
        expect(agent).to_have_url(re.compile(uuid))
        customer_context.close()
        agent_context.close()
