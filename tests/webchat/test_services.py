"""Web chat services: starting (pre-chat form, recognition, joining), tokens, messages, receipts,
attachments, ending and the inactivity sweep."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from agents.models import AgentProfile, AgentState
from agents.services import agent_state_set
from channels_app.webchat.models import ChatSession
from channels_app.webchat.services import (
    ACTIVITY_STAMP_EVERY,
    SESSION_MAX_AGE,
    attachment_check,
    chat_agent_message,
    chat_attachment_send,
    chat_customer_message,
    chat_end,
    chat_inactivity_sweep,
    chat_mark_delivered,
    chat_mark_read,
    chat_start,
    session_from_token,
    session_token,
    visitor_from_token,
    visitor_token,
)
from contacts.models import Contact, ContactPoint
from conversations.models import (
    Attachment,
    Conversation,
    Direction,
    Interaction,
    Medium,
    Message,
    Offer,
    Service,
    TimelineEntry,
)
from conversations.routing import offer_accept
from conversations.services import conversation_open, inbound_contact_receive, interaction_answer, interaction_end
from core import realtime
from core.groups import agent_group, conversation_group, service_group
from tests.factories import AgentFactory, ContactFactory, ContactPointFactory, ConversationFactory, ServiceFactory
from tests.garbage import cyclic_garbage
from tests.webchat.silence import customer_silent_since

pytestmark = pytest.mark.django_db

FORM = {"name": "Ada Lovelace", "email": "ada@example.com", "question": "Can I change my booking?"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.7\n" + b"x" * 32


class RecordingLayer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message))


@pytest.fixture(autouse=True)
def published(monkeypatch, settings, tmp_path) -> list[tuple[str, dict]]:
    """Events are recorded; timers are not sent to a broker; files go to a temporary folder."""
    settings.DEFAULT_PHONE_REGION = "DE"
    settings.MEDIA_ROOT = tmp_path / "media"
    layer = RecordingLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: layer)
    monkeypatch.setattr("conversations.tasks.offer_expire.apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr("agents.tasks.agent_acw_expire.apply_async", lambda *args, **kwargs: None)
    return layer.sent


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def service() -> Service:
    return ServiceFactory(wrapup_seconds=30)


def _ready(service: Service) -> AgentProfile:
    profile = AgentFactory()
    profile.services.add(service)
    agent_state_set(agent=profile, state=AgentState.READY)
    return profile


def _start(service: Service, committed, *, visitor: str | None = None, **data) -> ChatSession:
    with committed():
        return chat_start(service=service, data={**FORM, **data}, visitor=visitor)


def _answered(service: Service, committed, **data) -> tuple[ChatSession, AgentProfile]:
    """A chat an agent has accepted."""
    profile = _ready(service)
    session = _start(service, committed, **data)
    offer = Offer.objects.get(interaction_id=session.interaction_id, state=Offer.State.PENDING)
    with committed():
        offer_accept(offer_id=offer.pk, agent_user=profile.user)
    session.refresh_from_db()
    return session, profile


def _interaction(session: ChatSession) -> Interaction:
    return Interaction.objects.get(pk=session.interaction_id)


def _conversation(session: ChatSession) -> Conversation:
    return Conversation.objects.get(pk=session.conversation_id)


def _receipts(conversation: Conversation) -> list[tuple[str, dict]]:
    event = {"type": "conversation.receipts", "conversation": str(conversation.uuid)}
    groups = [conversation_group(conversation.uuid)]
    if conversation.assigned_agent_id:
        groups.append(agent_group(conversation.assigned_agent_id))
    return [(group, event) for group in groups]


# --- the pre-chat form --------------------------------------------------------------------------------


def test_chat_start_opens_a_conversation_and_queues_the_chat(service, committed, published):
    session = _start(service, committed)

    conversation, interaction = _conversation(session), _interaction(session)
    assert (session.name, session.email, session.phone) == ("Ada Lovelace", "ada@example.com", "")
    assert (conversation.service, conversation.is_open, conversation.assigned_agent) == (service, True, None)
    assert (interaction.medium, interaction.direction, interaction.state, interaction.service) == (
        Medium.CHAT,
        Direction.INBOUND,
        Interaction.State.QUEUED,
        service,
    )
    contact = session.contact
    assert (contact.first_name, contact.last_name) == ("Ada", "Lovelace")
    assert set(contact.points.values_list("kind", "value")) == {
        (ContactPoint.Kind.EMAIL, "ada@example.com"),
        (ContactPoint.Kind.WEBCHAT, str(session.visitor_id)),
    }
    # The question is the customer's first message, and the customer now waits for an answer.
    message = Message.objects.get(interaction=interaction)
    assert (message.body, message.author_kind, message.delivery_status) == (
        "Can I change my booking?",
        Message.Author.CUSTOMER,
        Message.Status.RECEIVED,
    )
    assert conversation.customer_waiting_since is not None
    assert (service_group(service.pk), {"type": "service.queue", "service_id": service.pk}) in published


def test_chat_start_is_routed_to_a_ready_agent_on_commit(service, committed):
    profile = _ready(service)

    session = _start(service, committed)

    offer = Offer.objects.get(interaction_id=session.interaction_id)
    assert (offer.state, offer.agent_id) == (Offer.State.PENDING, profile.user_id)
    assert _interaction(session).state == Interaction.State.OFFERED


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({"email": "ada@example.com", "question": "Hi"}, {"name"}),
        ({"name": "Ada", "question": "   "}, {"question"}),
        ({}, {"name", "question"}),
    ],
)
def test_required_prechat_fields_must_be_filled(service, data, missing):
    with pytest.raises(ValidationError) as refused:
        chat_start(service=service, data=data)

    assert set(refused.value.message_dict) == missing
    assert not Contact.objects.exists()
    assert not ChatSession.objects.exists()


def test_optional_prechat_fields_may_stay_empty(service, committed):
    session = _start(service, committed, email="", phone="")

    assert (session.email, session.phone) == ("", "")
    assert session.contact.points.get().kind == ContactPoint.Kind.WEBCHAT


def test_prechat_fields_switched_off_are_ignored(committed):
    service = ServiceFactory(prechat_fields={"name": "required", "email": "off", "phone": "off", "question": "off"})

    session = _start(service, committed, email="not an address", phone="12", question="Hi")

    assert (session.name, session.email, session.phone) == ("Ada Lovelace", "", "")
    assert not Message.objects.exists()


def test_a_service_may_require_the_phone_number(committed):
    service = ServiceFactory(prechat_fields={"name": "optional", "phone": "required"})

    with pytest.raises(ValidationError) as refused:
        chat_start(service=service, data={"name": "Ada"})
    assert set(refused.value.message_dict) == {"phone"}

    session = _start(service, committed, name="", phone="030 1234567")
    assert session.phone == "+49301234567"


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "ada@"), ("phone", "+49 1"), ("phone", "call me"), ("name", "A" * 151), ("question", "x" * 4001)],
)
def test_invalid_prechat_values_are_refused(service, field, value):
    with pytest.raises(ValidationError) as refused:
        chat_start(service=service, data={**FORM, field: value})

    assert list(refused.value.message_dict) == [field]
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    "changes",
    [{"is_active": False}, {"media": [Medium.VOICE, Medium.EMAIL]}],
    ids=["inactive-service", "service-without-chat"],
)
def test_chat_is_refused_where_the_service_does_not_offer_it(changes):
    service = ServiceFactory(**changes)

    with pytest.raises(ValidationError):
        chat_start(service=service, data=FORM)

    assert not Conversation.objects.exists()


# --- recognising the customer ---------------------------------------------------------------------------


def test_a_known_email_is_recognised_in_any_spelling(service, committed):
    known = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="ada@example.com").contact

    session = _start(service, committed, email="  ADA@Example.COM ")

    assert session.contact == known
    assert Contact.objects.count() == 1
    assert session.email == "ada@example.com"


@pytest.mark.parametrize("spelling", ["030 1234567", "+49 (30) 123 4567", "0049301234567"])
def test_a_known_phone_number_is_recognised_in_any_format(committed, spelling):
    service = ServiceFactory(prechat_fields={"name": "optional", "phone": "required"})
    known = ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+49301234567").contact

    session = _start(service, committed, email="", phone=spelling)

    assert session.contact == known
    assert Contact.objects.count() == 1


def test_the_email_decides_before_the_phone_and_the_phone_is_added(service, committed):
    known = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="ada@example.com").contact

    session = _start(service, committed, phone="030 1234567")

    assert session.contact == known
    assert known.points.filter(kind=ContactPoint.Kind.PHONE, value="+49301234567").exists()


def test_a_phone_number_of_another_contact_stays_with_that_contact(service, committed):
    owner = ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+49301234567").contact

    session = _start(service, committed, phone="030 1234567")

    assert session.contact != owner
    assert ContactPoint.objects.get(kind=ContactPoint.Kind.PHONE).contact == owner


def test_a_recognised_contact_keeps_their_name_and_a_nameless_one_gets_the_given_name(service, committed):
    named = ContactPointFactory(
        kind=ContactPoint.Kind.EMAIL, value="ada@example.com", contact=ContactFactory(first_name="Augusta")
    ).contact
    nameless = ContactPointFactory(
        kind=ContactPoint.Kind.EMAIL, value="bob@example.com", contact=ContactFactory(first_name="", last_name="")
    ).contact

    _start(service, committed, name="Ada L")
    _start(service, committed, name="Bob van Dyke", email="bob@example.com")

    named.refresh_from_db()
    nameless.refresh_from_db()
    assert named.first_name == "Augusta"
    assert (nameless.first_name, nameless.last_name) == ("Bob", "van Dyke")


def test_the_same_visitor_token_is_the_same_contact(committed):
    service = ServiceFactory(prechat_fields={"name": "optional", "question": "optional"})
    first = _start(service, committed, name="", email="", question="")
    with committed():
        chat_end(session=first, reason="customer_left")
    assert not _conversation(first).is_open

    stranger = _start(service, committed, name="", email="", question="")
    with committed():
        chat_end(session=stranger, reason="customer_left")
    returning = _start(service, committed, name="", email="", question="", visitor=visitor_token(first.visitor_id))

    assert returning.visitor_id == first.visitor_id
    assert returning.contact == first.contact
    assert stranger.contact != first.contact
    # A new conversation: the first one was closed.
    assert returning.conversation != first.conversation


def test_a_forged_visitor_token_gets_a_new_visitor(service, committed):
    first = _start(service, committed, email="")
    forged = signing.dumps(str(first.visitor_id), salt="another-salt")

    with committed():
        chat_end(session=first, reason="customer_left")
    second = _start(service, committed, email="", visitor=forged)

    assert second.visitor_id != first.visitor_id
    assert second.contact != first.contact


# --- joining the contact's open conversation --------------------------------------------------------------


def test_a_second_tab_of_the_same_browser_continues_the_live_chat(service, committed):
    first = _start(service, committed)

    second = _start(service, committed, question="Are you there?", visitor=visitor_token(first.visitor_id))

    assert second == first
    assert ChatSession.objects.count() == 1
    assert Interaction.objects.count() == 1


def test_another_browser_giving_the_same_email_does_not_get_the_live_chat(service, committed):
    first = _start(service, committed)

    other = _start(service, committed, question="Hi, it's me too")

    assert other != first
    assert other.visitor_id != first.visitor_id
    assert other.interaction_id != first.interaction_id
    # Still the same contact, so the same open conversation.
    assert (other.contact, other.conversation) == (first.contact, first.conversation)


def test_a_chat_joins_the_open_conversation_and_its_agent_takes_it_directly(service, committed, published):
    profile = _ready(service)
    email = inbound_contact_receive(point_kind=ContactPoint.Kind.EMAIL, address="ada@example.com", medium=Medium.EMAIL)
    interaction_answer(interaction=email, agent=profile.user)
    published.clear()

    session = _start(service, committed)

    interaction = _interaction(session)
    assert session.conversation_id == email.conversation_id
    assert (interaction.state, interaction.agent_id) == (Interaction.State.ACTIVE, profile.user_id)
    assert interaction.answered_at is not None
    assert not Offer.objects.exists()
    assert (agent_group(profile.user_id), {"type": "agent.conversations", "user_id": profile.user_id}) in published
    # Taking work makes a Ready agent Busy, as accepting an offer does.
    profile.refresh_from_db()
    assert profile.state == AgentState.BUSY


def test_a_chat_joining_an_unassigned_open_conversation_is_queued_and_routed(service, committed):
    contact = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="ada@example.com").contact
    conversation, _created = conversation_open(contact=contact, service=service)
    profile = _ready(service)

    session = _start(service, committed)

    assert session.conversation == conversation
    assert Offer.objects.get(interaction_id=session.interaction_id).agent_id == profile.user_id


def test_a_chat_for_a_conversation_whose_agent_logged_out_is_queued(service, committed):
    gone = AgentFactory()
    contact = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="ada@example.com").contact
    conversation, _created = conversation_open(contact=contact, service=service, agent=gone.user)
    colleague = _ready(service)

    session = _start(service, committed)

    interaction = _interaction(session)
    assert session.conversation == conversation
    assert (interaction.state, interaction.agent_id) == (Interaction.State.OFFERED, colleague.user_id)


# --- tokens --------------------------------------------------------------------------------------------------


def test_session_token_round_trip(service, committed):
    session = _start(service, committed)

    found = session_from_token(session_token(session))

    assert found == session
    assert found.conversation == session.conversation


def test_forged_tampered_unknown_and_expired_session_tokens_are_refused(service, committed):
    session = _start(service, committed)
    token = session_token(session)
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    forged = signing.dumps(str(session.public_id), salt="not-the-session-salt", compress=True)
    unknown = signing.dumps(str(uuid.uuid4()), salt="parley.webchat.session", compress=True)
    not_a_uuid = signing.dumps("hello", salt="parley.webchat.session", compress=True)
    long_ago = time.time() - SESSION_MAX_AGE.total_seconds() - 60
    with mock.patch("django.core.signing.time.time", return_value=long_ago):
        expired = session_token(session)

    for bad in (tampered, forged, unknown, not_a_uuid, expired, "", "garbage", visitor_token(session.public_id)):
        assert session_from_token(bad) is None, bad


def test_visitor_token_round_trip_and_refusals():
    visitor = uuid.uuid4()
    token = visitor_token(visitor)

    assert visitor_from_token(token) == visitor
    assert visitor_from_token(None) is None
    assert visitor_from_token("") is None
    assert visitor_from_token(token[:-2] + "xx") is None
    assert visitor_from_token(signing.dumps(str(visitor), salt="parley.webchat.session", compress=True)) is None


# --- messages ------------------------------------------------------------------------------------------------------


def test_customer_message_starts_the_waiting_timer_once(service, committed):
    session, _profile = _answered(service, committed)
    Conversation.objects.filter(pk=session.conversation_id).update(customer_waiting_since=None)
    ChatSession.objects.filter(pk=session.pk).update(
        last_customer_activity_at=timezone.now() - timedelta(minutes=5), inactivity_warned_at=timezone.now()
    )

    first = chat_customer_message(session=session, text="  Hello?  ")
    waiting_since = _conversation(session).customer_waiting_since
    chat_customer_message(session=session, text="Anyone there?")

    assert first.body == "Hello?"
    assert (first.direction, first.author_kind) == (Direction.INBOUND, Message.Author.CUSTOMER)
    assert waiting_since is not None
    assert _conversation(session).customer_waiting_since == waiting_since
    session.refresh_from_db()
    assert session.last_customer_activity_at >= waiting_since
    assert session.inactivity_warned_at is None
    assert TimelineEntry.objects.filter(message=first).exists()


def test_customer_message_length_is_limited(service, committed, settings):
    session = _start(service, committed)
    settings.CHAT_MAX_MESSAGE_CHARS = 10

    chat_customer_message(session=session, text="x" * 10)
    for text in ("x" * 11, "", "   "):
        with pytest.raises(ValidationError):
            chat_customer_message(session=session, text=text)

    assert list(Message.objects.values_list("body", flat=True)) == [FORM["question"], "x" * 10]


def test_customer_message_into_an_ended_chat_is_refused(service, committed):
    session, profile = _answered(service, committed)
    with committed():
        chat_end(session=session, reason="agent_ended", actor=profile.user)

    with pytest.raises(ValidationError):
        chat_customer_message(session=session, text="One more thing")

    assert Message.objects.count() == 1


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement write is PostgreSQL's; SQLite runs step by step"
)

MESSAGE_FIELDS = ("medium", "direction", "author_kind", "author_agent_id", "subject", "body", "delivery_status")
MESSAGE_FIELDS += ("status_reason", "provider_message_id")


ENTRY_FIELDS = ("kind", "note_id", "actor_id", "data", "unread_for_agent")


def _stored_as(message: Message) -> tuple[dict, dict]:
    stored = Message.objects.values(*MESSAGE_FIELDS).get(pk=message.pk)
    entry = TimelineEntry.objects.values(*ENTRY_FIELDS).get(message_id=message.pk)
    return stored, entry


@postgresql_only
def test_the_one_statement_customer_message_stores_what_the_step_by_step_one_stores(service, committed, published):
    from channels_app.webchat import services

    one, _first_agent = _answered(service, committed, email="one@example.com")
    other, _second_agent = _answered(ServiceFactory(wrapup_seconds=30), committed, email="other@example.com")
    for session in (one, other):
        Conversation.objects.filter(pk=session.conversation_id).update(customer_waiting_since=None)
        ChatSession.objects.filter(pk=session.pk).update(inactivity_warned_at=timezone.now())
        Contact.objects.filter(pk=session.contact_id).update(last_activity_at=timezone.now() - timedelta(hours=1))
    published.clear()

    with committed():
        together = services._customer_message_in_one_statement(session=one, text="Same words")
    with committed():
        stepwise = services._customer_message_step_by_step(session=other, text="Same words")

    assert _stored_as(together) == _stored_as(stepwise)
    for session, message in ((one, together), (other, stepwise)):
        stored = Message.objects.get(pk=message.pk)
        assert (stored.conversation_id, stored.interaction_id) == (session.conversation_id, session.interaction_id)
        entry = TimelineEntry.objects.get(message=stored)
        assert (entry.conversation_id, entry.interaction_id) == (session.conversation_id, session.interaction_id)
        assert _conversation(session).customer_waiting_since is not None
        session.refresh_from_db()
        assert session.inactivity_warned_at is None
        assert session.last_customer_activity_at >= stored.created_at - timedelta(seconds=1)
        assert Contact.objects.get(pk=session.contact_id).last_activity_at >= stored.created_at - timedelta(seconds=1)
    # The same event, each for its own conversation and agent.
    kinds = [(group.split(".")[0], event["type"]) for group, event in published]
    assert kinds == [("conversation", "conversation.timeline"), ("agent", "conversation.timeline")] * 2
    assert published[0][1]["entry_id"] == together.entry.pk
    assert published[2][1]["entry_id"] == stepwise.entry.pk


@postgresql_only
def test_the_one_statement_customer_message_is_one_query_and_returns_the_rows_it_stored(
    service, committed, django_assert_num_queries
):
    session, _profile = _answered(service, committed)

    with django_assert_num_queries(1):
        message = chat_customer_message(session=session, text="  Quick question  ")

    stored = Message.objects.get(pk=message.pk)
    for field in (*MESSAGE_FIELDS, "conversation_id", "interaction_id", "created_at"):
        assert getattr(message, field) == getattr(stored, field), field
    entry = TimelineEntry.objects.get(pk=message.entry.pk)
    for field in (*ENTRY_FIELDS, "conversation_id", "interaction_id", "message_id", "created_at"):
        assert getattr(message.entry, field) == getattr(entry, field), field


@postgresql_only
def test_the_one_statement_customer_message_leaves_recent_stamps_alone(service, committed):
    session, _profile = _answered(service, committed)
    recent = timezone.now() - timedelta(seconds=5)
    waiting = timezone.now() - timedelta(minutes=2)
    Conversation.objects.filter(pk=session.conversation_id).update(customer_waiting_since=waiting)
    ChatSession.objects.filter(pk=session.pk).update(last_customer_activity_at=recent, inactivity_warned_at=None)
    Contact.objects.filter(pk=session.contact_id).update(last_activity_at=recent)

    chat_customer_message(session=session, text="Still here")

    assert _conversation(session).customer_waiting_since == waiting
    session.refresh_from_db()
    assert session.last_customer_activity_at == recent
    assert Contact.objects.get(pk=session.contact_id).last_activity_at == recent


@postgresql_only
def test_the_one_statement_reply_stores_what_the_step_by_step_one_stores(
    service, committed, published, django_assert_num_queries
):
    from channels_app.webchat import services

    one, first_agent = _answered(service, committed, email="one@example.com")
    other, second_agent = _answered(ServiceFactory(wrapup_seconds=30), committed, email="other@example.com")
    Conversation.objects.update(customer_waiting_since=timezone.now())
    conversation = _conversation(one)
    published.clear()

    with committed(), django_assert_num_queries(1):
        together = services._agent_message_in_one_statement(
            conversation=conversation, agent_user=first_agent.user, text="On it", key="desktop:1:abc"
        )
    with committed():
        stepwise = services._chat_agent_message(
            conversation=_conversation(other), agent_user=second_agent.user, text="On it", key="desktop:1:abd"
        )

    replies = (together, stepwise)
    stored = [_stored_as(message) for message in replies]
    for fields in stored:
        fields[0].pop("provider_message_id")
        fields[0].pop("author_agent_id")
        fields[1].pop("actor_id")
    assert stored[0] == stored[1]
    for session, agent, message in ((one, first_agent, together), (other, second_agent, stepwise)):
        row = Message.objects.get(pk=message.pk)
        assert (row.author_agent_id, row.interaction_id) == (agent.user.pk, session.interaction_id)
        assert TimelineEntry.objects.get(message=row).actor_id == agent.user.pk
        assert _conversation(session).customer_waiting_since is None
    for field in (*MESSAGE_FIELDS, "conversation_id", "interaction_id", "created_at"):
        assert getattr(together, field) == getattr(Message.objects.get(pk=together.pk), field), field
    kinds = [(group.split(".")[0], event["type"]) for group, event in published]
    assert kinds == [("conversation", "conversation.timeline"), ("agent", "conversation.timeline")] * 2
    assert published[0][1]["entry_id"] == together.entry.pk


@postgresql_only
def test_a_reply_the_one_statement_cannot_store_writes_nothing_and_is_left_to_the_step_by_step_one(service, committed):
    from channels_app.webchat import services

    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    first = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Hi", client_key="k1")
    other = AgentFactory()
    key = services.desktop_message_key(agent_user=profile.user, client_key="k1")

    # A resend of a stored reply, a stranger's reply, a reply into an ended chat: the statement writes nothing.
    again = services._agent_message_in_one_statement
    assert again(conversation=conversation, agent_user=profile.user, text="Hi", key=key) is None
    assert again(conversation=conversation, agent_user=other.user, text="Mine now", key=None) is None
    with committed():
        chat_end(session=session, reason="agent_ended", actor=profile.user)
    assert again(conversation=conversation, agent_user=profile.user, text="Late", key=None) is None

    assert list(Message.objects.filter(direction=Direction.OUTBOUND).values_list("pk", flat=True)) == [first.pk]
    assert chat_agent_message(conversation=conversation, agent_user=profile.user, text="Hi", client_key="k1") == first
    with pytest.raises(ValidationError):
        chat_agent_message(conversation=conversation, agent_user=profile.user, text="Late")


@postgresql_only
def test_one_statement_messages_leave_none_of_the_database_drivers_objects_for_the_cycle_collector(service, committed):
    # A list parameter (the live states as an array) tied the cursor's adapters into a reference cycle:
    # about 60 of psycopg's objects per message that only a pass of the cycle collector freed.
    session, profile = _answered(service, committed)
    conversation = _conversation(session)

    def talk() -> None:
        for number in range(5):
            chat_customer_message(session=session, text=f"Question {number}")
            chat_agent_message(conversation=conversation, agent_user=profile.user, text=f"Answer {number}")

    talk()
    before = Message.objects.count()
    garbage = cyclic_garbage(talk)

    assert Message.objects.count() == before + 10
    assert not [kind for kind in garbage if kind.startswith("psycopg")], garbage.most_common(8)


@pytest.mark.django_db(transaction=True)
def test_a_customer_message_racing_the_end_of_the_chat_waits_for_it_and_is_refused(service, committed):
    """The end holds the chat's lock; the message waits for it, then sees the chat ended and stores nothing."""
    session, profile = _answered(service, committed)
    ending = threading.Event()
    release = threading.Event()
    outcome: list[object] = []

    def end_and_hold() -> None:
        try:
            from django.db import transaction

            with transaction.atomic():
                chat_end(session=session, reason="agent_ended", actor=profile.user)
                ending.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def write() -> None:
        try:
            chat_customer_message(session=session, text="Wait, one more thing")
            outcome.append("stored")
        except ValidationError as exc:
            outcome.append(exc)
        finally:
            connection.close()

    ender = threading.Thread(target=end_and_hold)
    ender.start()
    assert ending.wait(timeout=30)
    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=0.5)
    assert writer.is_alive(), "the message did not wait for the chat's lock"
    release.set()
    ender.join(timeout=30)
    writer.join(timeout=30)

    assert len(outcome) == 1 and isinstance(outcome[0], ValidationError)
    assert not Message.objects.filter(body="Wait, one more thing").exists()
    assert _interaction(session).state == Interaction.State.ENDED


