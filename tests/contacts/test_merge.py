"""Likely duplicates, merge preview, merge, undo (an exact round trip), audit and permissions."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.utils import timezone

from channels_app.webchat.models import ChatSession
from contacts.models import Contact, ContactMerge, ContactPoint
from contacts.selectors import DuplicateReason, contact_detail, contact_duplicates, contacts_search
from contacts.services import (
    MOVED_RELATIONS,
    contact_identify,
    contact_merge,
    contact_merge_preview,
    contact_merge_undo,
    contact_merge_undo_preview,
    contact_point_remove,
    contact_update,
)
from conversations.models import Attachment, Conversation, Interaction, Medium, Message, Note, TimelineEntry
from conversations.services import inbound_contact_receive
from core.models import AuditEntry
from tests.contacts.builders import BASE, EMAIL, PHONE, WEBCHAT, add_note, chat_session, closed_conversation
from tests.contacts.builders import contact_with_points as _with_points
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

AFFECTED_MODELS = (
    Contact,
    ContactPoint,
    Conversation,
    ChatSession,
    Interaction,
    Message,
    Note,
    TimelineEntry,
    Attachment,
)


def _dump() -> dict[str, list[dict]]:
    """Every row of every table a merge touches, as plain values."""
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in AFFECTED_MODELS}


@pytest.fixture
def pair():
    """Anna as two contacts: the one agents know (target) and one from an old email address (source)."""
    target = _with_points(
        (PHONE, "+49301234567"),
        first_name="Anna",
        last_name="Schmidt",
        company="",
        notes="Prefers the phone.",
        tags=["VIP"],
        last_activity_at=BASE + timedelta(days=1),
    )
    source = _with_points(
        (EMAIL, "a.schmidt@oldmail.example"),
        (PHONE, "+4915112345678"),
        first_name="A.",
        last_name="Schmidt",
        company="Acme Travel",
        notes="Writes in German.",
        tags=["vip", "press"],
        last_activity_at=BASE + timedelta(days=5),
    )
    target_history = closed_conversation(target, opened_at=BASE, media=(Medium.VOICE,))
    old = closed_conversation(source, opened_at=BASE + timedelta(days=2), media=(Medium.EMAIL,))
    chat = closed_conversation(source, opened_at=BASE + timedelta(days=4), media=(Medium.CHAT, Medium.SMS))
    note = add_note(chat, "Asked about the refund")
    session = chat_session(source, chat, name="A. Schmidt", email="a.schmidt@oldmail.example")
    Contact.objects.filter(pk__in=[target.pk, source.pk]).update(updated_at=BASE)
    target.refresh_from_db()
    source.refresh_from_db()
    return {
        "target": target,
        "source": source,
        "target_history": target_history,
        "moved": [chat, old],
        "note": note,
        "session": session,
    }


# --- preview ------------------------------------------------------------------------------------------


def test_preview_lists_what_moves_and_what_changes(pair):
    target, source = pair["target"], pair["source"]

    preview = contact_merge_preview(target=target, source=source)

    assert preview["can_merge"] is True
    assert preview["conflicts"] == []
    assert [(p.kind, p.value) for p in preview["points"]] == [
        ("email", "a.schmidt@oldmail.example"),
        ("phone", "+4915112345678"),
    ]
    assert preview["conversations"] == pair["moved"]
    assert preview["notes"] == [pair["note"]]
    assert preview["chat_session_count"] == 1
    assert preview["fields"] == {
        "company": ("", "Acme Travel"),
        "notes": ("Prefers the phone.", "Prefers the phone.\n\nWrites in German."),
        "tags": (["VIP"], ["VIP", "press"]),
        "last_activity_at": (BASE + timedelta(days=1), BASE + timedelta(days=5)),
    }


def test_preview_refuses_when_both_contacts_have_an_open_conversation(pair):
    inbound_contact_receive(point_kind=PHONE, address="+49301234567", medium=Medium.VOICE)
    inbound_contact_receive(point_kind=EMAIL, address="a.schmidt@oldmail.example", medium=Medium.EMAIL)

    preview = contact_merge_preview(target=pair["target"], source=pair["source"])

    assert preview["can_merge"] is False
    assert preview["conflicts"] == [
        "Both contacts have an open conversation. Close one of them first, then merge the contacts."
    ]


def test_preview_does_not_change_anything(pair):
    before = _dump()

    contact_merge_preview(target=pair["target"], source=pair["source"])

    assert _dump() == before


# --- merge ----------------------------------------------------------------------------------------------


def test_merge_moves_points_conversations_and_chat_sessions(pair, merger):
    target, source = pair["target"], pair["source"]
    source_points = sorted(source.points.values_list("pk", flat=True))

    merge = contact_merge(actor=merger, target=target, source=source)

    target.refresh_from_db()
    source.refresh_from_db()
    assert source.merged_into == target
    assert sorted(target.points.values_list("value", flat=True)) == [
        "+4915112345678",
        "+49301234567",
        "a.schmidt@oldmail.example",
    ]
    assert not source.points.exists()
    assert set(Conversation.objects.filter(contact=target)) == {pair["target_history"], *pair["moved"]}
    assert ChatSession.objects.get(pk=pair["session"].pk).contact == target
    assert (target.first_name, target.company, target.tags) == ("Anna", "Acme Travel", ["VIP", "press"])
    assert target.notes == "Prefers the phone.\n\nWrites in German."
    assert target.last_activity_at == BASE + timedelta(days=5)
    assert merge.snapshot["points"] == source_points
    assert sorted(merge.snapshot["conversations"]) == sorted(c.pk for c in pair["moved"])
    assert merge.snapshot["chat_sessions"] == [pair["session"].pk]
    assert merge.performed_by == merger


def test_after_a_merge_the_source_addresses_find_the_kept_contact(pair, merger):
    contact_merge(actor=merger, target=pair["target"], source=pair["source"])

    contact, created = contact_identify(kind=EMAIL, value="A.Schmidt@OldMail.example")

    assert (contact, created) == (pair["target"], False)
    assert [c.pk for c in contacts_search(query="schmidt")] == [pair["target"].pk]
    assert [c.pk for c in contacts_search(query="0151 12345678")] == [pair["target"].pk]


def test_merge_keeps_the_targets_name_and_takes_a_missing_one_whole(merger):
    nameless = _with_points((PHONE, "+49301111111"), first_name="", last_name="")
    named = _with_points((EMAIL, "kim@example.com"), first_name="Kim", last_name="Lee")

    contact_merge(actor=merger, target=nameless, source=named)

    nameless.refresh_from_db()
    assert (nameless.first_name, nameless.last_name) == ("Kim", "Lee")


def test_an_open_conversation_of_the_source_moves_to_the_target(pair, merger):
    live = inbound_contact_receive(point_kind=EMAIL, address="a.schmidt@oldmail.example", medium=Medium.EMAIL)

    contact_merge(actor=merger, target=pair["target"], source=pair["source"])

    assert Conversation.objects.open().get().contact == pair["target"]
    assert live.conversation.pk == Conversation.objects.open().get().pk


def test_merge_refused_when_both_have_an_open_conversation_changes_nothing(pair, merger):
    inbound_contact_receive(point_kind=PHONE, address="+49301234567", medium=Medium.VOICE)
    inbound_contact_receive(point_kind=EMAIL, address="a.schmidt@oldmail.example", medium=Medium.EMAIL)
    before = _dump()

    with pytest.raises(ValidationError, match="Both contacts have an open conversation"):
        contact_merge(actor=merger, target=pair["target"], source=pair["source"])

    assert _dump() == before
    assert not ContactMerge.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_conversation_opened_during_the_merge_is_settled_by_the_database(pair, merger, monkeypatch):
    """The target's own conversation may open after the check; the one-open-per-contact index refuses the move."""
    inbound_contact_receive(point_kind=PHONE, address="+49301234567", medium=Medium.VOICE)
    inbound_contact_receive(point_kind=EMAIL, address="a.schmidt@oldmail.example", medium=Medium.EMAIL)
    monkeypatch.setattr("contacts.services._merge_conflicts", lambda target, source: [])
    before = _dump()

    with pytest.raises(ValidationError, match="Both contacts have an open conversation"):
        contact_merge(actor=merger, target=pair["target"], source=pair["source"])

    assert _dump() == before
    assert not ContactMerge.objects.exists()


