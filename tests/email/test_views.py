"""The email channel's views, each as the allowed user and as one who must be refused."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import AgentState
from channels_app.email.models import Mailbox, ParkedEmail, TranscriptRequest
from channels_app.email.services import email_receive
from conversations.models import Interaction, Offer
from tests.email.mail import mail

pytestmark = pytest.mark.django_db

HOSTILE = '<p>Hi<img src="https://tracker.example/p.gif" onerror="alert(1)"><script>alert(2)</script></p>'


@pytest.fixture
def html_mail(chat_conversation):
    return email_receive(raw=mail(html=HOSTILE, text="Hi")).message


def test_frame_serves_sanitised_html_with_its_own_strict_policy(agent_client, html_mail):
    response = agent_client.get(reverse("email:frame", args=[html_mail.pk]))
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; img-src data:;")
    assert "sandbox" in policy and "script-src" not in policy
    assert "frame-ancestors 'self'" in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    body = response.content.decode()
    assert "<script" not in body.split("</head>")[1] and "onerror" not in body
    assert 'src="https://tracker.example/p.gif"' in body  # kept, but the policy blocks it


def test_frame_allows_remote_images_only_when_asked(agent_client, html_mail):
    response = agent_client.get(reverse("email:frame", args=[html_mail.pk]) + "?images=1")
    assert "img-src data: https: http:;" in response["Content-Security-Policy"]


def test_frame_refused_to_another_agent_and_to_anonymous(other_agent_client, anonymous_client, html_mail):
    assert other_agent_client.get(reverse("email:frame", args=[html_mail.pk])).status_code == 404
    assert anonymous_client.get(reverse("email:frame", args=[html_mail.pk])).status_code == 302


def test_frame_open_to_supervisors(supervisor_client, html_mail):
    assert supervisor_client.get(reverse("email:frame", args=[html_mail.pk])).status_code == 200


def test_timeline_embeds_the_frame_sandboxed_with_a_show_images_link(agent_client, chat_conversation, html_mail):
    page = agent_client.get(reverse("conversations:page", args=[chat_conversation.uuid])).content.decode()
    assert f'src="{reverse("email:frame", args=[html_mail.pk])}"' in page
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    assert "1 remote image is blocked." in page
    assert "<script>alert" not in page


def test_inbound_attachment_downloadable_by_the_agent_only(agent_client, other_agent_client, chat_conversation):
    message = email_receive(raw=mail(attachments=[("a.txt", "text/plain", b"secret")])).message
    url = reverse("conversations:attachment", args=[message.attachments.get().pk])
    assert agent_client.get(url).status_code == 200
    assert other_agent_client.get(url).status_code == 404


def _offered_email(ready_agent, django_capture_on_commit_callbacks) -> Offer:
    with django_capture_on_commit_callbacks(execute=True):
        email_receive(raw=mail(sender="new@example.com", subject="Question"))
    return Offer.objects.get(agent=ready_agent.user, state=Offer.State.PENDING)


def test_email_offer_shows_postpone_and_postponing_parks_it_in_the_personal_queue(
    ready_agent, agent_client, django_capture_on_commit_callbacks
):
    offer = _offered_email(ready_agent, django_capture_on_commit_callbacks)
    desktop = agent_client.get(reverse("desktop")).content.decode()
    assert f'id="offer-postpone-{offer.pk}"' in desktop
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post(reverse("email:offer-postpone", args=[offer.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    parked = ParkedEmail.objects.get()
    interaction = parked.interaction
    interaction.refresh_from_db()
    assert interaction.state == Interaction.State.QUEUED and interaction.service is None
    # Routing leaves it alone: no new offer, for this agent or anyone.
    assert not Offer.objects.filter(state=Offer.State.PENDING).exists()
    queue = agent_client.get(reverse("email:queue")).content.decode()
    assert "new@example.com" in queue or interaction.conversation.contact.display_name in queue
    response = agent_client.post(reverse("email:parked-take", args=[parked.pk]))
    assert response.status_code == 302
    interaction.refresh_from_db()
    assert interaction.state == Interaction.State.ACTIVE and interaction.agent == ready_agent.user
    assert interaction.service == parked.service
    assert not ParkedEmail.objects.exists()


def test_another_agent_cannot_postpone_or_take(
    ready_agent, other_agent, other_agent_client, django_capture_on_commit_callbacks
):
    offer = _offered_email(ready_agent, django_capture_on_commit_callbacks)
    other_agent_client.post(reverse("email:offer-postpone", args=[offer.pk]), HTTP_HX_REQUEST="true")
    offer.refresh_from_db()
    assert offer.state == Offer.State.PENDING
    assert not ParkedEmail.objects.exists()


def test_team_queue_shows_unassigned_email_with_waiting_time(agent, agent_client, email_service):
    agent.services.add(email_service)
    agent.state = AgentState.NOT_READY
    agent.save()
    email_receive(raw=mail(sender="Waiting Person <wait@example.com>", subject="Still waiting"))
    page = agent_client.get(reverse("email:queue")).content.decode()
    assert "Waiting Person" in page
    assert 'class="timer"' in page


def test_queue_page_refused_to_non_agents(plain_user, anonymous_client):
    from django.test import Client

    from tests.factories import TEST_PASSWORD

    client = Client()
    client.login(username=plain_user.username, password=TEST_PASSWORD)
    assert client.get(reverse("email:queue")).status_code == 404
    assert anonymous_client.get(reverse("email:queue")).status_code == 302


def test_signature_page_saves_the_agents_own_signature(agent, agent_client, anonymous_client):
    response = agent_client.post(reverse("email:signature"), {"body": "Anna · Parley Travel"})
    assert response.status_code == 200
    assert agent.user.email_signature.body == "Anna · Parley Travel"
    assert anonymous_client.post(reverse("email:signature"), {"body": "x"}).status_code == 302


def test_signature_post_needs_csrf(agent):
    from django.test import Client

    from tests.factories import TEST_PASSWORD

    client = Client(enforce_csrf_checks=True)
    client.login(username=agent.user.username, password=TEST_PASSWORD)
    assert client.post(reverse("email:signature"), {"body": "x"}).status_code == 403


def test_admin_never_shows_the_mailbox_password_back(supervisor_client, email_service):
    mailbox = Mailbox.objects.create(
        name="Support",
        address="support@example.test",
        host="imap.example.test",
        username="u",
        password="very-secret-password",
    )
    page = supervisor_client.get(reverse("admin:channel_email_mailbox_change", args=[mailbox.pk])).content.decode()
    assert "very-secret-password" not in page
    assert "••••••rd" in page
    # Saving without a new password keeps the stored one.
    data = {
        "name": "Support",
        "address": "support@example.test",
        "host": "imap.example.test",
        "port": 993,
        "security": "tls",
        "verify_certificate": "on",
        "username": "u",
        "password": "",
        "folder": "INBOX",
        "after_processing": "flag",
        "move_to": "",
        "is_active": "on",
    }
    response = supervisor_client.post(reverse("admin:channel_email_mailbox_change", args=[mailbox.pk]), data)
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.password == "very-secret-password"


def test_admin_mailboxes_refused_to_agents(agent_client):
    response = agent_client.get(reverse("admin:channel_email_mailbox_changelist"))
    assert response.status_code == 302


# --- chat transcript ------------------------------------------------------------------------------------------------


@pytest.fixture
def chat_session(db):
    from channels_app.webchat.services import chat_start
    from tests.factories import ServiceFactory

    service = ServiceFactory(slug="support")
    return chat_start(service=service, data={"name": "Jane Doe", "question": "Hello", "email": "", "phone": ""})


def _transcript(client, token, address="jane@example.com", origin="http://testserver"):
    return client.post(
        reverse("email:transcript"), {"email": address}, HTTP_X_PARLEY_CHAT_TOKEN=token, HTTP_ORIGIN=origin
    )


def test_transcript_is_sent_to_the_customer(chat_session, smtp, anonymous_client, django_capture_on_commit_callbacks):
    from channels_app.email.transports import transcript_deliver
    from channels_app.webchat.services import session_token

    with django_capture_on_commit_callbacks(execute=True):
        response = _transcript(anonymous_client, session_token(chat_session))
    assert response.status_code == 202
    request = TranscriptRequest.objects.get()
    assert transcript_deliver(request_id=request.pk) is True
    received = smtp.received[0].message
    assert smtp.received[0].rcpt_tos == ["jane@example.com"]
    assert "Hello" in received.get_content()
    assert received["Auto-Submitted"] == "auto-generated"
    # Only once per chat.
    assert _transcript(anonymous_client, session_token(chat_session)).status_code == 400
    assert transcript_deliver(request_id=request.pk) is False


def test_transcript_refused_without_a_valid_token_or_from_another_site(chat_session, anonymous_client):
    from channels_app.webchat.services import session_token

    assert _transcript(anonymous_client, "forged").status_code == 403
    assert _transcript(anonymous_client, session_token(chat_session), origin="https://evil.example").status_code == 403
    assert not TranscriptRequest.objects.exists()