def test_agent_message_is_sent_and_clears_the_waiting_timer(service, committed):
    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    assert conversation.customer_waiting_since is not None

    message = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Of course!")

    assert (message.direction, message.author_kind, message.author_agent, message.delivery_status) == (
        Direction.OUTBOUND,
        Message.Author.AGENT,
        profile.user,
        Message.Status.SENT,
    )
    assert _conversation(session).customer_waiting_since is None


def test_only_the_assigned_agent_may_answer(service, committed):
    session, _profile = _answered(service, committed)
    other = _ready(service)

    with pytest.raises(ValidationError):
        chat_agent_message(conversation=_conversation(session), agent_user=other.user, text="Hi, I am not yours")

    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    assert _conversation(session).customer_waiting_since is not None


def test_agent_message_needs_a_live_answered_chat(service, committed):
    session, profile = _answered(service, committed)
    with committed():
        chat_end(session=session, reason="agent_ended", actor=profile.user)

    with pytest.raises(ValidationError):
        chat_agent_message(conversation=_conversation(session), agent_user=profile.user, text="Still there?")


def test_a_reply_sent_again_with_its_key_is_stored_once(service, committed):
    session, profile = _answered(service, committed)
    conversation = _conversation(session)

    first = chat_agent_message(conversation=conversation, agent_user=profile.user, text="On my way", client_key="t1-1")
    again = chat_agent_message(conversation=conversation, agent_user=profile.user, text="On my way", client_key="t1-1")
    other = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Next", client_key="t1-2")

    assert again.pk == first.pk
    assert other.pk != first.pk
    assert Message.objects.filter(direction=Direction.OUTBOUND).count() == 2
    assert TimelineEntry.objects.filter(message__direction=Direction.OUTBOUND).count() == 2


