"""The agent desktop over HTTP: offers, the list, the workspace and every write in it.

Each view is exercised as the agent the conversation belongs to, as another
agent (404), as a logged-in non-agent (403) and anonymously (login redirect).
"""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from agents.models import AgentState
from agents.services import agent_state_set
from channels_app.webchat.services import chat_customer_message, chat_end, chat_start, live_chat_for
from conversations import views
from conversations.models import (
    Attachment,
    CannedResponse,
    Conversation,
    Interaction,
    Message,
    Note,
    Offer,
    TimelineEntry,
)
from conversations.routing import offer_accept
from conversations.selectors import acl_for_agent
from core import realtime
from tests.factories import (
    TEST_PASSWORD,
    AgentFactory,
    DispositionFactory,
    ServiceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(autouse=True)
def _quiet_channel_layer(monkeypatch):
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def service(db):
    return ServiceFactory(name="Bookings")


@pytest.fixture
def ready_agent(agent, service):
    agent.services.add(service)
    agent_state_set(agent=agent, state=AgentState.READY)
    return agent


def start_chat(service, capture, name="Jane Doe", question="Can I change my flight?"):
    with capture(execute=True):
        return chat_start(service=service, data={"name": name, "question": question})


@pytest.fixture
def offer(ready_agent, service, django_capture_on_commit_callbacks) -> Offer:
    session = start_chat(service, django_capture_on_commit_callbacks)
    return Offer.objects.get(interaction=session.interaction, state=Offer.State.PENDING)


@pytest.fixture
def conversation(offer, ready_agent, django_capture_on_commit_callbacks) -> Conversation:
    """A live web chat the agent has accepted."""
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent_user=ready_agent.user)
    return Conversation.objects.get(pk=offer.interaction.conversation_id)


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return client


def url(name: str, conversation: Conversation) -> str:
    return f"/desktop/c/{conversation.uuid}/{name}"


# --- the page, the workspace --------------------------------------------------------------------------------


def test_desktop_shows_the_pending_offer_with_contact_service_and_actions(agent_client, offer):
    response = agent_client.get("/desktop/")

    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="offer-{offer.pk}"' in html
    assert "Jane Doe" in html
    assert "Bookings" in html
    assert f'hx-post="/desktop/offers/{offer.pk}/accept/"' in html
    assert f'hx-post="/desktop/offers/{offer.pk}/reject/"' in html
    assert 'aria-keyshortcuts="Alt+A"' in html
    assert "/static/sounds/offer.wav" in html


def test_desktop_lists_the_agents_conversations_with_preview_unread_and_timers(agent_client, conversation):
    response = agent_client.get("/desktop/")

    html = response.content.decode()
    row = re.search(rf'<li class="acl-row[^"]*"\s+id="acl-{conversation.uuid}".*?</li>', html, re.S).group(0)
    assert "Jane Doe" in row
    assert "Bookings" in row
    assert "Can I change my flight?" in row
    assert 'data-unread="1"' in row
    assert f'data-since="{conversation.opened_at.isoformat()}"' in row
    assert 'data-overdue-after="60"' in row
    assert f'hx-get="/desktop/c/{conversation.uuid}/"' in row
    assert 'hx-push-url="true"' in row


def test_conversation_page_opens_the_workspace_and_contact_panel(agent_client, conversation):
    response = agent_client.get(url("", conversation))

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html
    assert f'id="timeline-{conversation.uuid}"' in html
    assert f'id="composer-text-{conversation.uuid}"' in html
    assert "Can I change my flight?" in html
    assert 'id="contact-panel"' in html
    assert 'aria-current="true"' in html