def test_merged_tags_keep_the_limit(merger):
    target = ContactFactory(tags=[f"t{index}" for index in range(19)])
    source = ContactFactory(tags=["T1", "new", "newer"])

    contact_merge(actor=merger, target=target, source=source)

    target.refresh_from_db()
    assert target.tags == [*(f"t{index}" for index in range(19)), "new"]


def test_merge_into_itself_or_of_a_merged_contact_is_refused(pair, merger):
    target, source = pair["target"], pair["source"]
    with pytest.raises(ValidationError, match="into itself"):
        contact_merge(actor=merger, target=target, source=target)

    contact_merge(actor=merger, target=target, source=source)
    source.refresh_from_db()

    with pytest.raises(ValidationError, match="already merged"):
        contact_merge(actor=merger, target=target, source=source)
    with pytest.raises(ValidationError, match="already merged"):
        contact_merge(actor=merger, target=source, source=ContactFactory())


def test_merge_of_an_erased_contact_is_refused(pair, merger):
    Contact.objects.filter(pk=pair["source"].pk).update(erased_at=timezone.now())
    pair["source"].refresh_from_db()

    with pytest.raises(ValidationError, match="erased"):
        contact_merge(actor=merger, target=pair["target"], source=pair["source"])


def test_merge_and_undo_are_audited(pair, merger):
    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    contact_merge_undo(actor=merger, merge=merge)

    entries = list(AuditEntry.objects.order_by("at", "id"))
    assert [(e.action, e.object_type, e.object_id, e.actor) for e in entries] == [
        ("contact-merged", "contacts.contactmerge", str(merge.pk), merger),
        ("contact-merge-undone", "contacts.contactmerge", str(merge.pk), merger),
    ]
    assert entries[0].details["source"] == pair["source"].pk
    assert entries[0].details["points"] == 2
    assert entries[0].details["conversations"] == 2
    assert entries[0].actor_label == merger.username
    # Audit entries name rows by id and never copy the customer's data.
    for entry in entries:
        assert "Schmidt" not in entry.summary
        assert "Schmidt" not in str(entry.details)