def test_a_reply_key_stored_in_another_conversation_is_refused(service, committed):
    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    stored = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Hi", client_key="k")
    Message.objects.filter(pk=stored.pk).update(conversation=ConversationFactory())

    with pytest.raises(ValidationError):
        chat_agent_message(conversation=conversation, agent_user=profile.user, text="Hi", client_key="k")

    assert not Message.objects.filter(conversation=conversation, direction=Direction.OUTBOUND).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL: SQLite runs one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_of_one_reply_store_it_once(service, committed):
    """Resends that wait for the chat's lock together read before the first commits; the losers read again."""
    from channels_app.webchat import services

    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    threads = 6
    barrier = threading.Barrier(threads)
    results: list[int] = []
    errors: list[BaseException] = []
    attempts = mock.Mock(wraps=services._chat_agent_message)

    def resend() -> None:
        try:
            barrier.wait(timeout=10)
            message = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Hi", client_key="k")
            results.append(message.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    with mock.patch.object(services, "_chat_agent_message", attempts):
        workers = [threading.Thread(target=resend) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)

    assert errors == []
    stored = Message.objects.get(direction=Direction.OUTBOUND)
    assert results == [stored.pk] * threads
    assert TimelineEntry.objects.filter(message=stored).count() == 1
    if connection.vendor == "postgresql":
        # The first stored it in one statement; the others, waiting for the chat's lock, stored nothing
        # (the unique key, or the stored reply they saw) and found it step by step.
        assert attempts.call_count >= threads - 1
    else:
        # At least one resend read before the first commit, was refused by the unique key, and read again.
        assert attempts.call_count > threads


def test_agent_message_length_is_limited(service, committed, settings):
    session, profile = _answered(service, committed)
    settings.CHAT_MAX_MESSAGE_CHARS = 10

    with pytest.raises(ValidationError):
        chat_agent_message(conversation=_conversation(session), agent_user=profile.user, text="x" * 11)


# --- receipts ------------------------------------------------------------------------------------------------------


def _entry_id(message: Message) -> int:
    return TimelineEntry.objects.get(message=message).pk


def test_agent_reading_marks_the_customer_messages_read(service, committed, published):
    session, _profile = _answered(service, committed)
    later = chat_customer_message(session=session, text="Second question")
    conversation = _conversation(session)
    first = Message.objects.filter(direction=Direction.INBOUND).order_by("id").first()
    published.clear()

    with committed():
        assert chat_mark_read(conversation=conversation, side="agent", upto_entry_id=_entry_id(first)) is True

    first.refresh_from_db()
    later.refresh_from_db()
    assert (first.delivery_status, later.delivery_status) == (Message.Status.READ, Message.Status.RECEIVED)
    assert _conversation(session).agent_read_upto == _entry_id(first)
    assert published == _receipts(conversation)


def test_read_marks_only_move_forward(service, committed, published):
    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    reply = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Yes")
    chat_mark_read(conversation=conversation, side="customer", upto_entry_id=_entry_id(reply))
    published.clear()

    with committed():
        assert chat_mark_read(conversation=conversation, side="customer", upto_entry_id=_entry_id(reply) - 1) is False
        assert chat_mark_read(conversation=conversation, side="customer", upto_entry_id=_entry_id(reply)) is False
        assert chat_mark_delivered(conversation=conversation, upto_entry_id=_entry_id(reply)) is False

    reply.refresh_from_db()
    assert reply.delivery_status == Message.Status.READ
    assert _conversation(session).customer_read_upto == _entry_id(reply)
    assert published == []


def test_read_marks_are_capped_at_the_last_timeline_entry(service, committed):
    session, _profile = _answered(service, committed)
    conversation = _conversation(session)
    last = TimelineEntry.objects.filter(conversation=conversation).order_by("-id").first()

    chat_mark_read(conversation=conversation, side="agent", upto_entry_id=last.pk + 1000)

    assert _conversation(session).agent_read_upto == last.pk


def test_customer_reading_marks_agent_messages_read_but_not_failed_ones(service, committed):
    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    sent = chat_agent_message(conversation=conversation, agent_user=profile.user, text="One")
    failed = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Two")
    Message.objects.filter(pk=failed.pk).update(delivery_status=Message.Status.FAILED)
    inbound = Message.objects.get(direction=Direction.INBOUND)

    chat_mark_read(conversation=conversation, side="customer", upto_entry_id=_entry_id(failed))

    statuses = dict(Message.objects.values_list("pk", "delivery_status"))
    assert statuses == {
        sent.pk: Message.Status.READ,
        failed.pk: Message.Status.FAILED,
        inbound.pk: Message.Status.RECEIVED,
    }


def test_delivered_moves_sent_messages_on_and_publishes(service, committed, published):
    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    first = chat_agent_message(conversation=conversation, agent_user=profile.user, text="One")
    second = chat_agent_message(conversation=conversation, agent_user=profile.user, text="Two")
    published.clear()

    with committed():
        assert chat_mark_delivered(conversation=conversation, upto_entry_id=_entry_id(first)) is True

    statuses = dict(Message.objects.filter(direction=Direction.OUTBOUND).values_list("pk", "delivery_status"))
    assert statuses == {first.pk: Message.Status.DELIVERED, second.pk: Message.Status.SENT}
    assert published == _receipts(_conversation(session))


def test_receipts_rolled_back_publish_nothing(service, committed, published):
    from django.db import transaction

    session, _profile = _answered(service, committed)
    published.clear()

    with committed() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        chat_mark_read(conversation=_conversation(session), side="agent", upto_entry_id=10**6)
        raise RuntimeError("rolled back")

    assert callbacks == []
    assert published == []
    assert _conversation(session).agent_read_upto == 0


# --- attachments ----------------------------------------------------------------------------------------------------


def _upload(name: str, content: bytes, content_type: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("photo.png", PNG, "image/png"),
        ("photo.jpg", b"\xff\xd8\xff\xe0" + b"0" * 20, "image/jpeg"),
        ("anim.gif", b"GIF89a" + b"0" * 20, "image/gif"),
        ("pic.webp", b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        ("booking.pdf", PDF, "application/pdf"),
        ("notes.txt", "Grüße\n".encode(), "text/plain; charset=utf-8"),
    ],
)
def test_allowed_attachment_types_pass_by_content(name, content, content_type):
    upload = _upload(name, content, content_type)

    assert attachment_check(upload) == content_type.split(";")[0]
    assert upload.read() == content


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("page.html", b"<script>alert(1)</script>", "text/html"),
        ("tool.exe", b"MZ\x90\x00", "application/octet-stream"),
        ("fake.png", PDF, "image/png"),
        ("fake.pdf", PNG, "application/pdf"),
        ("fake.webp", b"RIFF\x00\x00\x00\x00AVI LIST", "image/webp"),
        ("binary.txt", b"ab\x00cd", "text/plain"),
        ("nothing", b"\x89PNG\r\n\x1a\n", ""),
    ],
)
def test_attachments_of_other_types_or_mismatched_content_are_refused(name, content, content_type):
    with pytest.raises(ValidationError):
        attachment_check(_upload(name, content, content_type))


