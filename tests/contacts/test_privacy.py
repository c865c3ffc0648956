"""GDPR: exporting everything stored about a contact, and erasing it while reports keep their figures."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile

from channels_app.webchat.models import ChatSession
from contacts.models import Contact, ContactMerge, ContactPoint
from contacts.selectors import contacts_search
from contacts.services import (
    REDACTED,
    contact_erase,
    contact_export,
    contact_identify,
    contact_merge,
    contact_merge_undo,
)
from conversations.models import (
    Attachment,
    Conversation,
    Interaction,
    Medium,
    Message,
    Note,
    Offer,
    TimelineEntry,
)
from conversations.services import inbound_contact_receive
from core.models import AuditEntry
from tests.contacts.builders import BASE, EMAIL, PHONE, add_note, chat_session, closed_conversation, contact_with_points
from tests.factories import DispositionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def customer(media_root, agent, supervisor):
    """Anna with a history across channels, a note, an attachment, a chat session and a merged duplicate."""
    anna = contact_with_points(
        (PHONE, "+49301234567"),
        (EMAIL, "anna@example.com"),
        first_name="Anna",
        last_name="Schmidt",
        company="Acme Travel",
        notes="Allergic to peanuts.",
        tags=["VIP"],
    )
    duplicate = contact_with_points((EMAIL, "a.schmidt@oldmail.example"), first_name="A.", last_name="Schmidt")
    disposition = DispositionFactory(name="Problem solved")
    call_and_email = closed_conversation(
        anna,
        opened_at=BASE,
        media=(Medium.VOICE, Medium.EMAIL),
        body="My booking ABC123, passport X1234567",
        agent=agent.user,
        disposition=disposition,
        notes="Rebooked to Friday",
    )
    chat = closed_conversation(
        duplicate, opened_at=BASE + timedelta(days=1), media=(Medium.CHAT,), body="Hi, Anna here"
    )
    add_note(call_and_email, "Customer sounded upset", author=agent.user)
    message = Message.objects.filter(conversation=chat).get()
    attachment = Attachment(message=message, filename="passport-anna.pdf", content_type="application/pdf", size=9)
    attachment.file.save("passport-anna.pdf", ContentFile(b"%PDF-1.4\n"), save=False)
    attachment.save()
    interaction = Interaction.objects.filter(conversation=call_and_email, medium=Medium.EMAIL).get()
    interaction.details = {"thread": "<abc@mail.example>", "mos": 4.2, "packets_lost": 3, "hd": True}
    interaction.save()
    TimelineEntry.objects.create(
        conversation=call_and_email,
        kind=TimelineEntry.Kind.TRANSFERRED,
        data={"to_agent": "", "to_service": "Bookings", "note": "Anna wants a refund"},
    )
    Offer.objects.create(
        interaction=interaction,
        agent=agent.user,
        state=Offer.State.EXPIRED,
        created_at=BASE,
        expires_at=BASE + timedelta(seconds=30),
        transfer_note="Anna again",
    )
    session = chat_session(
        duplicate, chat, name="Anna Schmidt", email="a.schmidt@oldmail.example", phone="+49301234567"
    )
    merge = contact_merge(actor=supervisor, target=anna, source=duplicate)
    anna.refresh_from_db()
    return {
        "contact": anna,
        "duplicate": duplicate,
        "conversations": [call_and_email, chat],
        "attachment": attachment,
        "session": session,
        "merge": merge,
        "disposition": disposition,
    }


def _actor(who: str, request):
    if who == "none":
        return None
    if who == "anonymous":
        return AnonymousUser()
    fixture = request.getfixturevalue(who)
    return getattr(fixture, "user", fixture)


# --- export ---------------------------------------------------------------------------------------------


def test_export_contains_every_row_about_the_contact(customer, supervisor):
    anna = customer["contact"]

    data = contact_export(actor=supervisor, contact=anna)

    assert data["format"] == "parley-contact-export"
    assert data["contact"]["id"] == anna.pk
    assert data["contact"]["first_name"] == "Anna"
    assert data["contact"]["notes"] == "Allergic to peanuts."
    assert [c["id"] for c in data["merged_contacts"]] == [customer["duplicate"].pk]
    assert sorted(p["value"] for p in data["points"]) == [
        "+49301234567",
        "a.schmidt@oldmail.example",
        "anna@example.com",
    ]
    conversations = {c["id"]: c for c in data["conversations"]}
    assert set(conversations) == {c.pk for c in customer["conversations"]}
    call_and_email = conversations[customer["conversations"][0].pk]
    assert [i["medium"] for i in call_and_email["interactions"]] == ["voice", "email"]
    assert call_and_email["interactions"][1]["offers"][0]["transfer_note"] == "Anna again"
    assert [m["body"] for m in call_and_email["messages"]] == ["My booking ABC123, passport X1234567"]
    assert [n["body"] for n in call_and_email["notes"]] == ["Customer sounded upset"]
    assert call_and_email["notes"][0]["author_id"] is not None
    assert call_and_email["disposition_id"] == customer["disposition"].pk
    assert len(call_and_email["timeline"]) == TimelineEntry.objects.filter(conversation_id=call_and_email["id"]).count()
    chat = conversations[customer["conversations"][1].pk]
    attachment = chat["messages"][0]["attachments"][0]
    assert (attachment["filename"], attachment["content_type"], attachment["size"]) == (
        "passport-anna.pdf",
        "application/pdf",
        9,
    )
    assert [s["name"] for s in data["chat_sessions"]] == ["Anna Schmidt"]
    assert [m["id"] for m in data["merges"]] == [customer["merge"].pk]
    assert [a["action"] for a in data["audit"]] == ["contact-merged"]


def test_export_is_plain_json(customer, supervisor):
    data = contact_export(actor=supervisor, contact=customer["contact"])

    assert json.loads(json.dumps(data)) == data


def test_export_is_audited_without_personal_data(customer, supervisor):
    contact_export(actor=supervisor, contact=customer["contact"])

    entry = AuditEntry.objects.get(action="contact-exported")
    assert (entry.actor, entry.object_type, entry.object_id) == (
        supervisor,
        "contacts.contact",
        str(customer["contact"].pk),
    )
    assert entry.details["conversations"] == 2
    assert "Anna" not in entry.summary + json.dumps(entry.details)


@pytest.mark.parametrize("who", ["agent", "plain_user", "anonymous", "none"])
def test_only_supervisors_may_export(customer, who, request):
    with pytest.raises(PermissionDenied):
        contact_export(actor=_actor(who, request), contact=customer["contact"])

    assert not AuditEntry.objects.filter(action="contact-exported").exists()


# --- erasure -------------------------------------------------------------------------------------------


def _report_figures() -> dict:
    """What reports count: conversations, interactions with their times, messages, sizes, dispositions."""
    return {
        "conversations": list(
            Conversation.objects.order_by("pk").values_list("pk", "status", "opened_at", "closed_at", "disposition_id")
        ),
        "interactions": list(
            Interaction.objects.order_by("pk").values_list(
                "pk", "medium", "direction", "state", "created_at", "answered_at", "ended_at"
            )
        ),
        "messages": list(
            Message.objects.order_by("pk").values_list("pk", "medium", "direction", "delivery_status", "created_at")
        ),
        "attachments": list(Attachment.objects.order_by("pk").values_list("pk", "content_type", "size")),
        "notes": Note.objects.count(),
        "timeline": TimelineEntry.objects.count(),
        "chat_sessions": ChatSession.objects.count(),
    }


def test_erasure_removes_personal_data(customer, supervisor, media_root, django_capture_on_commit_callbacks):
    anna, duplicate = customer["contact"], customer["duplicate"]
    file_path = media_root / customer["attachment"].file.name
    assert file_path.exists()

    with django_capture_on_commit_callbacks(execute=True):
        counts = contact_erase(actor=supervisor, contact=anna)

    for contact in Contact.objects.filter(pk__in=[anna.pk, duplicate.pk]):
        assert (contact.first_name, contact.last_name, contact.company, contact.notes, contact.tags) == (
            "",
            "",
            "",
            "",
            [],
        )
        assert contact.erased_at is not None
    assert not ContactPoint.objects.exists()
    assert set(Message.objects.values_list("body", flat=True)) == {REDACTED}
    assert set(Message.objects.exclude(subject="").values_list("subject", flat=True)) == {REDACTED}
    assert set(Note.objects.values_list("body", flat=True)) == {REDACTED}
    assert set(Conversation.objects.exclude(notes="").values_list("notes", flat=True)) == {REDACTED}
    attachment = Attachment.objects.get()
    assert (attachment.filename, attachment.file.name) == (REDACTED, "")
    assert not file_path.exists()
    session = ChatSession.objects.get()
    assert (session.name, session.email, session.phone) == ("", "", "")
    assert session.visitor_id != customer["session"].visitor_id
    assert Offer.objects.get().transfer_note == REDACTED
    assert TimelineEntry.objects.get(kind=TimelineEntry.Kind.TRANSFERRED).data["note"] == REDACTED
    assert Interaction.objects.get(medium=Medium.EMAIL).details == {"mos": 4.2, "packets_lost": 3, "hd": True}
    assert counts["contacts"] == 2
    assert counts["points"] == 3
    # Nothing personal is left in any row of the affected tables.
    for model in (Contact, Conversation, Message, Note, Attachment, ChatSession, Offer, TimelineEntry, ContactMerge):
        dumped = json.dumps(list(model.objects.values()), default=str)
        for secret in ("Anna", "Schmidt", "peanuts", "ABC123", "X1234567", "anna@example.com", "+49301234567"):
            assert secret not in dumped, f"{secret} left in {model.__name__}"


def test_erasure_keeps_counts_durations_and_dispositions(customer, supervisor):
    before = _report_figures()

    contact_erase(actor=supervisor, contact=customer["contact"])

    assert _report_figures() == before


def test_erasure_is_audited_without_personal_data(customer, supervisor):
    contact_erase(actor=supervisor, contact=customer["contact"])

    entry = AuditEntry.objects.get(action="contact-erased")
    assert (entry.actor, entry.object_id) == (supervisor, str(customer["contact"].pk))
    assert entry.details["contact_ids"] == [customer["contact"].pk, customer["duplicate"].pk]
    assert entry.details["messages"] == 2
    assert "Anna" not in entry.summary + json.dumps(entry.details)


def test_an_erased_contact_is_gone_from_search_and_a_new_contact_starts_fresh(customer, supervisor):
    contact_erase(actor=supervisor, contact=customer["contact"])

    assert contacts_search(query="") == []
    contact, created = contact_identify(kind=EMAIL, value="anna@example.com")
    assert created is True
    assert contact.pk != customer["contact"].pk


def test_a_merge_of_an_erased_contact_cannot_be_undone(customer, supervisor):
    contact_erase(actor=supervisor, contact=customer["contact"])

    with pytest.raises(ValidationError, match="erased"):
        contact_merge_undo(actor=supervisor, merge=customer["merge"])


def test_erasure_is_refused_while_a_conversation_is_open(customer, supervisor):
    inbound_contact_receive(point_kind=PHONE, address="030 1234567", medium=Medium.VOICE)

    with pytest.raises(ValidationError, match="open conversation"):
        contact_erase(actor=supervisor, contact=customer["contact"])

    assert Contact.objects.get(pk=customer["contact"].pk).first_name == "Anna"


def test_erasing_twice_or_a_merged_away_contact_is_refused(customer, supervisor):
    with pytest.raises(ValidationError, match="merged into contact"):
        contact_erase(actor=supervisor, contact=customer["duplicate"])

    contact_erase(actor=supervisor, contact=customer["contact"])

    with pytest.raises(ValidationError, match="already erased"):
        contact_erase(actor=supervisor, contact=customer["contact"])


@pytest.mark.parametrize("who", ["agent", "plain_user", "anonymous", "none"])
def test_only_supervisors_may_erase(customer, who, request):
    with pytest.raises(PermissionDenied):
        contact_erase(actor=_actor(who, request), contact=customer["contact"])

    assert Contact.objects.get(pk=customer["contact"].pk).erased_at is None
    assert ContactPoint.objects.count() == 3
    assert not AuditEntry.objects.filter(action="contact-erased").exists()


def test_an_export_after_erasure_holds_no_personal_data(customer, supervisor):
    contact_erase(actor=supervisor, contact=customer["contact"])

    data = contact_export(actor=supervisor, contact=customer["contact"])

    dumped = json.dumps(data)
    assert data["points"] == []
    assert len(data["conversations"]) == 2
    for secret in ("Anna", "Schmidt", "peanuts", "ABC123", "passport", "anna@example.com"):
        assert secret not in dumped