def test_htmx_gets_only_the_workspace_and_contact_partials(agent_client, conversation):
    response = agent_client.get(url("", conversation), headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.count('hx-swap-oob="true"') >= 2
    assert 'id="workspace"' in html
    assert 'id="contact-panel"' in html
    assert 'name="channel" value="chat"' in html
    assert 'name="channel" value="note"' in html


def test_workspace_timeline_shows_each_kind_in_time_order(agent_client, conversation, ready_agent):
    from conversations.services import note_add

    note_add(conversation=conversation, author=ready_agent.user, body="VIP customer")

    html = agent_client.get(url("", conversation), headers=HTMX).content.decode()

    kinds = re.findall(r'class="entry entry-([a-z_]+)', html)
    assert kinds == ["opened", "interaction_started", "message", "interaction_answered", "note"]
    ids = [int(i) for i in re.findall(r'data-entry-id="(\d+)"', html)]
    assert ids == sorted(ids)
    assert "Internal note" in html


def test_another_agent_cannot_open_the_conversation(other_agent_client, conversation):
    assert other_agent_client.get(url("", conversation)).status_code == 404
    assert other_agent_client.get(url("", conversation), headers=HTMX).status_code == 404


def test_anonymous_is_sent_to_login_and_non_agents_are_refused(anonymous_client, plain_user, conversation):
    response = anonymous_client.get(url("", conversation))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert client_for(plain_user).get(url("", conversation)).status_code == 403


def test_message_body_with_markup_is_escaped_in_the_workspace(
    agent_client, conversation, django_capture_on_commit_callbacks
):
    session = conversation.chat_sessions.get()
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)"> https://example.com/?q=<b>'
    chat_customer_message(session=session, text=evil)

    html = agent_client.get(url("", conversation), headers=HTMX).content.decode()

    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=" in html
    assert '<a href="https://example.com/?q=" rel="nofollow noopener noreferrer" target="_blank">' in html
    # The list's preview escapes it too.
    acl = agent_client.get("/desktop/").content.decode()
    assert "<script>alert(1)" not in acl


def test_earlier_entries_load_page_by_page(agent_client, conversation, ready_agent, monkeypatch):
    from conversations.services import note_add

    for i in range(7):
        note_add(conversation=conversation, author=ready_agent.user, body=f"note {i}")
    monkeypatch.setattr(views, "TIMELINE_PAGE", 5)

    html = agent_client.get(url("", conversation), headers=HTMX).content.decode()
    shown = [int(i) for i in re.findall(r'data-entry-id="(\d+)"', html)]
    assert len(shown) == 5
    assert "Show earlier entries" in html

    earlier = agent_client.get(url(f"timeline/?before={shown[0]}", conversation), headers=HTMX).content.decode()
    older = [int(i) for i in re.findall(r'data-entry-id="(\d+)"', earlier)]
    assert older == sorted(older)
    assert max(older) < shown[0]
    assert len(older) == 5
    assert f'hx-swap-oob="beforeend:#timeline-{conversation.uuid}"' in earlier
    assert other_status(conversation, f"timeline/?before={shown[0]}") == 404


def other_status(conversation, path, method="get"):
    other = AgentFactory()
    client = client_for(other.user)
    return getattr(client, method)(url(path, conversation), headers=HTMX).status_code


# --- sending ------------------------------------------------------------------------------------------------


def test_agent_sends_a_chat_message_and_gets_the_entry_back(agent_client, conversation, ready_agent):
    response = agent_client.post(
        url("send/", conversation), {"channel": "chat", "text": "  Of course!  "}, headers=HTMX
    )

    assert response.status_code == 200
    message = Message.objects.get(conversation=conversation, author_kind=Message.Author.AGENT)
    assert message.body == "Of course!"
    assert message.author_agent == ready_agent.user
    html = response.content.decode()
    assert f'id="entry-{message.entry.pk}"' in html
    assert f'hx-swap-oob="beforeend:#timeline-{conversation.uuid}"' in html
    assert "delivery-sent" in html
    conversation.refresh_from_db()
    assert conversation.customer_waiting_since is None


def test_empty_or_overlong_message_is_refused_with_an_error(agent_client, conversation, settings):
    empty = agent_client.post(url("send/", conversation), {"channel": "chat", "text": "   "}, headers=HTMX)
    long = agent_client.post(
        url("send/", conversation),
        {"channel": "chat", "text": "x" * (settings.CHAT_MAX_MESSAGE_CHARS + 1)},
        headers=HTMX,
    )

    assert empty.status_code == 422
    assert long.status_code == 422
    assert 'role="alert"' in empty.content.decode()
    assert not Message.objects.filter(author_kind=Message.Author.AGENT).exists()


