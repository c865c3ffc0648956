"""The admin: every registered model opens for the supervisor; nobody else gets in."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentProfile, AgentState, AgentStateLog, NotReadyReason
from agents.services import agent_state_set
from contacts.models import Contact, ContactPoint
from conversations.models import (
    Attachment,
    Conversation,
    Direction,
    Disposition,
    Interaction,
    Medium,
    Message,
    Note,
    Service,
)
from conversations.services import (
    inbound_contact_receive,
    interaction_answer,
    interaction_start,
    message_record,
    note_add,
)
from core import realtime
from core.models import WorkerHeartbeat
from tests.factories import ContactPointFactory, DispositionFactory, NotReadyReasonFactory, ServiceFactory

REGISTERED_MODELS = sorted(admin.site._registry, key=lambda model: model._meta.label)
# The domain model: each must have a row, so its change page is rendered too.
MAIN_MODELS = {
    Contact,
    ContactPoint,
    Conversation,
    Interaction,
    Message,
    Note,
    Service,
    Disposition,
    NotReadyReason,
    AgentProfile,
    AgentStateLog,
}


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture(autouse=True)
def _quiet_channel_layer(monkeypatch, settings):
    settings.DEFAULT_PHONE_REGION = "DE"
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


@pytest.fixture
def plain_user_client(plain_user) -> Client:
    client = Client()
    client.force_login(plain_user)
    return client


@pytest.fixture
def domain(agent, supervisor) -> dict:
    """One of everything, written by the services as in production."""
    NotReadyReasonFactory(name="Break", code="break")
    agent_state_set(agent=agent, state=AgentState.READY, changed_by=agent.user)
    contact = ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+49301234567").contact
    ContactPointFactory(contact=contact, kind=ContactPoint.Kind.EMAIL, value="anna@example.com")
    call = inbound_contact_receive(
        point_kind=ContactPoint.Kind.PHONE, address="030 1234567", medium=Medium.VOICE, service=ServiceFactory()
    )
    interaction_answer(interaction=call, agent=agent.user)
    conversation = call.conversation
    conversation.service.dispositions.add(DispositionFactory(name="Problem solved"))
    sms = interaction_start(
        conversation=conversation,
        medium=Medium.SMS,
        direction=Direction.OUTBOUND,
        agent=agent.user,
        state=Interaction.State.ACTIVE,
    )
    message = message_record(
        interaction=sms,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        author_agent=agent.user,
        body="Your new booking reference is LX-4711.",
    )
    Attachment.objects.create(
        message=message, file="attachments/booking.pdf", filename="booking.pdf", content_type="application/pdf", size=10
    )
    note_add(conversation=conversation, author=agent.user, body="Prefers SMS over email.")
    Group.objects.create(name="Team Lisbon")
    WorkerHeartbeat.objects.create(hostname="worker-1", seen_at=timezone.now(), beats=3)
    return {"contact": contact, "conversation": conversation, "call": call, "sms": sms, "message": message}


# --- the supervisor ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_supervisor_opens_the_admin_index(supervisor_client):
    response = supervisor_client.get(reverse("admin:index"))

    assert response.status_code == 200
    listed = {model["object_name"] for app in response.context["app_list"] for model in app["models"]}
    assert listed >= {model._meta.object_name for model in MAIN_MODELS}


@pytest.mark.django_db
def test_every_main_model_is_registered():
    assert set(REGISTERED_MODELS) >= MAIN_MODELS


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda model: model._meta.label)
def test_supervisor_opens_changelist_and_change_page(supervisor_client, domain, model):
    changelist = supervisor_client.get(_url(model, "changelist"))
    assert changelist.status_code == 200

    searched = supervisor_client.get(_url(model, "changelist"), {"q": "anna"})
    assert searched.status_code == 200

    obj = model._default_manager.order_by("pk").first()
    if model in MAIN_MODELS:
        assert obj is not None, f"the domain fixture must create a {model._meta.label}"
    if obj is not None:
        change = supervisor_client.get(_url(model, "change", obj.pk))
        assert change.status_code == 200
        assert change.context["original"] == obj


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda model: model._meta.label)
def test_supervisor_add_page_opens_where_adding_is_allowed(rf, supervisor, supervisor_client, model):
    request = rf.get("/")
    request.user = supervisor
    expected = 200 if admin.site._registry[model].has_add_permission(request) else 403

    response = supervisor_client.get(_url(model, "add"))

    assert response.status_code == expected


@pytest.mark.django_db
def test_conversation_change_page_shows_its_interactions_and_messages(supervisor_client, domain):
    conversation = domain["conversation"]

    response = supervisor_client.get(_url(Conversation, "change", conversation.pk))

    assert response.status_code == 200
    inlines = {formset.opts.model: formset for formset in response.context["inline_admin_formsets"]}
    interactions = [form.original for form in inlines[Interaction]]
    messages = [form.original for form in inlines[Message]]
    notes = [form.original for form in inlines[Note]]
    assert interactions == [domain["call"], domain["sms"]]
    assert messages == [domain["message"]]
    assert [note.body for note in notes] == ["Prefers SMS over email."]
    assert "Your new booking reference is LX-4711." in response.content.decode()


@pytest.mark.django_db
def test_contact_change_page_shows_points_and_activity_history(supervisor_client, domain):
    response = supervisor_client.get(_url(Contact, "change", domain["contact"].pk))

    assert response.status_code == 200
    inlines = {formset.opts.model: formset for formset in response.context["inline_admin_formsets"]}
    assert {form.original.value for form in inlines[ContactPoint] if form.original} == {
        "+49301234567",
        "anna@example.com",
    }
    assert [form.original for form in inlines[Conversation]] == [domain["conversation"]]


# --- search ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["+49301234567", "anna@example.com", "example.com", "4930123"])
def test_contact_admin_search_finds_a_contact_by_point_value(supervisor_client, domain, term):
    ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="someone.else@other.test")

    response = supervisor_client.get(_url(Contact, "changelist"), {"q": term})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [domain["contact"]]


@pytest.mark.django_db
def test_conversation_admin_search_finds_by_contact_point(supervisor_client, domain):
    response = supervisor_client.get(_url(Conversation, "changelist"), {"q": "anna@example.com"})

    assert list(response.context["cl"].result_list) == [domain["conversation"]]


# --- contact points typed in the admin are normalised ------------------------------------------------------------


@pytest.mark.django_db
def test_contact_point_added_in_admin_is_stored_normalised(supervisor_client, domain):
    contact = Contact.objects.create(first_name="Ben")

    response = supervisor_client.post(
        _url(ContactPoint, "add"), {"contact": contact.pk, "kind": "phone", "value": "030 7654321", "label": "work"}
    )

    assert response.status_code == 302
    assert ContactPoint.objects.get(contact=contact).value == "+49307654321"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "value"),
    [("phone", "not a number"), ("email", "nope"), ("phone", "0049 30 1234567"), ("email", "ANNA@example.com")],
    ids=["invalid-phone", "invalid-email", "phone-taken-in-other-format", "email-taken-in-other-case"],
)
def test_contact_point_admin_refuses_invalid_or_taken_values(supervisor_client, domain, kind, value):
    contact = Contact.objects.create(first_name="Ben")

    response = supervisor_client.post(_url(ContactPoint, "add"), {"contact": contact.pk, "kind": kind, "value": value})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not ContactPoint.objects.filter(contact=contact).exists()


@pytest.mark.django_db
def test_contact_added_with_inline_point_is_stored_normalised(supervisor_client):
    now = timezone.localtime()
    data = {
        "first_name": "Ben",
        "last_name": "Okafor",
        "company": "",
        "notes": "",
        "last_activity_at_0": now.strftime("%Y-%m-%d"),
        "last_activity_at_1": now.strftime("%H:%M:%S"),
        "points-TOTAL_FORMS": "1",
        "points-INITIAL_FORMS": "0",
        "points-0-kind": "email",
        "points-0-value": "  Ben.Okafor@Example.COM ",
        "points-0-label": "",
        "conversations-TOTAL_FORMS": "0",
        "conversations-INITIAL_FORMS": "0",
    }

    response = supervisor_client.post(_url(Contact, "add"), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    point = ContactPoint.objects.get()
    assert (point.contact.first_name, point.value) == ("Ben", "ben.okafor@example.com")


# --- everyone else is sent to the admin login -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("client_fixture", ["agent_client", "anonymous_client", "plain_user_client"])
@pytest.mark.parametrize(
    "url_name", ["admin:index", "admin:conversations_conversation_changelist", "admin:contacts_contact_changelist"]
)
def test_non_staff_are_redirected_to_the_admin_login(request, client_fixture, url_name):
    client = request.getfixturevalue(client_fixture)
    url = reverse(url_name)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert f"next={url}" in response["Location"]


@pytest.mark.django_db
def test_agent_cannot_open_a_conversation_change_page(agent_client, domain):
    url = _url(Conversation, "change", domain["conversation"].pk)

    response = agent_client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