def test_oversized_attachments_are_refused(settings):
    settings.CHAT_MAX_ATTACHMENT_BYTES = 40

    attachment_check(_upload("small.png", PNG[:40], "image/png"))
    with pytest.raises(ValidationError):
        attachment_check(_upload("big.png", PNG + b"\x00", "image/png"))


def test_an_attachment_is_stored_as_its_own_message(service, committed, settings):
    session, profile = _answered(service, committed)

    message = chat_attachment_send(
        interaction=_interaction(session),
        upload=_upload("../../etc/booking.pdf", PDF, "application/pdf"),
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        agent_user=profile.user,
    )

    attachment = Attachment.objects.get(message=message)
    # The client's path is dropped: only the file's own name is kept.
    assert (message.body, message.delivery_status, message.author_agent) == (
        "booking.pdf",
        Message.Status.SENT,
        profile.user,
    )
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "booking.pdf",
        "application/pdf",
        len(PDF),
    )
    stored = Path(attachment.file.path)
    assert stored.read_bytes() == PDF
    assert stored.is_relative_to(Path(settings.MEDIA_ROOT) / "attachments" / str(session.conversation.uuid))
    assert TimelineEntry.objects.filter(message=message).exists()


def test_a_customer_attachment_is_received(service, committed):
    session, _profile = _answered(service, committed)

    message = chat_attachment_send(
        interaction=_interaction(session),
        upload=_upload("photo.png", PNG, "image/png"),
        direction=Direction.INBOUND,
        author_kind=Message.Author.CUSTOMER,
    )

    assert message.delivery_status == Message.Status.RECEIVED
    assert message.attachments.get().content_type == "image/png"