# --- undo ------------------------------------------------------------------------------------------------


def test_merge_then_undo_leaves_every_affected_table_as_before(pair, merger):
    live = inbound_contact_receive(point_kind=EMAIL, address="a.schmidt@oldmail.example", medium=Medium.EMAIL)
    assert live.conversation.contact == pair["source"]
    before = _dump()

    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    assert _dump() != before
    contact_merge_undo(actor=merger, merge=merge)

    assert _dump() == before
    merge.refresh_from_db()
    assert merge.undone_by == merger
    assert merge.undone_at is not None


def test_an_undone_merge_cannot_be_undone_twice_but_the_pair_can_be_merged_again(pair, merger):
    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    contact_merge_undo(actor=merger, merge=merge)

    with pytest.raises(ValidationError, match="already undone"):
        contact_merge_undo(actor=merger, merge=merge)

    pair["source"].refresh_from_db()
    pair["target"].refresh_from_db()
    again = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    assert again.pk != merge.pk


def test_undo_is_refused_while_the_kept_contact_is_merged_into_a_third_one(pair, merger):
    third = _with_points((PHONE, "+4940555555"), first_name="Anna", last_name="Schmidt")
    first = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    pair["target"].refresh_from_db()
    second = contact_merge(actor=merger, target=third, source=pair["target"])

    with pytest.raises(ValidationError, match="undo that merge first"):
        contact_merge_undo(actor=merger, merge=first)

    contact_merge_undo(actor=merger, merge=second)
    contact_merge_undo(actor=merger, merge=first)
    assert Contact.objects.filter(merged_into__isnull=False).count() == 0
    assert ContactPoint.objects.get(value="a.schmidt@oldmail.example").contact == pair["source"]


def test_conversations_opened_after_the_merge_stay_with_the_kept_contact(pair, merger):
    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    later = inbound_contact_receive(point_kind=EMAIL, address="a.schmidt@oldmail.example", medium=Medium.EMAIL)

    preview = contact_merge_undo_preview(merge=merge)
    assert preview["can_undo"] is True
    assert preview["conversations_since"] == [later.conversation.pk]

    contact_merge_undo(actor=merger, merge=merge)

    assert Conversation.objects.get(pk=later.conversation.pk).contact == pair["target"]
    assert set(Conversation.objects.filter(contact=pair["source"])) == set(pair["moved"])
    entry = AuditEntry.objects.get(action="contact-merge-undone")
    assert entry.details["conversations_since"] == [later.conversation.pk]


