# ruff: noqa: F811 (the demo_data fixture imported from the chat flows is used as a parameter)
"""The source document's flow end to end in Chromium, with the real twilio client, a Celery worker and the
local Twilio-speaking server: a chat is live → the agent continues by SMS (segment counter shown) → the
provider server receives it → the delivery status turns live on the agent's screen → the customer's SMS
reply, posted to the signed webhook, appears live in the same conversation → the agent wraps up → the
closed conversation in the contact's history shows the chat and the SMS."""

from __future__ import annotations

import uuid

import pytest
import requests
from django.conf import settings
from playwright.sync_api import expect

from tests.browser.test_chat_flows import (
    agent_accepts_offer,
    agent_logs_in,
    customer_opens_chat,
    demo_data,  # noqa: F401 (a fixture)
    fill_prechat,
    in_own_thread,
)
from tests.live import celery_worker
from tests.sms.conftest import ACCOUNT_SID, AUTH_TOKEN, inbound_params, status_params
from tests.sms.twilio_server import twilio_signature

pytestmark = [pytest.mark.browser, pytest.mark.worker]

TOM_PHONE = "+491701112233"
OUR_NUMBER = "+4930555000"


def _post_signed(base_url: str, path: str, params: dict) -> int:
    # Twilio signs the public URL it was configured with; daphne is reached directly (as behind a proxy).
    signature = twilio_signature(auth_token=AUTH_TOKEN, url=settings.PUBLIC_BASE_URL + path, params=params)
    return requests.post(
        base_url + path, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
    ).status_code


def test_chat_continues_by_sms_and_the_reply_lands_live_in_the_same_conversation(
    demo_data, live_server_url, browser, fake_twilio, tmp_path
):
    from channels_app.sms.models import SmsAccount, SmsNumber
    from conversations.models import Service

    def configure():
        account = SmsAccount.objects.create(
            name="Demo", account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base_url=fake_twilio.base_url
        )
        SmsNumber.objects.create(account=account, phone_number=OUR_NUMBER, service=Service.objects.get(slug="bookings"))

    in_own_thread(configure)
    base = live_server_url
    with celery_worker(tmp_path / "worker.log", f"sms-e2e-{uuid.uuid4().hex[:6]}@localhost"):
        anna = agent_logs_in(browser, base, "agent1")
        tom = customer_opens_chat(browser, base)
        fill_prechat(tom.page, name="Tom Tester", email="tom.sms@example.com", question="Can I move my flight?")

        def add_phone():
            from contacts.models import ContactPoint
            from contacts.services import contact_point_add

            point = ContactPoint.objects.get(kind=ContactPoint.Kind.EMAIL, value="tom.sms@example.com")
            contact_point_add(contact=point.contact, kind=ContactPoint.Kind.PHONE, value=TOM_PHONE)

        in_own_thread(add_phone)
        a = anna.page
        expect(a.locator("#offers .offer")).to_have_count(1)
        conversation = agent_accepts_offer(a)

        # Anna continues by SMS: the counter shows characters and segments before sending.
        form = a.locator(f"#composer-form-{conversation}")
        form.locator("input[name='channel'][value='sms']").check()
        counter = form.locator("[data-sms-counter]")
        expect(counter).to_be_visible()
        composer = a.locator(f"#composer-text-{conversation}")
        composer.fill("x" * 161)
        expect(counter).to_contain_text("161 characters · 2 SMS")
        composer.fill("Your new flight: Friday 10:05, seat 12A. Reply here if that does not suit you.")
        expect(counter).to_contain_text("1 SMS")
        composer.press("Enter")
        timeline = a.locator(f"#timeline-{conversation}")
        sent = timeline.locator(".entry.from-agent", has_text="Your new flight")
        expect(sent).to_have_count(1)
        expect(sent.locator(".entry-medium")).to_have_text("SMS")

        # The worker hands it to the provider; the status turns "sent", then "delivered" by callback, live.
        expect(sent.locator(".delivery-sent")).to_have_count(1, timeout=30_000)
        [provider_copy] = fake_twilio.messages
        assert provider_copy["To"] == TOM_PHONE and provider_copy["From"] == OUR_NUMBER
        key = provider_copy["key"]
        status = status_params(sid=provider_copy["sid"], status="delivered")
        status.update(To=TOM_PHONE, From=OUR_NUMBER)
        assert _post_signed(base, f"/sms/twilio/status/?k={key}", status) == 204
        expect(sent.locator(".delivery-delivered")).to_have_count(1)

        # Tom answers by SMS: it appears live in the same conversation.
        reply = inbound_params(
            sid="SM" + uuid.uuid4().hex, body="Friday is perfect, thanks!", from_=TOM_PHONE, to=OUR_NUMBER
        )
        assert _post_signed(base, "/sms/twilio/inbound/", reply) == 200
        expect(timeline.locator(".entry.from-customer", has_text="Friday is perfect, thanks!")).to_have_count(1)
        expect(a.locator(f"#workspace-header-{conversation}")).to_contain_text("SMS")

        # Anna ends the chat and the SMS thread, wraps up; the history shows both media.
        a.get_by_role("button", name="End chat").click()
        form.locator("input[name='channel'][value='sms']").check()
        a.get_by_role("button", name="End SMS thread").click()
        wrapup = a.locator(".wrapup-form")
        expect(wrapup).to_be_visible()
        wrapup.get_by_label("Disposition").select_option(label="Booking changed")
        wrapup.get_by_role("button", name="Close conversation").click()
        expect(a).to_have_url(f"{base}/desktop/")

        a.goto(f"{base}/desktop/history/{conversation}/")
        history = a.locator(f"#timeline-{conversation}")
        expect(history.locator(".entry.from-customer", has_text="Can I move my flight?")).to_have_count(1)
        expect(history.locator(".entry.from-agent", has_text="Your new flight")).to_have_count(1)
        expect(history.locator(".entry.from-customer", has_text="Friday is perfect")).to_have_count(1)
        expect(history.locator(".entry-medium", has_text="SMS")).to_have_count(2)
        expect(history.locator(".entry-closed")).to_contain_text("Booking changed")
        assert fake_twilio.bodies() == {provider_copy["Body"]: 1}
        for person in (anna, tom):
            assert person.errors == []
            person.close()