def test_another_agent_cannot_send_into_the_conversation(other_agent_client, anonymous_client, conversation):
    assert other_agent_client.post(url("send/", conversation), {"channel": "chat", "text": "hi"}).status_code == 404
    response = anonymous_client.post(url("send/", conversation), {"channel": "chat", "text": "hi"})
    assert response.status_code == 302
    assert other_agent_client.get(url("send/", conversation)).status_code in (404, 405)
    assert not Message.objects.filter(author_kind=Message.Author.AGENT).exists()


@pytest.mark.parametrize(
    "path,data", [("send/", {"channel": "note", "text": "Refund approved"}), ("note/", {"body": "Refund approved"})]
)
def test_internal_note_goes_on_the_timeline_never_to_the_customer(agent_client, conversation, path, data):
    response = agent_client.post(url(path, conversation), data, headers=HTMX)

    assert response.status_code == 200
    note = Note.objects.get(conversation=conversation)
    assert note.body == "Refund approved"
    assert not Message.objects.filter(body="Refund approved").exists()
    html = response.content.decode()
    assert "entry-note" in html
    assert "Internal note" in html


def test_note_into_another_agents_conversation_is_refused(other_agent_client, conversation):
    assert other_agent_client.post(url("note/", conversation), {"body": "x"}).status_code == 404
    assert not Note.objects.exists()


def test_plain_form_post_without_htmx_returns_to_the_conversation(agent_client, conversation):
    response = agent_client.post(url("send/", conversation), {"channel": "chat", "text": "Hello"})

    assert response.status_code == 302
    assert response["Location"] == url("", conversation)


# --- CSRF -----------------------------------------------------------------------------------------------------------


def test_posts_without_a_csrf_token_are_refused(ready_agent, conversation, offer):
    client = client_for(ready_agent.user, enforce_csrf_checks=True)
    for path in ("send/", "note/", "end/", "wrapup/", "transfer/", "attach/"):
        assert client.post(url(path, conversation), {"text": "x", "channel": "chat", "body": "x"}).status_code == 403
    assert client.post(f"/desktop/offers/{offer.pk}/reject/").status_code == 403
    assert not Message.objects.filter(author_kind=Message.Author.AGENT).exists()

    page = client.get(url("", conversation)).content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    response = client.post(
        url("send/", conversation), {"channel": "chat", "text": "with token"}, headers={**HTMX, "X-CSRFToken": token}
    )
    assert response.status_code == 200


# --- ending, wrap-up ----------------------------------------------------------------------------------------------


def test_end_chat_ends_the_interaction_and_shows_the_wrapup_form(agent_client, conversation, service):
    service.dispositions.add(DispositionFactory(name="Problem solved"))

    response = agent_client.post(url("end/", conversation), headers=HTMX)

    assert response.status_code == 200
    chat = conversation.interactions.get()
    assert chat.state == Interaction.State.ENDED
    assert chat.end_reason == "agent_ended"
    html = response.content.decode()
    assert "wrapup-form" in html
    assert "Problem solved" in html
    assert 'name="channel" value="chat"' not in html
    assert TimelineEntry.objects.filter(conversation=conversation, kind="interaction_ended").exists()


def test_another_agent_cannot_end_the_chat(other_agent_client, conversation):
    assert other_agent_client.post(url("end/", conversation), headers=HTMX).status_code == 404
    assert conversation.interactions.get().state == Interaction.State.ACTIVE


def test_wrapup_is_refused_while_the_chat_is_live(agent_client, conversation):
    response = agent_client.post(url("wrapup/", conversation), {"notes": "done"}, headers=HTMX)

    assert response.status_code == 422
    conversation.refresh_from_db()
    assert conversation.is_open