def test_fields_edited_after_the_merge_keep_the_newer_value(pair, merger, agent):
    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    contact_update(actor=agent.user, contact=pair["target"], company="Acme Travel GmbH")

    preview = contact_merge_undo_preview(merge=merge)
    contact_merge_undo(actor=merger, merge=merge)

    target = Contact.objects.get(pk=pair["target"].pk)
    assert preview["kept_fields"] == ["company"]
    assert target.company == "Acme Travel GmbH"
    assert target.notes == "Prefers the phone."
    assert target.tags == ["VIP"]


def test_a_point_removed_after_the_merge_is_not_brought_back(pair, merger, agent):
    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    removed = ContactPoint.objects.get(value="+4915112345678")
    contact_point_remove(actor=agent.user, point=removed)

    preview = contact_merge_undo_preview(merge=merge)
    contact_merge_undo(actor=merger, merge=merge)

    assert preview["gone"]["points"] == [removed.pk]
    assert list(pair["source"].points.values_list("value", flat=True)) == ["a.schmidt@oldmail.example"]


def test_the_contact_page_lists_merges_that_can_be_undone(pair, merger):
    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])

    assert contact_detail(contact_id=pair["target"].pk).merges == [merge]
    assert contact_detail(contact_id=pair["source"].pk).contact.merged_into == pair["target"]

    contact_merge_undo(actor=merger, merge=merge)
    assert contact_detail(contact_id=pair["target"].pk).merges == []


# --- permissions ------------------------------------------------------------------------------------------


def _actor(who: str, request):
    """The acting user for a role: an agent's user, a plain user, an anonymous visitor, or nobody."""
    if who == "none":
        return None
    if who == "anonymous":
        return AnonymousUser()
    fixture = request.getfixturevalue(who)
    return getattr(fixture, "user", fixture)


@pytest.mark.parametrize("who", ["agent", "plain_user", "anonymous", "none"])
def test_merge_is_refused_without_the_permission(pair, who, request):
    actor = _actor(who, request)
    before = _dump()

    with pytest.raises(PermissionDenied):
        contact_merge(actor=actor, target=pair["target"], source=pair["source"])

    assert _dump() == before
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("who", ["agent", "anonymous", "none"])
def test_undo_is_refused_without_the_permission(pair, merger, who, request):
    merge = contact_merge(actor=merger, target=pair["target"], source=pair["source"])
    actor = _actor(who, request)

    with pytest.raises(PermissionDenied):
        contact_merge_undo(actor=actor, merge=merge)

    assert ContactMerge.objects.get().undone_at is None


def test_a_supervisor_may_merge_and_undo(pair, supervisor):
    merge = contact_merge(actor=supervisor, target=pair["target"], source=pair["source"])
    contact_merge_undo(actor=supervisor, merge=merge)

    assert AuditEntry.objects.filter(actor=supervisor).count() == 2


def test_an_inactive_user_with_the_permission_is_refused(pair, merger):
    merger.is_active = False
    merger.save()

    with pytest.raises(PermissionDenied):
        contact_merge(actor=merger, target=pair["target"], source=pair["source"])


# --- likely duplicates ---------------------------------------------------------------------------------


def test_duplicates_by_name_ignore_case_accents_and_spaces():
    jurgen = ContactFactory(first_name="Jürgen", last_name="Müller", last_activity_at=BASE)
    same = ContactFactory(first_name=" jurgen", last_name="MULLER ", last_activity_at=BASE + timedelta(days=1))
    ContactFactory(first_name="Jürgen", last_name="Meier")

    assert contact_duplicates() == [(same, jurgen, DuplicateReason.SAME_NAME)]


def test_duplicates_by_last_name_at_the_same_company():
    first = ContactFactory(first_name="J.", last_name="Park", company="Acme Travel")
    second = ContactFactory(first_name="Jo", last_name="park", company="ACME travel")
    ContactFactory(first_name="Kim", last_name="Park", company="Globex")

    assert contact_duplicates() == [(second, first, DuplicateReason.SAME_LAST_NAME_AND_COMPANY)]


def test_a_group_of_equal_names_pairs_each_with_the_newest():
    contacts = [
        ContactFactory(first_name="Maria", last_name="Garcia", last_activity_at=BASE + timedelta(days=day))
        for day in range(4)
    ]

    pairs = contact_duplicates()

    assert {(a.pk, b.pk) for a, b, _reason in pairs} == {(contacts[3].pk, c.pk) for c in contacts[:3]}


