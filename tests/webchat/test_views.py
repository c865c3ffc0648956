"""The customer's chat over HTTP: the page, the embed script, the demo page, file upload and download."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from channels_app.webchat import selectors, services
from channels_app.webchat.models import ChatSession
from conversations.models import Attachment, Direction, Interaction, Message, TimelineEntry
from conversations.services import interaction_answer
from core import realtime
from tests.factories import AgentFactory, ServiceFactory

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 64
ORIGIN = "http://testserver"


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path / "media"
    # Events are published on commit; these tests look at HTTP only.
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


@pytest.fixture
def service(db):
    return ServiceFactory(name="Bookings", slug="bookings")


@pytest.fixture
def session(service) -> ChatSession:
    return services.chat_start(service=service, data={"name": "Anna Berg", "question": "Hello"})


def upload(client: Client, token: str | None, name: str, content: bytes, content_type: str, **headers):
    headers.setdefault("HTTP_ORIGIN", ORIGIN)
    if token is not None:
        headers["HTTP_X_PARLEY_CHAT_TOKEN"] = token
    file = SimpleUploadedFile(name, content, content_type=content_type)
    return client.post(reverse("webchat:attachment-upload"), {"file": file}, **headers)


def input_tag(html: str, name: str) -> str:
    match = re.search(rf'<(input|textarea) id="prechat-{name}"[^>]*>', html)
    return match.group(0) if match else ""


# --- the chat page ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_chat_page_renders_the_pre_chat_fields_the_service_configures(client, service):
    service.prechat_fields = {"name": "required", "email": "optional", "phone": "off", "question": "required"}
    service.save()

    response = client.get(reverse("webchat:page", args=["bookings"]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "required" in input_tag(html, "name")
    assert input_tag(html, "email") and "required" not in input_tag(html, "email")
    assert 'type="email"' in input_tag(html, "email")
    assert input_tag(html, "phone") == ""
    assert "required" in input_tag(html, "question")
    assert '<label for="prechat-email">' in html
    assert "(optional)" in html


@pytest.mark.django_db
def test_chat_page_has_no_inline_script_or_style(client, service):
    html = client.get(reverse("webchat:page", args=["bookings"])).content.decode()

    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert "<style" not in html
    assert " style=" not in html
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html)


@pytest.mark.django_db
def test_chat_page_config_carries_the_translated_strings_as_json(client, service):
    response = client.get(reverse("webchat:page", args=["bookings"]), HTTP_ACCEPT_LANGUAGE="de")

    match = re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', response.content.decode())
    config = json.loads(match.group(1))
    assert config["service"] == "bookings"
    assert config["lang"] == "de"
    assert config["wsPath"] == "/ws/chat/"
    assert config["uploadUrl"] == reverse("webchat:attachment-upload")
    assert set(config["strings"]) >= {"queued", "queuedPosition", "active", "ended", "typing", "inactivity", "read"}
    assert 'lang="de"' in response.content.decode()


@pytest.mark.django_db
def test_chat_page_takes_the_embedding_sites_language(client, service):
    response = client.get(reverse("webchat:page", args=["bookings"]), {"lang": "de-AT", "embed": "1"})

    assert response["Content-Language"] == "de"
    assert 'class="chat-body is-embedded"' in response.content.decode()


@pytest.mark.django_db
def test_service_name_is_escaped_on_the_page(client):
    ServiceFactory(name='<img src=x onerror="alert(1)">', slug="hostile")

    html = client.get(reverse("webchat:page", args=["hostile"])).content.decode()

    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["unknown", "inactive", "no_chat"])
def test_chat_page_is_404_for_a_service_without_chat(client, case):
    ServiceFactory(slug="inactive", is_active=False)
    ServiceFactory(slug="no_chat", media=["voice", "email"])

    assert client.get(reverse("webchat:page", args=[case])).status_code == 404
    assert client.get(reverse("webchat:embed", args=[case])).status_code == 404


@pytest.mark.django_db
def test_chat_page_may_be_framed_only_by_the_services_websites(client, service):
    service.chat_allowed_origins = [
        "https://www.example.com",
        "https://shop.example.com:8443/",
        "https://*.example.org",
        "https://evil.example; script-src *",
        "javascript:alert(1)",
        42,
    ]
    service.save()

    response = client.get(reverse("webchat:page", args=["bookings"]))

    policy = response["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://www.example.com https://shop.example.com:8443 https://*.example.org;" in (
        policy + ";"
    )
    assert "evil" not in policy
    assert "javascript" not in policy
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert "X-Frame-Options" not in response


@pytest.mark.django_db
def test_chat_page_without_allowed_origins_may_be_framed_only_by_itself(client, service):
    response = client.get(reverse("webchat:page", args=["bookings"]))

    assert response["Content-Security-Policy"].endswith("frame-ancestors 'self'")
    assert "X-Frame-Options" not in response


# --- embed script and demo page -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_embed_script_is_javascript_pointing_at_the_chat_page(client):
    ServiceFactory(name="Bookings </script><script>alert(1)</script>", slug="bookings")

    response = client.get(reverse("webchat:embed", args=["bookings"]))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    source = response.content.decode()
    assert '"frameUrl": "http://testserver/chat/bookings/?embed=1"' in source
    assert "__PARLEY_CHAT_CONFIG__" not in source
    # The service name is JSON inside the script, with markup characters escaped.
    assert "<script>alert" not in source
    assert "\\u003C/script\\u003E" in source


@pytest.mark.django_db
def test_demo_page_includes_the_snippet(client, service):
    response = client.get(reverse("webchat:demo", args=["bookings"]))

    assert response.status_code == 200
    assert f'<script src="{reverse("webchat:embed", args=["bookings"])}" defer></script>' in response.content.decode()


# --- attachment upload -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_customer_uploads_an_image_into_the_chat(client, session):
    token = services.session_token(session)

    response = upload(client, token, "boarding pass.png", PNG, "image/png")

    assert response.status_code == 201
    entry = TimelineEntry.objects.select_related("message").get(pk=response.json()["entry_id"])
    assert entry.message.interaction_id == session.interaction_id
    assert entry.message.direction == Direction.INBOUND
    assert entry.message.author_kind == Message.Author.CUSTOMER
    attachment = entry.message.attachments.get()
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "boarding pass.png",
        "image/png",
        len(PNG),
    )
    with attachment.file.open("rb") as stored:
        assert stored.read() == PNG


@pytest.mark.django_db
def test_sending_a_file_counts_as_customer_activity(client, session):
    ChatSession.objects.filter(pk=session.pk).update(
        last_customer_activity_at=session.created_at - timedelta(minutes=9), inactivity_warned_at=session.created_at
    )

    assert upload(client, services.session_token(session), "a.png", PNG, "image/png").status_code == 201

    session.refresh_from_db()
    assert session.inactivity_warned_at is None
    assert session.last_customer_activity_at > session.created_at


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "content", "content_type", "fragment"),
    [
        ("big.png", PNG + b"\x00" * 2048, "image/png", "too large"),
        ("tool.exe", b"MZ\x90\x00", "application/x-msdownload", "cannot be sent"),
        ("fake.png", b"<script>alert(1)</script>", "image/png", "does not match"),
        ("page.svg", b"<svg onload=alert(1)>", "image/svg+xml", "cannot be sent"),
    ],
)
def test_invalid_uploads_are_refused_with_a_message(client, session, settings, name, content, content_type, fragment):
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1024

    response = upload(client, services.session_token(session), name, content, content_type)

    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert not Attachment.objects.exists()


@pytest.mark.django_db
def test_upload_far_over_the_limit_is_refused_before_reading_it(client, session, settings):
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1024

    response = upload(client, services.session_token(session), "big.pdf", PDF + b"0" * 200_000, "application/pdf")

    assert response.status_code == 413
    assert not Attachment.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("token", [None, "", "forged", "visitor"])
def test_upload_without_a_valid_session_token_is_forbidden(client, session, token):
    if token == "visitor":
        token = services.visitor_token(session.visitor_id)

    response = upload(client, token, "a.png", PNG, "image/png")

    assert response.status_code == 403
    assert not Attachment.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{"HTTP_ORIGIN": "https://evil.example"}, {"HTTP_ORIGIN": "null"}, {}])
def test_upload_from_another_site_is_forbidden(session, headers):
    client = Client()
    file = SimpleUploadedFile("a.png", PNG, content_type="image/png")

    response = client.post(
        reverse("webchat:attachment-upload"),
        {"file": file},
        HTTP_X_PARLEY_CHAT_TOKEN=services.session_token(session),
        **headers,
    )

    assert response.status_code == 403


@pytest.mark.django_db
def test_upload_by_referer_of_our_own_page_is_accepted(client, session):
    response = upload(
        client,
        services.session_token(session),
        "a.png",
        PNG,
        "image/png",
        HTTP_ORIGIN="",
        HTTP_REFERER=ORIGIN + "/chat/",
    )

    assert response.status_code == 201


@pytest.mark.django_db
def test_upload_into_an_ended_chat_is_refused(client, session):
    services.chat_end(session=session, reason="customer_left")

    response = upload(client, services.session_token(session), "a.png", PNG, "image/png")

    assert response.status_code == 400
    assert "ended" in response.json()["error"]


@pytest.mark.django_db
def test_upload_endpoint_takes_only_post(client, session):
    assert client.get(reverse("webchat:attachment-upload")).status_code == 405


# --- attachment download ---------------------------------------------------------------------------------------


def _attachment_entry(client, session, name="a.png", content=PNG, content_type="image/png") -> dict:
    entry_id = upload(client, services.session_token(session), name, content, content_type).json()["entry_id"]
    entry = selectors.chat_entry_for_customer(session=session, entry_id=entry_id)
    return selectors.customer_entry_json(entry=entry, session=session)


@pytest.mark.django_db
def test_customer_downloads_an_image_by_the_link_in_the_entries_frame(client, session):
    data = _attachment_entry(client, session)
    [file] = data["attachments"]
    assert data["text"] == ""
    assert (file["name"], file["size"], file["content_type"]) == ("a.png", len(PNG), "image/png")

    response = client.get(file["url"])

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


@pytest.mark.django_db
def test_non_image_files_download_as_attachments(client, session):
    data = _attachment_entry(client, session, name="booking.pdf", content=PDF, content_type="application/pdf")

    response = client.get(data["attachments"][0]["url"])

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert 'filename="booking.pdf"' in response["Content-Disposition"]


@pytest.mark.django_db
def test_agent_attachment_is_downloadable_by_the_customer(client, session):
    agent = AgentFactory()
    interaction = interaction_answer(interaction=session.interaction, agent=agent.user)
    message = services.chat_attachment_send(
        interaction=interaction,
        upload=SimpleUploadedFile("receipt.pdf", PDF, content_type="application/pdf"),
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        agent_user=agent.user,
    )
    entry = selectors.chat_entry_for_customer(session=session, entry_id=message.entry.pk)
    data = selectors.customer_entry_json(entry=entry, session=session)

    assert data["author"] == "agent"
    assert client.get(data["attachments"][0]["url"]).status_code == 200


@pytest.mark.django_db
def test_tampered_download_link_is_refused(client, session):
    url = _attachment_entry(client, session)["attachments"][0]["url"]
    signed = url.rstrip("/").rsplit("/", 1)[1]
    tampered = reverse("webchat:attachment-download", args=[signed[:-4] + "AAAA"])

    assert client.get(tampered).status_code == 404


@pytest.mark.django_db
def test_link_bound_to_another_session_is_refused(client, session, service):
    attachment_id = Attachment.objects.get(
        message__entry__pk=upload(client, services.session_token(session), "a.png", PNG, "image/png").json()["entry_id"]
    ).pk
    other = services.chat_start(service=service, data={"name": "Ben", "question": "Hi"})
    # A genuine signature, but for a session that is not the file's.
    signed = selectors.attachment_url_token(attachment_id=attachment_id, session=other)

    assert client.get(reverse("webchat:attachment-download", args=[signed])).status_code == 404


@pytest.mark.django_db
def test_expired_download_link_is_refused(client, session, monkeypatch):
    url = _attachment_entry(client, session)["attachments"][0]["url"]
    monkeypatch.setattr(selectors, "ATTACHMENT_URL_MAX_AGE", timedelta(seconds=-1))

    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_file_of_another_medium_is_not_reachable_through_a_chat_link(client, session):
    """Only chat files of the session's own chat: not an email attachment of the same conversation."""
    email = Interaction.objects.create(
        conversation=session.conversation, medium="email", direction=Direction.OUTBOUND, service=session.service
    )
    message = Message.objects.create(
        conversation=session.conversation,
        interaction=email,
        medium="email",
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        body="Invoice",
        delivery_status=Message.Status.SENT,
    )
    attachment = Attachment.objects.create(
        message=message,
        file="attachments/x/invoice.pdf",
        filename="invoice.pdf",
        content_type="application/pdf",
        size=3,
    )
    signed = selectors.attachment_url_token(attachment_id=attachment.pk, session=session)

    assert client.get(reverse("webchat:attachment-download", args=[signed])).status_code == 404


# --- admin ------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_supervisor_reads_chat_sessions_in_the_admin_but_cannot_change_them(supervisor_client, session):
    changelist = supervisor_client.get(reverse("admin:channel_webchat_chatsession_changelist"), {"q": "Anna"})
    change = supervisor_client.get(reverse("admin:channel_webchat_chatsession_change", args=[session.pk]))

    assert changelist.status_code == 200
    assert list(changelist.context["cl"].result_list) == [session]
    assert change.status_code == 200
    assert supervisor_client.get(reverse("admin:channel_webchat_chatsession_add")).status_code == 403
    response = supervisor_client.post(reverse("admin:channel_webchat_chatsession_change", args=[session.pk]), {})
    assert response.status_code == 403


@pytest.mark.django_db
def test_agents_cannot_open_chat_sessions_in_the_admin(agent_client, session):
    response = agent_client.get(reverse("admin:channel_webchat_chatsession_changelist"))

    assert response.status_code == 302
