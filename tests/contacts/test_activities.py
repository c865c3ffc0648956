"""The contact page: summary with counts, the Activities tab across channels, and searching it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contacts.selectors import contact_activities, contact_detail, contact_timeline_search
from conversations.models import Conversation, Medium
from conversations.selectors import conversation_timeline
from conversations.services import inbound_contact_receive
from tests.contacts.builders import BASE, EMAIL, PHONE, add_note, closed_conversation, contact_with_points
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return contact_with_points((PHONE, "+49301234567"), (EMAIL, "anna@example.com"), first_name="Anna")


@pytest.fixture
def history(customer) -> list[Conversation]:
    """One conversation per channel mix, listed newest first."""
    chat = closed_conversation(customer, opened_at=BASE, media=(Medium.CHAT,))
    call_then_email = closed_conversation(
        customer, opened_at=BASE + timedelta(days=1), media=(Medium.VOICE, Medium.EMAIL)
    )
    chat_call_sms = closed_conversation(
        customer, opened_at=BASE + timedelta(days=2), media=(Medium.CHAT, Medium.VOICE, Medium.SMS)
    )
    email = closed_conversation(customer, opened_at=BASE + timedelta(days=3), media=(Medium.EMAIL,))
    return [email, chat_call_sms, call_then_email, chat]


def _walk(contact, *, limit: int) -> list[Conversation]:
    found, before = [], None
    while page := contact_activities(contact=contact, before=before, limit=limit):
        found.extend(page)
        before = (page[-1].opened_at, page[-1].pk)
    return found


def test_activities_list_every_conversation_across_channels_newest_first(customer, history):
    other = ContactFactory()
    closed_conversation(other, opened_at=BASE + timedelta(days=5))
    live = inbound_contact_receive(point_kind=PHONE, address="030 1234567", medium=Medium.SMS).conversation

    activities = contact_activities(contact=customer)

    assert [c.pk for c in activities] == [live.pk] + [c.pk for c in history]
    media = [[i.medium for i in conversation.interactions.all()] for conversation in activities]
    assert media == [["sms"], ["email"], ["chat", "voice", "sms"], ["voice", "email"], ["chat"]]


@pytest.mark.parametrize("limit", [1, 2, 3, 10])
def test_activities_pages_return_each_conversation_once(customer, history, limit):
    same_time = closed_conversation(customer, opened_at=history[0].opened_at, media=(Medium.SMS,))

    assert [c.pk for c in _walk(customer, limit=limit)] == [same_time.pk] + [c.pk for c in history]


def test_each_activity_expands_into_its_full_timeline(customer, history):
    chat_call_sms = history[1]

    entries = conversation_timeline(conversation=chat_call_sms)

    assert [entry.kind for entry in entries] == ["opened", "message", "message"]
    assert [entry.message.medium for entry in entries if entry.message] == ["chat", "sms"]


@pytest.mark.parametrize("size", [2, 12])
def test_activities_run_two_queries_whatever_the_history(customer, django_assert_num_queries, size):
    for index in range(size):
        closed_conversation(customer, opened_at=BASE + timedelta(hours=index), media=(Medium.CHAT, Medium.VOICE))

    with django_assert_num_queries(2):
        activities = contact_activities(contact=customer, limit=20)
        assert sum(len(c.interactions.all()) for c in activities) == 2 * size


def test_contact_detail_has_points_counts_and_the_open_conversation(customer, history):
    live = inbound_contact_receive(point_kind=EMAIL, address="Anna@Example.com", medium=Medium.EMAIL).conversation

    detail = contact_detail(contact_id=customer.pk)

    assert detail.contact == customer
    assert [(p.kind, p.value) for p in detail.points] == [("email", "anna@example.com"), ("phone", "+49301234567")]
    assert detail.conversation_count == 5
    assert detail.open_conversation == live
    assert detail.interaction_counts == {"chat": 2, "voice": 2, "email": 3, "sms": 1}
    assert detail.merges == []


def test_contact_detail_of_an_unknown_contact_is_none():
    assert contact_detail(contact_id=10**9) is None


@pytest.mark.parametrize("size", [1, 10])
def test_contact_detail_runs_a_constant_number_of_queries(customer, django_assert_num_queries, size):
    for index in range(size):
        closed_conversation(customer, opened_at=BASE + timedelta(hours=index), media=(Medium.CHAT, Medium.SMS))
    inbound_contact_receive(point_kind=PHONE, address="+49301234567", medium=Medium.VOICE)

    with django_assert_num_queries(6):
        detail = contact_detail(contact_id=customer.pk)
    assert detail.conversation_count == size + 1


def test_timeline_search_finds_conversations_by_message_subject_note_and_wrapup(customer, history, agent):
    email, chat_call_sms, call_then_email, chat = history
    add_note(chat, "Customer prefers the window seat")
    Conversation.objects.filter(pk=chat_call_sms.pk).update(notes="Refund approved")

    assert [c.pk for c in contact_timeline_search(contact=customer, text="booking abc123")] == [
        email.pk,
        call_then_email.pk,
    ]
    assert [c.pk for c in contact_timeline_search(contact=customer, text="WINDOW seat")] == [chat.pk]
    assert [c.pk for c in contact_timeline_search(contact=customer, text="refund")] == [chat_call_sms.pk]
    assert [c.pk for c in contact_timeline_search(contact=customer, text="hello by sms")] == [chat_call_sms.pk]
    assert contact_timeline_search(contact=customer, text="nothing like this") == []


def test_timeline_search_stays_within_the_contact(customer, history):
    other = ContactFactory()
    closed_conversation(other, opened_at=BASE, body="Größe der Koffer")
    mine = closed_conversation(customer, opened_at=BASE + timedelta(days=9), body="Größe der Koffer")

    assert [c.pk for c in contact_timeline_search(contact=customer, text="größe")] == [mine.pk]
    assert [c.pk for c in contact_timeline_search(contact=customer, text="GRÖßE der")] == [mine.pk]


def test_empty_timeline_search_lists_the_whole_history(customer, history):
    assert [c.pk for c in contact_timeline_search(contact=customer, text="  ")] == [c.pk for c in history]
