"""Outbound SMS: the composer's SMS channel, the outbox through the real twilio client to the local server,
delivery status, retry, and where an SMS goes in a conversation's life (live call/chat, wrap-up, follow-up)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from channels_app.sms.models import DevelopmentSms, SmsOptOut
from channels_app.sms.services import sms_segments, sms_send, sms_unavailable_reason
from contacts.services import contact_follow_up
from conversations.models import Interaction, Medium, Message, Outbox
from conversations.outbox import outbox_deliver, outbox_retry
from conversations.services import interaction_end
from tests.sms.conftest import CUSTOMER, OUR_NUMBER

pytestmark = pytest.mark.django_db


def deliver(message: Message) -> str:
    return outbox_deliver(outbox_id=Outbox.objects.get(message=message).pk)


def test_sms_from_a_chat_reaches_the_provider_with_the_idempotency_key(
    chat_conversation, ready_agent, sms_number, fake_twilio
):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="Your summary: booking 42")
    assert message.delivery_status == Message.Status.QUEUED
    assert message.interaction.medium == Medium.SMS
    assert message.interaction.state == Interaction.State.ACTIVE
    assert deliver(message) == "sent"
    [sent] = fake_twilio.messages
    assert sent["To"] == CUSTOMER and sent["From"] == OUR_NUMBER and sent["Body"] == "Your summary: booking 42"
    row = Outbox.objects.get(message=message)
    assert sent["key"] == str(row.idempotency_key)
    assert sent["StatusCallback"].endswith(f"/sms/twilio/status/?k={row.idempotency_key}")
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.SENT
    assert message.provider_message_id == sent["sid"]


def test_second_sms_continues_the_same_thread(chat_conversation, ready_agent, sms_number):
    first = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="one")
    second = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="two")
    assert first.interaction_id == second.interaction_id


def test_transient_errors_are_retried_then_sent_once(chat_conversation, ready_agent, sms_number, fake_twilio):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="retry me")
    fake_twilio.fail_next("500", "429")
    assert deliver(message) == "retry"
    Outbox.objects.filter(message=message).update(next_attempt_at=Outbox.objects.get(message=message).created_at)
    assert deliver(message) == "retry"
    Outbox.objects.filter(message=message).update(next_attempt_at=Outbox.objects.get(message=message).created_at)
    assert deliver(message) == "sent"
    assert fake_twilio.bodies() == {"retry me": 1}


def test_timeout_is_transient_and_the_repeat_with_the_same_key_sends_once(
    chat_conversation, ready_agent, sms_number, fake_twilio, settings
):
    settings.SMS_PROVIDER_TIMEOUT_SECONDS = 0.5
    fake_twilio.timeout_sleep = 1.0
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="slow")
    fake_twilio.fail_next("timeout")
    assert deliver(message) == "retry"
    Outbox.objects.filter(message=message).update(next_attempt_at=Outbox.objects.get(message=message).created_at)
    assert deliver(message) == "sent"
    assert fake_twilio.bodies() == {"slow": 1}


def test_permanent_error_fails_with_the_reason_and_the_agent_may_retry(
    chat_conversation, ready_agent, sms_number, fake_twilio
):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="bad number")
    fake_twilio.fail_next("400")
    assert deliver(message) == "failed"
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.FAILED
    assert "21211" in message.status_reason
    outbox_retry(message=message, actor=ready_agent.user)
    assert deliver(message) == "sent"
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.SENT
    assert fake_twilio.bodies() == {"bad number": 1}


def test_provider_opt_out_error_is_permanent(chat_conversation, ready_agent, sms_number, fake_twilio):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="hello")
    fake_twilio.fail_next("21610")
    assert deliver(message) == "failed"
    message.refresh_from_db()
    assert "opted out" in message.status_reason


def test_wrong_credentials_fail_permanently(chat_conversation, ready_agent, sms_number, fake_twilio):
    sms_number.account.auth_token = "wrong"
    sms_number.account.save()
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="hello")
    assert deliver(message) == "failed"
    assert fake_twilio.messages == []


def test_without_an_account_the_development_transport_records_the_sms(chat_conversation, ready_agent):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="dev only")
    assert deliver(message) == "sent"
    [recorded] = DevelopmentSms.objects.all()
    assert recorded.to == CUSTOMER and recorded.body == "dev only" and recorded.message_id == message.pk
    message.refresh_from_db()
    assert message.provider_message_id == recorded.sid


def test_no_sms_to_an_opted_out_number(chat_conversation, ready_agent, sms_number, fake_twilio):
    SmsOptOut.objects.create(phone_number=CUSTOMER, keyword="STOP")
    reason = sms_unavailable_reason(chat_conversation, ready_agent.user)
    assert "opted out" in reason
    with pytest.raises(ValidationError):
        sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="hello")


def test_opt_out_after_queueing_stops_the_send_and_blocks_the_retry(
    chat_conversation, ready_agent, sms_number, fake_twilio
):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="hello")
    SmsOptOut.objects.create(phone_number=CUSTOMER, keyword="STOP")
    assert deliver(message) == "failed"
    assert fake_twilio.messages == []
    with pytest.raises(ValidationError, match="opted out"):
        outbox_retry(message=message, actor=ready_agent.user)


def test_sms_is_unavailable_without_a_phone_number_or_to_another_agent(chat_conversation, ready_agent, other_agent):
    assert sms_unavailable_reason(chat_conversation, other_agent.user) == "This conversation is not yours."
    chat_conversation.contact.points.all().delete()
    assert sms_unavailable_reason(chat_conversation, ready_agent.user) == "The contact has no phone number."


def test_sms_in_wrap_up_keeps_the_conversation_in_wrap_up(chat_conversation, ready_agent, sms_number, fake_twilio):
    for interaction in chat_conversation.interactions.live():
        interaction_end(interaction=interaction, reason="agent_ended", actor=ready_agent.user)
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="summary")
    assert not chat_conversation.interactions.live().exists()
    message.interaction.refresh_from_db()
    assert message.interaction.state == Interaction.State.ENDED
    assert deliver(message) == "sent"
    assert fake_twilio.bodies() == {"summary": 1}


def test_follow_up_from_the_contact_defaults_to_sms_and_sends(
    client, contact, ready_agent, sms_number, fake_twilio, service
):
    from tests.factories import TEST_PASSWORD

    conversation = contact_follow_up(actor=ready_agent.user, contact=contact, medium=Medium.SMS, service=service)
    client.login(username=ready_agent.user.username, password=TEST_PASSWORD)
    page = client.get(reverse("conversations:page", args=[conversation.uuid]))
    assert page.status_code == 200
    assert 'name="channel" value="sms" checked' in page.content.decode()
    response = client.post(
        reverse("conversations:send", args=[conversation.uuid]),
        {"channel": "sms", "text": "Following up"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    message = conversation.messages.get()
    assert deliver(message) == "sent"
    assert fake_twilio.bodies() == {"Following up": 1}


def test_composer_offers_sms_with_the_counter_and_sends(agent_client, chat_conversation, sms_number, fake_twilio):
    page = agent_client.get(reverse("conversations:page", args=[chat_conversation.uuid])).content.decode()
    assert 'value="sms"' in page and "data-sms-counter" in page
    response = agent_client.post(
        reverse("conversations:send", args=[chat_conversation.uuid]),
        {"channel": "sms", "text": "Hello by SMS"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "Hello by SMS" in response.content.decode()
    assert chat_conversation.messages.get(medium=Medium.SMS).delivery_status == Message.Status.QUEUED


def test_another_agent_cannot_send_sms_into_the_conversation(other_agent_client, chat_conversation, sms_number):
    response = other_agent_client.post(
        reverse("conversations:send", args=[chat_conversation.uuid]), {"channel": "sms", "text": "x"}
    )
    assert response.status_code == 404
    assert not chat_conversation.messages.filter(medium=Medium.SMS).exists()


def test_composer_refuses_an_empty_sms(agent_client, chat_conversation, sms_number):
    response = agent_client.post(
        reverse("conversations:send", args=[chat_conversation.uuid]),
        {"channel": "sms", "text": "  "},
        HTTP_HX_REQUEST="true",
    )
    assert "The message is empty." in response.content.decode()


def test_rolled_back_send_queues_nothing(
    chat_conversation, ready_agent, sms_number, django_capture_on_commit_callbacks
):
    from django.db import transaction

    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="never")
                raise RuntimeError("rollback")
        except RuntimeError:
            pass
    assert callbacks == []
    assert not Outbox.objects.exists()


def test_end_sms_thread(agent_client, chat_conversation, ready_agent, sms_number, other_agent_client):
    sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="one")
    url = reverse("sms:end", args=[chat_conversation.uuid])
    assert other_agent_client.post(url).status_code == 404
    assert agent_client.post(url, HTTP_HX_REQUEST="true").status_code == 200
    assert not chat_conversation.interactions.live().filter(medium=Medium.SMS).exists()


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),
        ("ü" * 160, "GSM-7", 160, 1),
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("😀" * 35, "UCS-2", 70, 1),
        ("a" * 134 + "ł", "UCS-2", 135, 3),
    ],
)
def test_segments(text, encoding, units, segments):
    result = sms_segments(text)
    assert (result.encoding, result.units, result.segments) == (encoding, units, segments)