def test_wrapup_closes_the_conversation_into_the_contacts_history(agent_client, conversation, service, ready_agent):
    solved = DispositionFactory(name="Problem solved")
    service.dispositions.add(solved)
    chat_end(interaction=live_chat_for(conversation=conversation), reason="agent_ended", actor=ready_agent.user)

    response = agent_client.post(
        url("wrapup/", conversation), {"disposition": solved.pk, "notes": "Rebooked to Friday."}, headers=HTMX
    )

    assert response.status_code == 200
    assert response["HX-Push-Url"] == "/desktop/"
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.disposition == solved
    assert conversation.notes == "Rebooked to Friday."
    assert conversation not in acl_for_agent(agent=ready_agent.user)
    html = response.content.decode()
    assert f"acl-{conversation.uuid}" not in html
    assert 'id="workspace"' in html


def test_wrapup_requires_one_of_the_services_dispositions(agent_client, conversation, service, ready_agent):
    service.dispositions.add(DispositionFactory(name="Problem solved"))
    foreign = DispositionFactory(name="Elsewhere")
    chat_end(interaction=live_chat_for(conversation=conversation), reason="agent_ended", actor=ready_agent.user)

    missing = agent_client.post(url("wrapup/", conversation), {"notes": "x"}, headers=HTMX)
    wrong = agent_client.post(url("wrapup/", conversation), {"disposition": foreign.pk}, headers=HTMX)

    assert missing.status_code == 422
    assert wrong.status_code == 422
    assert 'role="alert"' in missing.content.decode()
    conversation.refresh_from_db()
    assert conversation.is_open


def test_another_agent_cannot_wrap_up(other_agent_client, conversation, ready_agent):
    chat_end(interaction=live_chat_for(conversation=conversation), reason="agent_ended", actor=ready_agent.user)
    assert other_agent_client.post(url("wrapup/", conversation), {"notes": "x"}).status_code == 404
    conversation.refresh_from_db()
    assert conversation.is_open


# --- transfer -----------------------------------------------------------------------------------------------


@pytest.fixture
def colleague(service):
    colleague = AgentFactory(user__first_name="Jonas", user__last_name="Weber")
    colleague.services.add(service)
    agent_state_set(agent=colleague, state=AgentState.NOT_READY)
    return colleague


def test_transfer_form_lists_logged_in_agents_of_the_service_and_active_services(agent_client, conversation, colleague):
    stranger = AgentFactory(user__first_name="Zoe", user__last_name="Elsewhere")
    agent_state_set(agent=stranger, state=AgentState.READY)
    logged_out = AgentFactory(user__first_name="Otto", user__last_name="Offline")
    logged_out.services.add(conversation.service)
    other_service = ServiceFactory(name="Support")

    html = agent_client.get(url("transfer/", conversation), headers=HTMX).content.decode()

    assert f'value="agent:{colleague.user_id}"' in html
    assert "Jonas Weber" in html
    assert "Zoe" not in html
    assert "Otto" not in html
    assert f'value="service:{other_service.pk}"' in html