def test_an_attachment_into_an_ended_chat_is_refused_even_from_a_stale_copy(service, committed):
    session, _profile = _answered(service, committed)
    stale = _interaction(session)
    with committed():
        chat_end(session=session, reason="customer_left")

    with pytest.raises(ValidationError):
        chat_attachment_send(
            interaction=stale,
            upload=_upload("photo.png", PNG, "image/png"),
            direction=Direction.INBOUND,
            author_kind=Message.Author.CUSTOMER,
        )

    assert not Attachment.objects.exists()


def test_a_refused_attachment_writes_nothing(service, committed):
    session, _profile = _answered(service, committed)
    messages = Message.objects.count()

    with pytest.raises(ValidationError):
        chat_attachment_send(
            interaction=_interaction(session),
            upload=_upload("fake.png", b"hello", "image/png"),
            direction=Direction.INBOUND,
            author_kind=Message.Author.CUSTOMER,
        )

    assert Message.objects.count() == messages
    assert not Attachment.objects.exists()


# --- ending ---------------------------------------------------------------------------------------------------------


def test_customer_leaving_a_queued_chat_abandons_it_and_closes_the_conversation(service, committed, published):
    session = _start(service, committed)
    published.clear()

    with committed():
        ended = chat_end(session=session, reason="customer_left")

    conversation = _conversation(session)
    assert (ended.state, ended.end_reason) == (Interaction.State.ABANDONED, "customer_left")
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.notes == "Customer left before an agent answered."
    assert (service_group(service.pk), {"type": "service.queue", "service_id": service.pk}) in published


