"""Outbound email from the workspace composer, received by a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from channels_app.email.models import EmailMeta, EmailSignature, EmailThread
from channels_app.email.services import email_receive
from contacts.models import ContactPoint
from contacts.services import contact_follow_up
from conversations.models import Direction, Interaction, Medium, Message, Outbox
from conversations.outbox import outbox_deliver
from tests.email.mail import mail
from tests.factories import ContactFactory, ContactPointFactory

pytestmark = pytest.mark.django_db(transaction=False)


def _compose(client, conversation, **fields):
    data = {"channel": "email", "text": "Your booking is now on 14 May.", "email_subject": "Updated booking"}
    data.update(fields)
    return client.post(reverse("conversations:send", args=[conversation.uuid]), data, HTTP_HX_REQUEST="true")


def _deliver(message: Message) -> str:
    return outbox_deliver(outbox_id=Outbox.objects.get(message=message).pk)


def test_agent_emails_updated_booking_with_attachment_and_threading_headers(
    agent_client, chat_conversation, smtp, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_MESSAGE_ID_DOMAIN = "mail.parley.test"
    pdf = SimpleUploadedFile("booking.pdf", b"%PDF-1.4 booking", content_type="application/pdf")
    with django_capture_on_commit_callbacks(execute=True):
        response = _compose(agent_client, chat_conversation, email_attachments=pdf)
    assert response.status_code == 200
    message = Message.objects.get(conversation=chat_conversation, medium=Medium.EMAIL)
    assert message.delivery_status == Message.Status.QUEUED
    token = EmailThread.objects.get(conversation=chat_conversation).token
    assert message.subject == f"Updated booking [#{token}]"

    assert _deliver(message) == "sent"

    message.refresh_from_db()
    assert message.delivery_status == Message.Status.SENT
    assert len(smtp.received) == 1
    received = smtp.received[0]
    assert received.rcpt_tos == ["jane@example.com"]
    parsed = received.message
    meta = EmailMeta.objects.get(message=message)
    assert parsed["Message-ID"] == meta.rfc_message_id
    assert parsed["Message-ID"].endswith("@mail.parley.test>")
    assert message.provider_message_id == meta.rfc_message_id
    assert parsed["Subject"] == f"Updated booking [#{token}]"
    assert "In-Reply-To" not in parsed
    assert parsed.get_body(("plain",)).get_content().strip() == "Your booking is now on 14 May."
    assert "<p>Your booking is now on 14 May.</p>" in parsed.get_body(("html",)).get_content()
    attachments = list(parsed.iter_attachments())
    assert [(a.get_filename(), a.get_content_type(), a.get_content()) for a in attachments] == [
        ("booking.pdf", "application/pdf", b"%PDF-1.4 booking")
    ]
    # The chat stays live next to the new email thread.
    live = set(chat_conversation.interactions.live().values_list("medium", flat=True))
    assert live == {Medium.CHAT, Medium.EMAIL}


def test_reply_carries_in_reply_to_and_references_of_the_customer_mail(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation)
    first = Message.objects.get(conversation=chat_conversation, medium=Medium.EMAIL)
    _deliver(first)
    first_id = first.email.rfc_message_id
    # The customer answers the first mail.
    result = email_receive(
        raw=mail(
            subject="Re: Updated booking",
            message_id="<answer-1@example.com>",
            in_reply_to=first_id,
            references=first_id,
            text="Thanks! Can I bring a dog?",
        )
    )
    assert result.outcome == "message"
    assert result.message.conversation_id == chat_conversation.pk
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation, text="Yes, dogs are welcome.", email_subject="Re: Updated booking")
    second = Message.objects.filter(conversation=chat_conversation, direction=Direction.OUTBOUND).latest("id")
    _deliver(second)
    parsed = smtp.received[-1].message
    assert parsed["In-Reply-To"] == "<answer-1@example.com>"
    assert parsed["References"].split() == [first_id, "<answer-1@example.com>"]
    assert parsed["Subject"].endswith(f"[#{chat_conversation.email_thread.token}]")
    assert parsed["Subject"].count("[#") == 1


def test_signature_is_appended_when_ticked(
    agent, agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    EmailSignature.objects.create(user=agent.user, body="Anna\nParley Travel")
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation, email_signature="1")
    message = Message.objects.get(conversation=chat_conversation, medium=Medium.EMAIL)
    assert message.body.endswith("\n\n-- \nAnna\nParley Travel")
    _deliver(message)
    assert "-- \nAnna\nParley Travel" in smtp.received[0].message.get_body(("plain",)).get_content().replace(
        "\r\n", "\n"
    )


def test_recipient_refused_with_5xx_fails_the_message_with_the_reason(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    smtp.refuse["jane@example.com"] = "550 5.1.1 <jane@example.com>: Recipient address rejected"
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation)
    message = Message.objects.get(conversation=chat_conversation, medium=Medium.EMAIL)
    assert _deliver(message) == "failed"
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.FAILED
    assert "550" in message.status_reason
    assert smtp.received == []


def test_recipient_refused_with_4xx_is_retried(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    smtp.refuse["jane@example.com"] = "451 4.7.1 Try again later"
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation)
    message = Message.objects.get(conversation=chat_conversation, medium=Medium.EMAIL)
    assert _deliver(message) == "retry"
    row = Outbox.objects.get(message=message)
    assert row.state == Outbox.State.PENDING
    assert row.attempts == 1


def test_unreachable_server_is_a_transient_error(
    agent_client, chat_conversation, settings, django_capture_on_commit_callbacks
):
    from tests.live import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation)
    message = Message.objects.get(conversation=chat_conversation, medium=Medium.EMAIL)
    assert _deliver(message) == "retry"
    message.refresh_from_db()
    assert message.delivery_status == Message.Status.QUEUED
    assert "Retrying" in message.status_reason


def test_resend_after_a_lost_claim_carries_the_same_message_id(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    """A worker that died after handing the mail over is re-sent by the sweep with the same Message-ID."""
    from datetime import timedelta

    from django.utils import timezone

    from conversations.outbox import outbox_sweep

    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation)
    message = Message.objects.get(conversation=chat_conversation, medium=Medium.EMAIL)
    row = Outbox.objects.get(message=message)
    # The dead worker's attempt: claimed and handed over, but the result never recorded.
    from channels_app.email.transports import email_transport

    email_transport(message, str(row.idempotency_key))
    Outbox.objects.filter(pk=row.pk).update(
        state=Outbox.State.SENDING, claimed_at=timezone.now() - timedelta(hours=1), claim_token=row.idempotency_key
    )
    outbox_sweep()
    assert _deliver(message) == "sent"
    assert len(smtp.received) == 2
    assert smtp.received[0].message["Message-ID"] == smtp.received[1].message["Message-ID"]


def test_other_agent_cannot_send_into_the_conversation(other_agent_client, chat_conversation, smtp):
    response = _compose(other_agent_client, chat_conversation)
    assert response.status_code == 404
    assert not Message.objects.filter(medium=Medium.EMAIL).exists()


def test_contact_without_email_address_cannot_be_emailed(agent, agent_client, email_service):
    from tests.factories import ConversationFactory

    point = ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+4915112345678")
    conversation = ConversationFactory(contact=point.contact, service=email_service, assigned_agent=agent.user)
    response = _compose(agent_client, conversation)
    assert "no email address" in response.content.decode()
    assert not Message.objects.filter(medium=Medium.EMAIL).exists()


def test_follow_up_by_email_defaults_the_composer_to_email_and_sends(
    agent, agent_client, email_service, smtp, django_capture_on_commit_callbacks
):
    from agents.models import AgentState

    agent.state = AgentState.READY
    agent.save()
    contact = ContactFactory()
    ContactPointFactory(contact=contact, kind=ContactPoint.Kind.EMAIL, value="follow@example.com")
    conversation = contact_follow_up(actor=agent.user, contact=contact, medium=Medium.EMAIL, service=email_service)
    page = agent_client.get(reverse("conversations:page", args=[conversation.uuid]))
    html = page.content.decode()
    assert 'data-channel="email"' in html
    # Email is the default channel here, so its fields load at once (hx-trigger "load").
    fields_url = reverse("email:composer-fields", args=[conversation.uuid])
    assert f'hx-get="{fields_url}"' in html
    assert 'hx-trigger="load"' in html
    fields = agent_client.get(fields_url).content.decode()
    assert 'name="email_to" type="email" value="follow@example.com"' in fields
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, conversation, text="Following up on your request.")
    message = Message.objects.get(conversation=conversation, medium=Medium.EMAIL)
    # The follow-up's own outbound interaction carries the mail; no second one is started.
    assert conversation.interactions.filter(medium=Medium.EMAIL).count() == 1
    assert message.interaction.state == Interaction.State.ACTIVE
    assert _deliver(message) == "sent"
    assert smtp.received[0].rcpt_tos == ["follow@example.com"]


def test_done_with_email_ends_the_email_thread(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _compose(agent_client, chat_conversation)
    response = agent_client.post(reverse("email:end", args=[chat_conversation.uuid]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert not chat_conversation.interactions.live().filter(medium=Medium.EMAIL).exists()


def test_other_agent_cannot_end_the_email_thread(other_agent_client, chat_conversation):
    response = other_agent_client.post(reverse("email:end", args=[chat_conversation.uuid]))
    assert response.status_code == 404


def test_rolled_back_send_sends_nothing(agent, chat_conversation, smtp, django_capture_on_commit_callbacks):
    from django.db import transaction

    from channels_app.email.services import email_send

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                email_send(
                    conversation=chat_conversation,
                    agent_user=agent.user,
                    to="jane@example.com",
                    subject="Booking",
                    text="Never leaves",
                )
                raise RuntimeError("something after the send failed")
        except RuntimeError:
            pass
    assert callbacks == []
    assert not Outbox.objects.exists()
    assert not Message.objects.filter(medium=Medium.EMAIL).exists()
    assert smtp.received == []