def test_transfer_to_an_agent_offers_it_to_them_with_the_note(
    agent_client, conversation, colleague, ready_agent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post(
            url("transfer/", conversation),
            {"target": f"agent:{colleague.user_id}", "note": "Wants a refund"},
            headers=HTMX,
        )

    assert response.status_code == 200
    assert response["HX-Push-Url"] == "/desktop/"
    offer = Offer.objects.get(agent=colleague.user, state=Offer.State.PENDING)
    assert offer.transfer_note == "Wants a refund"
    assert offer.transferred_by == ready_agent.user
    conversation.refresh_from_db()
    assert conversation.assigned_agent is None
    entry = conversation.timeline.get(kind=TimelineEntry.Kind.TRANSFERRED)
    assert entry.data["note"] == "Wants a refund"
    # The receiving agent sees the offer with who sent it and why.
    offers = client_for(colleague.user).get("/desktop/").content.decode()
    assert "Wants a refund" in offers
    assert f'id="offer-{offer.pk}"' in offers


def test_transfer_to_a_service_queues_the_chat_there(agent_client, conversation, django_capture_on_commit_callbacks):
    support = ServiceFactory(name="Support")

    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post(url("transfer/", conversation), {"target": f"service:{support.pk}"}, headers=HTMX)

    assert response.status_code == 200
    chat = conversation.interactions.get()
    assert chat.state == Interaction.State.QUEUED
    assert chat.service == support


def test_transfer_to_an_unlisted_target_is_refused(agent_client, conversation):
    stranger = AgentFactory()
    agent_state_set(agent=stranger, state=AgentState.READY)

    response = agent_client.post(url("transfer/", conversation), {"target": f"agent:{stranger.user_id}"}, headers=HTMX)

    assert response.status_code == 422
    conversation.refresh_from_db()
    assert conversation.assigned_agent is not None


def test_another_agent_cannot_transfer(other_agent_client, conversation, colleague):
    response = other_agent_client.post(url("transfer/", conversation), {"target": f"agent:{colleague.user_id}"})
    assert response.status_code == 404
    assert not Offer.objects.filter(agent=colleague.user).exists()


# --- offers -------------------------------------------------------------------------------------------------


def test_accepting_an_offer_opens_the_conversation(agent_client, offer, ready_agent):
    response = agent_client.post(f"/desktop/offers/{offer.pk}/accept/", headers=HTMX)

    assert response.status_code == 200
    conversation = offer.interaction.conversation
    assert response["HX-Push-Url"] == f"/desktop/c/{conversation.uuid}/"
    offer.refresh_from_db()
    assert offer.state == Offer.State.ACCEPTED
    assert Interaction.objects.get(pk=offer.interaction_id).state == Interaction.State.ACTIVE
    html = response.content.decode()
    assert f'id="timeline-{conversation.uuid}"' in html
    assert f'id="acl-{conversation.uuid}"' in html
    assert f'id="offer-{offer.pk}"' not in html


def test_rejecting_an_offer_puts_it_back_in_the_queue(agent_client, offer):
    response = agent_client.post(f"/desktop/offers/{offer.pk}/reject/", headers=HTMX)

    assert response.status_code == 200
    offer.refresh_from_db()
    assert offer.state == Offer.State.REJECTED
    assert f'id="offer-{offer.pk}"' not in response.content.decode()


def test_someone_elses_offer_cannot_be_accepted_or_rejected(other_agent_client, anonymous_client, offer):
    assert other_agent_client.post(f"/desktop/offers/{offer.pk}/accept/", headers=HTMX).status_code == 404
    assert other_agent_client.post(f"/desktop/offers/{offer.pk}/reject/", headers=HTMX).status_code == 404
    assert anonymous_client.post(f"/desktop/offers/{offer.pk}/accept/").status_code == 302
    offer.refresh_from_db()
    assert offer.state == Offer.State.PENDING


def test_an_offer_no_longer_open_gets_a_clear_error(agent_client, offer):
    agent_client.post(f"/desktop/offers/{offer.pk}/reject/", headers=HTMX)

    response = agent_client.post(f"/desktop/offers/{offer.pk}/accept/", headers=HTMX)

    assert response.status_code == 422
    assert 'role="alert"' in response.content.decode()


def test_offer_endpoints_take_post_only(agent_client, offer):
    assert agent_client.get(f"/desktop/offers/{offer.pk}/accept/").status_code == 405


# --- canned responses ---------------------------------------------------------------------------------------


def test_canned_search_offers_own_and_shared_responses_with_names_filled(agent_client, ready_agent, conversation):
    CannedResponse.objects.create(shortcut="hello", title="Greeting", body="Hello {first_name} {last_name}!")
    CannedResponse.objects.create(
        owner=ready_agent.user, shortcut="help", title="Mine", body="Hi {first_name}, I can help."
    )
    CannedResponse.objects.create(owner=UserFactory(), shortcut="hey", title="Theirs", body="Not yours")

    response = agent_client.get("/desktop/canned/", {"q": "he", "conversation": str(conversation.uuid)}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-body="Hello Jane Doe!"' in html
    assert 'data-body="Hi Jane, I can help."' in html
    assert "Not yours" not in html
    # The agent's own come first.
    assert html.index("/help") < html.index("/hello")


def test_canned_search_fills_no_names_from_a_foreign_conversation(other_agent_client, conversation):
    CannedResponse.objects.create(shortcut="hello", title="Greeting", body="Hello {first_name}!")

    html = other_agent_client.get(
        "/desktop/canned/", {"q": "", "conversation": str(conversation.uuid)}
    ).content.decode()

    assert "Jane" not in html
    assert 'data-body="Hello {first_name}!"' in html


def test_canned_search_is_for_agents_only(anonymous_client, plain_user):
    assert anonymous_client.get("/desktop/canned/").status_code == 302
    assert client_for(plain_user).get("/desktop/canned/").status_code == 403


# --- attachments --------------------------------------------------------------------------------------------


def upload(name="boarding.png", content=PNG, content_type="image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def test_agent_sends_a_file_in_the_chat(agent_client, conversation):
    response = agent_client.post(url("attach/", conversation), {"file": upload()}, headers=HTMX)

    assert response.status_code == 200
    attachment = Attachment.objects.get()
    assert attachment.filename == "boarding.png"
    assert attachment.message.author_kind == Message.Author.AGENT
    assert f"/desktop/attachments/{attachment.pk}/" in response.content.decode()


def test_a_file_whose_content_does_not_match_its_type_is_refused(agent_client, conversation):
    response = agent_client.post(url("attach/", conversation), {"file": upload(content=b"<html>")}, headers=HTMX)

    assert response.status_code == 422
    assert not Attachment.objects.exists()


def test_another_agent_cannot_send_a_file(other_agent_client, conversation):
    assert other_agent_client.post(url("attach/", conversation), {"file": upload()}).status_code == 404
    assert not Attachment.objects.exists()


def test_attachment_download_is_for_the_conversations_agents_and_supervisors(
    agent_client, other_agent_client, supervisor_client, anonymous_client, plain_user, conversation
):
    agent_client.post(url("attach/", conversation), {"file": upload()}, headers=HTMX)
    attachment = Attachment.objects.get()
    path = f"/desktop/attachments/{attachment.pk}/"

    response = agent_client.get(path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]

    assert supervisor_client.get(path).status_code == 200
    assert other_agent_client.get(path).status_code == 404
    assert client_for(plain_user).get(path).status_code == 404
    assert anonymous_client.get(path).status_code == 302


def test_an_agent_who_had_the_chat_before_a_transfer_may_still_download(
    agent_client, conversation, colleague, django_capture_on_commit_callbacks
):
    chat_customer_file = upload(name="ticket.pdf", content=b"%PDF-1.4 test", content_type="application/pdf")
    agent_client.post(url("attach/", conversation), {"file": chat_customer_file}, headers=HTMX)
    attachment = Attachment.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        agent_client.post(url("transfer/", conversation), {"target": f"agent:{colleague.user_id}"}, headers=HTMX)
    offer = Offer.objects.get(agent=colleague.user, state=Offer.State.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        offer_accept(offer_id=offer.pk, agent_user=colleague.user)

    assert client_for(colleague.user).get(f"/desktop/attachments/{attachment.pk}/").status_code == 200
    assert agent_client.get(f"/desktop/attachments/{attachment.pk}/").status_code == 200


# --- queries ------------------------------------------------------------------------------------------------


def test_the_desktop_runs_the_same_number_of_queries_whatever_the_number_of_conversations(
    ready_agent, service, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    ready_agent.capacity = 400
    ready_agent.save(update_fields=["capacity"])
    client = client_for(ready_agent.user)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def accepted_chat(i):
        session = start_chat(service, django_capture_on_commit_callbacks, name=f"Customer {i}", question=f"q{i}")
        offer = Offer.objects.get(interaction=session.interaction, state=Offer.State.PENDING)
        with django_capture_on_commit_callbacks(execute=True):
            offer_accept(offer_id=offer.pk, agent_user=ready_agent.user)
        return session.conversation

    first = accepted_chat(0)
    with CaptureQueriesContext(connection) as one:
        client.get(url("", first))
    for i in range(1, 5):
        conversation = accepted_chat(i)
        chat_customer_message(session=conversation.chat_sessions.get(), text="more")
    with CaptureQueriesContext(connection) as five:
        client.get(url("", first))

    assert len(five) == len(one)