def test_customer_leaving_an_offered_chat_cancels_the_offer(service, committed):
    profile = _ready(service)
    session = _start(service, committed)

    with committed():
        chat_end(session=session, reason="customer_left")

    offer = Offer.objects.get(interaction_id=session.interaction_id)
    assert offer.state == Offer.State.CANCELLED
    assert _interaction(session).state == Interaction.State.ABANDONED
    assert _conversation(session).status == Conversation.Status.CLOSED
    profile.refresh_from_db()
    assert profile.state == AgentState.READY


def test_an_unanswered_chat_beside_other_live_work_leaves_the_conversation_open(service, committed):
    session = _start(service, committed)
    email = inbound_contact_receive(point_kind=ContactPoint.Kind.EMAIL, address="ada@example.com", medium=Medium.EMAIL)
    assert email.conversation_id == session.conversation_id

    with committed():
        chat_end(session=session, reason="customer_left")

    assert _conversation(session).is_open


def test_agent_ending_the_chat_starts_wrapup_and_keeps_the_conversation_open(service, committed):
    session, profile = _answered(service, committed)

    with committed():
        ended = chat_end(session=session, reason="agent_ended", actor=profile.user)

    assert ended.state == Interaction.State.ENDED
    assert _conversation(session).is_open
    profile.refresh_from_db()
    assert profile.state == AgentState.AFTER_CALL_WORK
    assert profile.acw_until is not None


