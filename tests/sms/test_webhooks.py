"""Twilio's webhooks from recorded payloads: signatures (valid, missing, tampered, wrong URL, unknown
account), inbound SMS into conversations and routing, de-duplication (also concurrent), opt-out keywords,
MMS media, and status callbacks arriving twice or out of order."""

from __future__ import annotations

import threading

import pytest
from django.test import Client
from django.urls import reverse

from channels_app.sms.models import SmsInbound, SmsOptOut
from channels_app.sms.services import sms_send
from contacts.models import ContactPoint
from conversations.models import Attachment, Conversation, Interaction, Medium, Message, Offer, Outbox, TimelineEntry
from conversations.outbox import outbox_deliver
from core.groups import agent_group
from tests.sms.conftest import AUTH_TOKEN, CUSTOMER, inbound_params, run_inbound_tasks, signed_post, status_params

pytestmark = pytest.mark.django_db

INBOUND = "/sms/twilio/inbound/"
STATUS = "/sms/twilio/status/"


def test_paths_are_the_named_urls():
    assert reverse("sms:twilio-inbound") == INBOUND
    assert reverse("sms:twilio-status") == STATUS


# --- signatures ---------------------------------------------------------------------------------------


def test_valid_signature_is_accepted(client, sms_number):
    response = signed_post(client, INBOUND, inbound_params(sid="SM1", body="Hi"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert run_inbound_tasks() == [SmsInbound.State.DONE]
    assert Message.objects.filter(provider_message_id="SM1").exists()


def test_missing_signature_is_refused(client, sms_number):
    response = client.post(INBOUND, inbound_params(sid="SM1", body="Hi"))
    assert response.status_code == 403
    assert not SmsInbound.objects.exists()
    assert not Message.objects.exists() and not Conversation.objects.exists()


def test_tampered_payload_is_refused(client, sms_number):
    params = inbound_params(sid="SM1", body="Hi")
    from django.conf import settings

    from tests.sms.twilio_server import twilio_signature

    signature = twilio_signature(auth_token=AUTH_TOKEN, url=settings.PUBLIC_BASE_URL + INBOUND, params=params)
    response = client.post(INBOUND, {**params, "Body": "Send me money"}, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403
    assert not SmsInbound.objects.exists() and not Message.objects.exists()


def test_signature_for_another_url_is_refused(client, sms_number):
    response = signed_post(client, INBOUND, inbound_params(sid="SM1", body="Hi"), url="https://evil.example" + INBOUND)
    assert response.status_code == 403
    assert not SmsInbound.objects.exists()


def test_signature_with_a_wrong_token_is_refused(client, sms_number):
    response = signed_post(client, INBOUND, inbound_params(sid="SM1", body="Hi"), token="not-the-token")
    assert response.status_code == 403
    assert not SmsInbound.objects.exists()


def test_unknown_account_is_refused(client, sms_number):
    params = {**inbound_params(sid="SM1", body="Hi"), "AccountSid": "AC" + "9" * 32}
    assert signed_post(client, INBOUND, params).status_code == 403


def test_signature_follows_the_public_base_url(client, sms_number, settings):
    settings.PUBLIC_BASE_URL = "https://parley.example.com"
    assert signed_post(client, INBOUND, inbound_params(sid="SM1", body="Hi")).status_code == 200
    params = inbound_params(sid="SM2", body="Hi")
    assert signed_post(client, INBOUND, params, url="http://127.0.0.1:8000" + INBOUND).status_code == 403


def test_status_webhook_checks_the_signature(client, sms_number):
    assert client.post(STATUS, status_params(sid="SMx", status="delivered")).status_code == 403


def test_webhooks_only_take_post(client, sms_number):
    assert client.get(INBOUND).status_code == 405


# --- inbound into conversations ----------------------------------------------------------------------


def test_sms_from_an_unknown_number_opens_a_conversation_queued_and_offered(
    client, sms_number, ready_agent, django_capture_on_commit_callbacks
):
    signed_post(client, INBOUND, inbound_params(sid="SM1", body="Hello?", from_="+491609999999"))
    # The routing the task's transaction queues runs on its commit.
    with django_capture_on_commit_callbacks(execute=True):
        run_inbound_tasks()
    message = Message.objects.get(provider_message_id="SM1")
    assert message.medium == Medium.SMS and message.body == "Hello?"
    point = ContactPoint.objects.get(kind=ContactPoint.Kind.PHONE, value="+491609999999")
    assert message.conversation.contact_id == point.contact_id
    interaction = message.interaction
    interaction.refresh_from_db()
    assert interaction.state == Interaction.State.OFFERED
    assert Offer.objects.get(interaction=interaction).agent_id == ready_agent.user_id
    assert interaction.details == {"phone": "+491609999999", "number": sms_number.phone_number}


def test_national_format_is_read_in_the_default_region(client, sms_number, contact):
    signed_post(client, INBOUND, inbound_params(sid="SM1", body="Hi", from_="0170 1234567"))
    run_inbound_tasks()
    assert Message.objects.get(provider_message_id="SM1").conversation.contact_id == contact.pk


def test_sms_reply_joins_open_conversation_live_on_the_agents_screen(
    client, sms_number, chat_conversation, ready_agent, django_capture_on_commit_callbacks, monkeypatch
):
    published = []
    monkeypatch.setattr("core.realtime._send", lambda group, event: published.append((group, event)))
    signed_post(client, INBOUND, inbound_params(sid="SM1", body="Thanks, got it"))
    assert published == []  # the acknowledgement publishes nothing; the task does, after its commit
    with django_capture_on_commit_callbacks(execute=True):
        run_inbound_tasks()
    message = Message.objects.get(provider_message_id="SM1")
    assert message.conversation_id == chat_conversation.pk
    assert message.interaction.state == Interaction.State.ACTIVE
    assert message.interaction.agent_id == ready_agent.user_id
    assert (
        agent_group(ready_agent.user_id),
        {"type": "conversation.timeline", "conversation": str(chat_conversation.uuid), "entry_id": message.entry.pk},
    ) in published


def test_reply_joins_the_thread_the_agent_started(client, sms_number, chat_conversation, ready_agent):
    sent = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="Summary")
    signed_post(client, INBOUND, inbound_params(sid="SM1", body="Thanks"))
    run_inbound_tasks()
    assert Message.objects.get(provider_message_id="SM1").interaction_id == sent.interaction_id


def test_duplicate_delivery_gives_one_message(client, sms_number):
    for _attempt in range(3):
        assert signed_post(client, INBOUND, inbound_params(sid="SMdup", body="Hi")).status_code == 200
    assert SmsInbound.objects.filter(message_sid="SMdup").count() == 1
    run_inbound_tasks()
    assert Message.objects.filter(provider_message_id="SMdup").count() == 1
    assert Interaction.objects.filter(medium=Medium.SMS).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_give_exactly_one_message(sms_number):
    from django.db import connection

    params = inbound_params(sid="SMconc", body="Hi", from_="+491608888888")
    barrier = threading.Barrier(3)
    statuses = []

    def post() -> None:
        try:
            barrier.wait()
            statuses.append(signed_post(Client(), INBOUND, params).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200, 200, 200]
    assert SmsInbound.objects.filter(message_sid="SMconc").count() == 1
    run_inbound_tasks()
    assert Message.objects.filter(provider_message_id="SMconc").count() == 1
    assert Interaction.objects.filter(medium=Medium.SMS).count() == 1
    assert Conversation.objects.count() == 1


def test_sms_to_an_unconfigured_number_is_acknowledged_and_ignored(client, sms_number):
    response = signed_post(client, INBOUND, inbound_params(sid="SM1", body="Hi", to="+4930999999"))
    assert response.status_code == 200
    assert run_inbound_tasks() == [SmsInbound.State.IGNORED]
    assert not Message.objects.exists()


# --- opt-out --------------------------------------------------------------------------------------------


def test_stop_opts_out_and_the_agent_sees_why(client, sms_number, chat_conversation, ready_agent, agent_client):
    signed_post(client, INBOUND, inbound_params(sid="SM1", body=" stop "))
    run_inbound_tasks()
    assert SmsOptOut.objects.get(phone_number=CUSTOMER).keyword == "STOP"
    event = TimelineEntry.objects.get(conversation=chat_conversation, kind=TimelineEntry.Kind.CHANNEL_EVENT)
    assert event.data["event"] == "opted_out"
    page = agent_client.get(reverse("conversations:page", args=[chat_conversation.uuid])).content.decode()
    assert "opted out of SMS" in page
    assert 'value="sms" disabled' in page


def test_start_opts_back_in(client, sms_number, chat_conversation, ready_agent):
    signed_post(client, INBOUND, inbound_params(sid="SM1", body="STOP"))
    signed_post(client, INBOUND, inbound_params(sid="SM2", body="START"))
    assert run_inbound_tasks() == [SmsInbound.State.DONE, SmsInbound.State.DONE]
    assert not SmsOptOut.objects.exists()
    sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="Welcome back")


def test_stop_inside_a_sentence_is_not_an_opt_out(client, sms_number):
    signed_post(client, INBOUND, inbound_params(sid="SM1", body="Please stop calling me at work"))
    run_inbound_tasks()
    assert Message.objects.filter(provider_message_id="SM1").exists()
    assert not SmsOptOut.objects.exists()


# --- MMS --------------------------------------------------------------------------------------------------


def test_mms_picture_is_stored_as_an_attachment_by_the_task(
    client, sms_number, fake_twilio, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        response = signed_post(client, INBOUND, inbound_params(sid="MM1", body="", media=1))
        with django_capture_on_commit_callbacks(execute=True):
            run_inbound_tasks()
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 200
    [attachment] = Attachment.objects.filter(message__provider_message_id="MM1")
    assert attachment.content_type == "image/png" and attachment.filename == "mms-1.png"
    assert attachment.file.read().startswith(b"\x89PNG")


# --- status callbacks ----------------------------------------------------------------------------------------


def _sent_message(chat_conversation, ready_agent) -> tuple[Message, str]:
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="status me")
    row = Outbox.objects.get(message=message)
    assert outbox_deliver(outbox_id=row.pk) == "sent"
    message.refresh_from_db()
    return message, str(row.idempotency_key)


def test_status_callbacks_move_the_message_forward(client, sms_number, chat_conversation, ready_agent):
    message, key = _sent_message(chat_conversation, ready_agent)
    path = f"{STATUS}?k={key}"
    assert (
        signed_post(client, path, status_params(sid=message.provider_message_id, status="delivered")).status_code == 204
    )
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.DELIVERED


def test_status_callbacks_out_of_order_or_twice_never_move_backwards(
    client, sms_number, chat_conversation, ready_agent
):
    message, key = _sent_message(chat_conversation, ready_agent)
    path = f"{STATUS}?k={key}"
    for status in ("delivered", "sent", "queued", "delivered", "sent"):
        signed_post(client, path, status_params(sid=message.provider_message_id, status=status))
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.DELIVERED


def test_failed_status_shows_the_reason_and_the_retry_button(
    client, sms_number, chat_conversation, ready_agent, agent_client
):
    message, key = _sent_message(chat_conversation, ready_agent)
    signed_post(
        client,
        f"{STATUS}?k={key}",
        status_params(sid=message.provider_message_id, status="undelivered", error_code="30003"),
    )
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.UNDELIVERED
    assert "30003" in message.status_reason
    page = agent_client.get(reverse("conversations:page", args=[chat_conversation.uuid])).content.decode()
    assert reverse("conversations:retry", args=[chat_conversation.uuid, message.pk]) in page


def test_status_callback_before_the_send_was_recorded_still_counts(client, sms_number, chat_conversation, ready_agent):
    message = sms_send(conversation=chat_conversation, agent_user=ready_agent.user, text="fast carrier")
    key = str(Outbox.objects.get(message=message).idempotency_key)
    signed_post(client, f"{STATUS}?k={key}", status_params(sid="SMnotyetknown", status="delivered"))
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.DELIVERED
    # The worker's own (older) result arrives afterwards: it records the SID but never moves the status back.
    assert outbox_deliver(outbox_id=Outbox.objects.get(message=message).pk) == "sent"
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.DELIVERED


def test_late_callback_of_an_attempt_the_agent_retried_is_ignored(
    client, sms_number, chat_conversation, ready_agent, fake_twilio
):
    from conversations.outbox import outbox_retry

    message, old_key = _sent_message(chat_conversation, ready_agent)
    signed_post(client, f"{STATUS}?k={old_key}", status_params(sid=message.provider_message_id, status="failed"))
    outbox_retry(message=message, actor=ready_agent.user)
    signed_post(client, f"{STATUS}?k={old_key}", status_params(sid=message.provider_message_id, status="failed"))
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.QUEUED


def test_status_callback_with_a_tampered_key_is_refused(client, sms_number, chat_conversation, ready_agent):
    from django.conf import settings

    from tests.sms.twilio_server import twilio_signature

    message, key = _sent_message(chat_conversation, ready_agent)
    params = status_params(sid=message.provider_message_id, status="failed")
    signature = twilio_signature(
        auth_token=AUTH_TOKEN, url=f"{settings.PUBLIC_BASE_URL}{STATUS}?k=other", params=params
    )
    assert client.post(f"{STATUS}?k={key}", params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 403
