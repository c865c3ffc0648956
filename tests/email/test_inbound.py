"""Inbound mail: threading (headers, subject token, sender's contact), auto-replies, bounces, duplicates."""

from __future__ import annotations

import pytest
from django.urls import reverse

from channels_app.email.models import EmailMeta
from channels_app.email.services import email_receive
from conversations.models import Conversation, Interaction, Medium, Message, Offer, Outbox, TimelineEntry
from conversations.outbox import outbox_deliver
from tests.email.mail import bounce, mail

pytestmark = pytest.mark.django_db


def _send(client, conversation, smtp, capture, **fields):
    data = {"channel": "email", "text": "Your booking is confirmed.", "email_subject": "Booking"}
    data.update(fields)
    with capture(execute=True):
        client.post(reverse("conversations:send", args=[conversation.uuid]), data, HTTP_HX_REQUEST="true")
    message = Message.objects.filter(conversation=conversation, medium=Medium.EMAIL).latest("id")
    outbox_deliver(outbox_id=Outbox.objects.get(message=message).pk)
    message.refresh_from_db()
    return message


def test_new_mail_opens_a_conversation_queued_and_offered_with_the_email_share(
    ready_agent, email_service, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = email_receive(raw=mail(subject="Change my booking", text="Please move it to Friday."))
    assert result.outcome == "message"
    message = result.message
    conversation = message.conversation
    assert conversation.contact.points.get().value == "jane@example.com"
    assert conversation.contact.first_name == "Jane"
    assert message.subject == "Change my booking"
    assert message.body == "Please move it to Friday."
    interaction = message.interaction
    assert interaction.medium == Medium.EMAIL
    assert interaction.service == email_service
    offer = Offer.objects.get(interaction=interaction)
    assert offer.agent == ready_agent.user
    interaction.refresh_from_db()
    assert interaction.state == Interaction.State.OFFERED


def test_reply_threads_by_in_reply_to_into_the_open_conversation(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    sent = _send(agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks)
    # From another address and with a changed subject: the headers decide.
    raw = mail(sender="j.doe@work.example", subject="something else", in_reply_to=sent.email.rfc_message_id)
    result = email_receive(raw=raw)
    assert result.outcome == "message"
    assert result.message.conversation_id == chat_conversation.pk
    # It joins the live email thread the agent started.
    assert result.message.interaction_id == sent.interaction_id


def test_reply_threads_by_subject_token_when_headers_are_missing(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    sent = _send(agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks)
    token = chat_conversation.email_thread.token
    result = email_receive(raw=mail(sender="other@example.org", subject=f"AW: Booking [#{token}]"))
    assert result.message.conversation_id == chat_conversation.pk
    assert sent.interaction_id == result.message.interaction_id


def test_unknown_thread_from_known_sender_joins_their_open_conversation(chat_conversation):
    result = email_receive(raw=mail(subject="A new question"))
    assert result.message.conversation_id == chat_conversation.pk
    # The agent is working the conversation (the chat), so the mail is theirs at once.
    assert result.message.interaction.state == Interaction.State.ACTIVE
    assert result.message.interaction.agent_id == chat_conversation.assigned_agent_id


def test_reply_to_a_closed_conversation_opens_a_new_one(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    from conversations.services import conversation_close

    sent = _send(agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks)
    conversation_close(conversation=chat_conversation)
    result = email_receive(raw=mail(in_reply_to=sent.email.rfc_message_id))
    assert result.message.conversation_id != chat_conversation.pk
    assert result.message.conversation.contact_id == chat_conversation.contact_id


def test_same_mail_twice_is_stored_once(email_service):
    raw = mail(message_id="<once@example.com>")
    assert email_receive(raw=raw).outcome == "message"
    assert email_receive(raw=raw).outcome == "duplicate"
    assert Message.objects.filter(provider_message_id="<once@example.com>").count() == 1
    assert EmailMeta.objects.filter(rfc_message_id="<once@example.com>").count() == 1


@pytest.mark.parametrize(
    "headers",
    [{"Auto-Submitted": "auto-replied"}, {"X-Autoreply": "yes"}, {"Precedence": "auto_reply"}],
)
def test_auto_reply_never_opens_a_conversation(email_service, headers):
    result = email_receive(raw=mail(subject="Out of office", headers=headers))
    assert result.outcome == "auto_reply"
    assert not Conversation.objects.exists()


def test_auto_reply_to_our_mail_is_noted_on_the_thread(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    sent = _send(agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks)
    raw = mail(
        subject="Out of office", in_reply_to=sent.email.rfc_message_id, headers={"Auto-Submitted": "auto-replied"}
    )
    assert email_receive(raw=raw).outcome == "auto_reply"
    entry = TimelineEntry.objects.filter(conversation=chat_conversation, kind=TimelineEntry.Kind.CHANNEL_EVENT).get()
    assert entry.data == {"medium": "email", "event": "auto_reply", "subject": "Out of office"}
    assert Message.objects.filter(conversation=chat_conversation, direction="inbound").count() == 0


def test_bounce_marks_the_original_failed_with_the_reason_and_opens_nothing(
    agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks
):
    sent = _send(agent_client, chat_conversation, smtp, django_capture_on_commit_callbacks)
    assert sent.delivery_status == Message.Status.SENT
    conversations_before = Conversation.objects.count()
    result = email_receive(raw=bounce(original_message_id=sent.email.rfc_message_id))
    assert result.outcome == "bounce"
    sent.refresh_from_db()
    assert sent.delivery_status == Message.Status.FAILED
    assert "550 5.1.1 No such user" in sent.status_reason
    assert Conversation.objects.count() == conversations_before
    # Sending again to an address that bounced is refused with a reason.
    response = agent_client.post(
        reverse("conversations:retry", args=[chat_conversation.uuid, sent.pk]), HTTP_HX_REQUEST="true"
    )
    assert "bounced" in response.content.decode()


def test_bounce_for_an_unknown_message_is_dropped(email_service):
    assert email_receive(raw=bounce(original_message_id="<not-ours@example.com>")).outcome == "bounce"
    assert not Conversation.objects.exists()


def test_html_mail_is_sanitised_and_quoted_history_split(email_service):
    html = (
        '<p onclick="alert(1)">New <b>text</b><script>alert(2)</script><img src="https://track.example/p.gif"></p>'
        '<div class="gmail_quote">On Mon, Jane wrote:<blockquote>old text</blockquote></div>'
    )
    text = "New text\n\nOn Mon, 1 Jan 2026, Agent <a@parley.test> wrote:\n> old text\n"
    result = email_receive(raw=mail(text=text, html=html))
    meta = result.message.email
    assert result.message.body == "New text"
    assert meta.quoted_text.startswith("On Mon, 1 Jan 2026")
    assert "script" not in meta.html and "onclick" not in meta.html and "alert" not in meta.html
    assert '<details class="quoted">' in meta.html
    assert meta.remote_images == 1


def test_attachments_of_inbound_mail_are_stored(email_service):
    raw = mail(attachments=[("photo.jpg", "image/jpeg", b"\xff\xd8\xff fake jpeg")])
    message = email_receive(raw=raw).message
    attachment = message.attachments.get()
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "photo.jpg",
        "image/jpeg",
        len(b"\xff\xd8\xff fake jpeg"),
    )