def test_agent_ending_the_chat_without_wrapup_is_ready_again(committed):
    service = ServiceFactory(wrapup_seconds=0)
    session, profile = _answered(service, committed)

    with committed():
        chat_end(session=session, reason="agent_ended", actor=profile.user)

    profile.refresh_from_db()
    assert profile.state == AgentState.READY


def test_ending_an_ended_chat_changes_nothing(service, committed):
    session, profile = _answered(service, committed)
    with committed():
        first = chat_end(session=session, reason="agent_ended", actor=profile.user)

    with committed():
        again = chat_end(session=session, reason="customer_left")

    assert (again.state, again.end_reason, again.ended_at) == (first.state, "agent_ended", first.ended_at)


# --- inactivity -------------------------------------------------------------------------------------------------------


def _silent_for(session: ChatSession, seconds: float) -> None:
    customer_silent_since(session, timezone.now() - timedelta(seconds=seconds))


def test_a_customer_message_writes_the_activity_stamp_only_when_it_is_stale_or_a_warning_stands(committed):
    service = ServiceFactory(chat_inactivity_seconds=300)
    session, _profile = _answered(service, committed)
    stale = timezone.now() - ACTIVITY_STAMP_EVERY - timedelta(seconds=1)
    ChatSession.objects.filter(pk=session.pk).update(last_customer_activity_at=stale)

    chat_customer_message(session=session, text="First")
    session.refresh_from_db()
    written = session.last_customer_activity_at
    assert written > stale

    chat_customer_message(session=session, text="Second, a moment later")
    session.refresh_from_db()
    assert session.last_customer_activity_at == written

    warned_at = timezone.now()
    ChatSession.objects.filter(pk=session.pk).update(inactivity_warned_at=warned_at)
    chat_customer_message(session=session, text="Third, after a warning")
    session.refresh_from_db()
    assert session.last_customer_activity_at > written
    assert session.inactivity_warned_at is None