def test_an_address_used_in_another_contacts_chat_makes_them_duplicates():
    known = _with_points((EMAIL, "kim@example.com"), first_name="Kim", last_name="Lee")
    anonymous = ContactFactory(first_name="", last_name="")
    conversation = closed_conversation(anonymous, opened_at=BASE)
    chat_session(anonymous, conversation, email="kim@example.com")

    assert contact_duplicates() == [(anonymous, known, DuplicateReason.SHARED_EMAIL)]


def test_a_phone_given_in_another_contacts_chat_makes_them_duplicates():
    known = _with_points((PHONE, "+49301234567"), first_name="Kim", last_name="Lee")
    other = _with_points((EMAIL, "k.lee@example.org"), first_name="K", last_name="Lee-Park")
    chat_session(other, closed_conversation(other, opened_at=BASE), phone="+49301234567")

    assert contact_duplicates() == [(other, known, DuplicateReason.SHARED_PHONE)]


def test_a_browser_that_chatted_as_two_contacts_makes_them_duplicates():
    visitor = uuid.uuid4()
    anonymous = _with_points((WEBCHAT, str(visitor)), first_name="", last_name="")
    identified = _with_points((EMAIL, "kim@example.com"), first_name="Kim", last_name="Lee")
    chat_session(identified, closed_conversation(identified, opened_at=BASE), visitor_id=visitor)
    # Chats from the owner's own browser are no evidence.
    chat_session(anonymous, closed_conversation(anonymous, opened_at=BASE), visitor_id=visitor)

    assert contact_duplicates() == [(identified, anonymous, DuplicateReason.SHARED_VISITOR)]


def test_a_pair_is_listed_once_with_its_strongest_reason():
    known = _with_points((EMAIL, "kim@example.com"), first_name="Kim", last_name="Lee")
    other = ContactFactory(first_name="Kim", last_name="Lee")
    chat_session(other, closed_conversation(other, opened_at=BASE), email="kim@example.com")

    assert contact_duplicates() == [(other, known, DuplicateReason.SHARED_EMAIL)]


def test_merged_and_erased_contacts_are_not_duplicates(pair, merger):
    ContactFactory(first_name="Anna", last_name="Schmidt", erased_at=timezone.now())
    ContactFactory(first_name="Anna", last_name="Schmidt", merged_into=pair["target"])

    assert contact_duplicates() == []


def test_duplicates_are_limited_and_strongest_first():
    for index in range(3):
        ContactFactory(first_name=f"P{index}", last_name="Same")
        ContactFactory(first_name=f"P{index}", last_name="Same")
    known = _with_points((EMAIL, "kim@example.com"), first_name="Kim", last_name="Lee")
    other = ContactFactory(first_name="", last_name="")
    chat_session(other, closed_conversation(other, opened_at=BASE), email="kim@example.com")

    pairs = contact_duplicates(limit=2)

    assert len(pairs) == 2
    assert pairs[0] == (other, known, DuplicateReason.SHARED_EMAIL)
    assert pairs[1].reason == DuplicateReason.SAME_NAME


@pytest.mark.parametrize("size", [2, 12])
def test_duplicates_run_a_constant_number_of_queries(django_assert_num_queries, size):
    for index in range(size):
        _with_points((EMAIL, f"a{index}@example.com"), first_name=f"N{index}", last_name="Twin")
        ContactFactory(first_name=f"N{index}", last_name="Twin")

    with django_assert_num_queries(4):
        pairs = contact_duplicates(limit=100)
        assert all(len(a.points.all()) + len(b.points.all()) == 1 for a, b, _reason in pairs)
    assert len(pairs) == size


def test_no_duplicates_is_an_empty_list():
    ContactFactory(first_name="Only", last_name="One")

    assert contact_duplicates() == []


# --- every relation to a contact is handled --------------------------------------------------------


def test_every_relation_to_a_contact_is_moved_by_a_merge_or_deliberately_left():
    """A new model pointing at Contact must be added to MOVED_RELATIONS (and to export and erasure)."""
    handled = {(ContactPoint, "contact")} | {(model, "contact") for _key, model in MOVED_RELATIONS}
    # The merge bookkeeping itself: kept as it is so a merge can be undone.
    bookkeeping = {(Contact, "merged_into"), (ContactMerge, "target"), (ContactMerge, "source")}
    relations = {
        (relation.related_model, relation.field.name)
        for relation in Contact._meta.get_fields(include_hidden=True)
        if relation.auto_created and not relation.concrete and isinstance(relation.field, models.ForeignKey)
    }

    assert relations == handled | bookkeeping