def test_the_sweep_reads_the_latest_message_when_the_stamp_lags_it(committed, published):
    service = ServiceFactory(chat_inactivity_seconds=300)
    session, _profile = _answered(service, committed)
    conversation = _conversation(session)
    chat_customer_message(session=session, text="Hello")
    # The stamp says 290 s of silence, but the customer wrote 20 s after it (not stamped: too soon after).
    _silent_for(session, 290)
    latest = Message.objects.filter(interaction_id=session.interaction_id, author_kind=Message.Author.CUSTOMER)
    latest.update(created_at=timezone.now() - timedelta(seconds=270))
    published.clear()

    with committed():
        assert chat_inactivity_sweep() == (1, 0)

    session.refresh_from_db()
    last_written = latest.first().created_at
    assert session.last_customer_activity_at == last_written
    assert published == [
        (
            conversation_group(conversation.uuid),
            {
                "type": "chat.inactivity",
                "conversation": str(conversation.uuid),
                "ends_at": (last_written + timedelta(seconds=300)).isoformat(),
            },
        )
    ]
    assert _interaction(session).state == Interaction.State.ACTIVE


def test_the_sweep_does_not_end_a_chat_whose_customer_wrote_after_the_stamp(committed):
    service = ServiceFactory(chat_inactivity_seconds=300)
    session, _profile = _answered(service, committed)
    chat_customer_message(session=session, text="Still here")
    ChatSession.objects.filter(pk=session.pk).update(last_customer_activity_at=timezone.now() - timedelta(seconds=400))

    assert chat_inactivity_sweep() == (0, 0)

    assert _interaction(session).state == Interaction.State.ACTIVE


def test_inactivity_sweep_warns_once_then_ends_the_chat(committed, published):
    service = ServiceFactory(chat_inactivity_seconds=300, wrapup_seconds=30)
    session, profile = _answered(service, committed)
    conversation = _conversation(session)
    _silent_for(session, 250)
    published.clear()

    with committed():
        assert chat_inactivity_sweep() == (1, 0)

    session.refresh_from_db()
    assert session.inactivity_warned_at is not None
    ends_at = (session.last_customer_activity_at + timedelta(seconds=300)).isoformat()
    assert published == [
        (
            conversation_group(conversation.uuid),
            {"type": "chat.inactivity", "conversation": str(conversation.uuid), "ends_at": ends_at},
        )
    ]

    published.clear()
    with committed():
        assert chat_inactivity_sweep() == (0, 0)
    assert published == []

    _silent_for(session, 301)
    with committed():
        assert chat_inactivity_sweep() == (0, 1)

    interaction = _interaction(session)
    assert (interaction.state, interaction.end_reason) == (Interaction.State.ENDED, "customer_inactive")
    assert _conversation(session).is_open
    profile.refresh_from_db()
    assert profile.state == AgentState.AFTER_CALL_WORK
    assert chat_inactivity_sweep() == (0, 0)


def test_a_customer_writing_after_the_warning_is_warned_again_later(committed):
    service = ServiceFactory(chat_inactivity_seconds=300)
    session, _profile = _answered(service, committed)
    _silent_for(session, 250)
    chat_inactivity_sweep()

    chat_customer_message(session=session, text="Still here")
    assert chat_inactivity_sweep() == (0, 0)
    _silent_for(session, 250)

    assert chat_inactivity_sweep() == (1, 0)


def test_inactivity_sweep_leaves_active_customers_and_queued_chats_alone(committed):
    service = ServiceFactory(chat_inactivity_seconds=300)
    active, _profile = _answered(service, committed)
    AgentProfile.objects.update(capacity=25)
    queued = _start(service, committed, email="bob@example.com")
    assert _interaction(queued).state == Interaction.State.QUEUED
    _silent_for(queued, 3600)
    _silent_for(active, 200)

    assert chat_inactivity_sweep() == (0, 0)

    assert _interaction(active).state == Interaction.State.ACTIVE
    assert _interaction(queued).state == Interaction.State.QUEUED


def test_inactivity_sweep_task_runs_the_sweep(committed):
    from channels_app.webchat.tasks import chat_inactivity_sweep as sweep_task

    service = ServiceFactory(chat_inactivity_seconds=300)
    session, _profile = _answered(service, committed)
    _silent_for(session, 400)

    sweep_task()

    assert _interaction(session).state == Interaction.State.ENDED


def test_an_ended_interaction_is_not_swept(committed):
    service = ServiceFactory(chat_inactivity_seconds=300)
    session, _profile = _answered(service, committed)
    interaction_end(interaction=_interaction(session), reason="agent_ended")
    _silent_for(session, 400)

    assert chat_inactivity_sweep() == (0, 0)
