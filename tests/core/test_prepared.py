"""Reads compiled once (core.prepared): the same rows as the queryset they stand for, from any thread."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from django.db import DataError, connection, connections
from django.db.models import ExpressionWrapper, F, IntegerField, Value

from agents.models import AgentState
from agents.services import agent_state_set
from channels_app.webchat.services import chat_customer_message, chat_start
from conversations import selectors
from conversations.models import Conversation, Direction, Interaction, Medium, Offer
from conversations.routing import offer_accept
from conversations.services import interaction_end, interaction_start
from core.prepared import PreparedQuery, run_together
from tests.factories import AgentFactory, ServiceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _agent_with_chats(count: int = 2):
    service = ServiceFactory()
    agent = AgentFactory()
    agent.services.add(service)
    agent_state_set(agent=agent, state=AgentState.READY)
    sessions = []
    for n in range(count):
        session = chat_start(service=service, data={"name": f"Customer {n}", "question": f"Question {n}"})
        offer = Offer.objects.get(interaction=session.interaction, state=Offer.State.PENDING)
        offer_accept(offer_id=offer.pk, agent_user=agent.user)
        sessions.append(session)
    return agent, sessions


ROW_FIELDS = ("pk", "uuid", "last_message_body", "last_message_author", "unread_count", "customer_waiting_since")


def test_the_prepared_list_row_is_the_row_of_the_full_list():
    agent, sessions = _agent_with_chats(3)
    chat_customer_message(session=sessions[1], text="Second question, with <b>markup</b>")
    # The second has two live media (a call beside the chat, with details); the third is in wrap-up.
    second = Conversation.objects.get(pk=sessions[1].conversation_id)
    call = interaction_start(
        conversation=second,
        medium=Medium.VOICE,
        direction=Direction.INBOUND,
        agent=agent.user,
        state=Interaction.State.ACTIVE,
    )
    Interaction.objects.filter(pk=call.pk).update(details={"held_at": None, "peer": "customer"})
    interaction_end(interaction=sessions[2].interaction, reason="customer_left")

    full = {row.uuid: row for row in selectors.acl_for_agent(agent=agent.user)}
    for session in sessions:
        conversation = Conversation.objects.get(pk=session.conversation_id)
        row = selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=conversation.uuid)
        expected = full[conversation.uuid]
        assert [getattr(row, name) for name in ROW_FIELDS] == [getattr(expected, name) for name in ROW_FIELDS]
        assert row.contact.display_name == expected.contact.display_name
        assert row.service.name == expected.service.name
        fields = [field.attname for field in Interaction._meta.concrete_fields]
        assert [[getattr(i, name) for name in fields] for i in row.live_interactions] == [
            [getattr(i, name) for name in fields] for i in expected.live_interactions
        ]
        assert all(i._state.db == "default" and not i._state.adding for i in row.live_interactions)
    assert [len(full[Conversation.objects.get(pk=s.conversation_id).uuid].live_interactions) for s in sessions] == [
        1,
        2,
        0,
    ]


def test_the_list_row_and_its_live_media_are_one_read(django_assert_num_queries):
    agent, sessions = _agent_with_chats(1)
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)
    interaction_start(conversation=conversation, medium=Medium.SMS, direction=Direction.OUTBOUND, agent=agent.user)

    with django_assert_num_queries(1):
        row = selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=conversation.uuid)
    assert [i.medium for i in row.live_interactions] == [Medium.CHAT, Medium.SMS]


def test_another_agent_and_an_unknown_conversation_get_no_row():
    agent, sessions = _agent_with_chats(1)
    other = AgentFactory()
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)

    assert selectors.acl_row_for_agent(agent=other.user, conversation_uuid=conversation.uuid) is None
    assert selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=uuid.uuid4()) is None


def test_the_prepared_entry_is_the_entry_the_timeline_shows():
    _agent, sessions = _agent_with_chats(1)
    message = chat_customer_message(session=sessions[0], text="Hello")
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)

    entry = selectors.timeline_entry_for(conversation=conversation, entry_id=message.entry.pk)

    assert entry.pk == message.entry.pk
    assert entry.message.body == "Hello"
    assert list(entry.message.attachments.all()) == []
    other = Conversation.objects.exclude(pk=conversation.pk).first() or Conversation(pk=-1)
    assert selectors.timeline_entry_for(conversation=other, entry_id=message.entry.pk) is None


def test_the_list_row_and_an_entry_read_together_are_what_each_read_gives():
    agent, sessions = _agent_with_chats(2)
    message = chat_customer_message(session=sessions[0], text="Hello <b>there</b>")
    elsewhere = chat_customer_message(session=sessions[1], text="In the other chat")
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)

    row, entry = selectors.acl_row_and_entry_for_agent(
        agent=agent.user, conversation_uuid=conversation.uuid, entry_id=message.entry.pk
    )

    alone = selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=conversation.uuid)
    assert [getattr(row, name) for name in ROW_FIELDS] == [getattr(alone, name) for name in ROW_FIELDS]
    assert row.last_message_body == "Hello <b>there</b>"
    assert (
        [i.pk for i in row.live_interactions] == [i.pk for i in alone.live_interactions] == [sessions[0].interaction_id]
    )
    expected = selectors.timeline_entry_for(conversation=conversation, entry_id=message.entry.pk)
    assert (entry.pk, entry.kind, entry.message.body, entry.message_has_files) == (
        expected.pk,
        expected.kind,
        "Hello <b>there</b>",
        False,
    )
    assert list(entry.message.attachments.all()) == []
    # An entry of another conversation is not found under this one, even for the same agent.
    row, entry = selectors.acl_row_and_entry_for_agent(
        agent=agent.user, conversation_uuid=conversation.uuid, entry_id=elsewhere.entry.pk
    )
    assert row.pk == conversation.pk
    assert entry is None


def test_another_agent_gets_neither_the_row_nor_the_entry_read_beside_it():
    _agent, sessions = _agent_with_chats(1)
    message = chat_customer_message(session=sessions[0], text="Private")
    other = AgentFactory()
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)

    assert selectors.acl_row_and_entry_for_agent(
        agent=other.user, conversation_uuid=conversation.uuid, entry_id=message.entry.pk
    ) == (None, None)


def test_reads_run_together_go_to_postgresql_in_one_pipeline(django_assert_num_queries, monkeypatch):
    agent, sessions = _agent_with_chats(1)
    message = chat_customer_message(session=sessions[0], text="Hello")
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)
    on_postgresql = connection.vendor == "postgresql"
    pipelines = []
    if on_postgresql:
        connection.ensure_connection()
        own = type(connection.connection).pipeline

        def counted(self, *args, **kwargs):
            pipelines.append(self)
            return own(self, *args, **kwargs)

        monkeypatch.setattr(type(connection.connection), "pipeline", counted)

    with django_assert_num_queries(2):
        row, entry = selectors.acl_row_and_entry_for_agent(
            agent=agent.user, conversation_uuid=conversation.uuid, entry_id=message.entry.pk
        )

    assert (row.pk, entry.pk) == (conversation.pk, message.entry.pk)
    # PostgreSQL gets both statements before it answers the first; SQLite runs them one after the other.
    assert len(pipelines) == (1 if on_postgresql else 0)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite runs the reads one after the other")
def test_a_failing_read_run_together_raises_djangos_error_and_the_connection_goes_on():
    _agent, sessions = _agent_with_chats(1)
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)
    failing = PreparedQuery(
        lambda pk: Conversation.objects.filter(pk=pk).annotate(
            ratio=ExpressionWrapper(Value(1) / (F("pk") - F("pk")), output_field=IntegerField())
        ),
        pk=(-730_901, int),
    )
    fine = PreparedQuery(lambda pk: Conversation.objects.filter(pk=pk), pk=(-730_903, int))

    with pytest.raises(DataError, match="division by zero"):
        run_together((fine, {"pk": conversation.pk}), (failing, {"pk": conversation.pk}))

    # Out of the pipeline, and the same connection answers the next reads, alone or together.
    assert connection.connection.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
    assert [c.pk for c in fine(pk=conversation.pk)] == [conversation.pk]
    first, second = run_together((fine, {"pk": conversation.pk}), (fine, {"pk": -1}))
    assert ([c.pk for c in first], second) == ([conversation.pk], [])


def test_a_prepared_read_runs_on_the_calling_threads_connection():
    agent, sessions = _agent_with_chats(1)
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)
    # Compiled here, on this thread's connection ...
    assert selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=conversation.uuid) is not None
    found = {}

    def elsewhere():
        try:
            found["row"] = selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=conversation.uuid)
        finally:
            connections.close_all()

    # ... and run on another thread's, as the consumers' database thread does.
    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert found["row"].pk == conversation.pk


def test_a_query_whose_values_cannot_be_told_apart_is_refused():
    same = PreparedQuery(
        lambda a, b: Conversation.objects.filter(assigned_agent_id=a, contact_id=b),
        a=(-5, int),
        b=(-5, int),
    )
    with pytest.raises(ValueError, match="equal"):
        same(a=1, b=2)

    unused = PreparedQuery(lambda a: Conversation.objects.filter(assigned_agent_id=7), a=(-5, int))
    with pytest.raises(ValueError, match="not found"):
        unused(a=1)


def test_the_locked_interaction_read_is_the_orm_read_and_needs_a_transaction():
    from django.db import transaction
    from django.db.transaction import TransactionManagementError

    from conversations.models import Interaction
    from conversations.services import interaction_locked

    _agent, sessions = _agent_with_chats(1)
    expected = Interaction.objects.select_related("conversation", "conversation__contact").get(
        pk=sessions[0].interaction_id
    )
    with transaction.atomic():
        interaction = interaction_locked(interaction_id=expected.pk)
        with pytest.raises(Interaction.DoesNotExist):
            interaction_locked(interaction_id=expected.pk + 1000)
    assert (interaction.pk, interaction.state, interaction.medium) == (expected.pk, expected.state, expected.medium)
    assert interaction.conversation.uuid == expected.conversation.uuid
    assert interaction.conversation.contact.display_name == expected.conversation.contact.display_name
    # A locking read outside a transaction would lock nothing: refused on every call, as Django refuses it.
    with pytest.raises(TransactionManagementError):
        interaction_locked(interaction_id=expected.pk)


def test_row_converters_are_worked_out_once_per_connection(monkeypatch):
    from django.db.models.sql.compiler import SQLCompiler

    agent, sessions = _agent_with_chats(1)
    conversation = Conversation.objects.get(pk=sessions[0].conversation_id)
    chat_customer_message(session=sessions[0], text="Hello")
    first = selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=conversation.uuid)
    calls = []
    original = SQLCompiler.get_converters
    monkeypatch.setattr(SQLCompiler, "get_converters", lambda self, exprs: calls.append(1) or original(self, exprs))

    rows = [selectors.acl_row_for_agent(agent=agent.user, conversation_uuid=conversation.uuid) for _ in range(3)]

    # The converted values are those of the first read (datetimes, UUIDs), with no converter worked out again.
    assert calls == []
    assert {(row.uuid, row.customer_waiting_since, row.last_message_body) for row in rows} == {
        (first.uuid, first.customer_waiting_since, first.last_message_body)
    }
    assert isinstance(rows[0].uuid, uuid.UUID)


def test_the_customers_entry_brings_its_files_and_reads_them_only_when_there_are_any(settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app.webchat import selectors as chat_selectors
    from channels_app.webchat.services import chat_attachment_send
    from conversations.models import Direction, Interaction, Message

    settings.MEDIA_ROOT = tmp_path
    agent, sessions = _agent_with_chats(1)
    session = sessions[0]
    text = chat_customer_message(session=session, text="Just words")
    upload = SimpleUploadedFile("plan.pdf", b"%PDF-1.7\n" + b"x" * 32, content_type="application/pdf")
    file = chat_attachment_send(
        interaction=Interaction.objects.get(pk=session.interaction_id),
        upload=upload,
        direction=Direction.OUTBOUND,
        author_kind=Message.Author.AGENT,
        agent_user=agent.user,
    )

    with CaptureQueriesContext(connection) as plain:
        plain_entry = chat_selectors.chat_entry_for_customer(session=session, entry_id=text.entry.pk)
        assert list(plain_entry.message.attachments.all()) == []
    with_file = chat_selectors.chat_entry_for_customer(session=session, entry_id=file.entry.pk)

    assert len(plain.captured_queries) == 1, "no read of files for a message without any"
    assert [a.filename for a in with_file.message.attachments.all()] == ["plan.pdf"]
    assert chat_selectors.customer_entry_json(entry=with_file, session=session)["attachments"][0]["name"] == "plan.pdf"
    # Another session's entry is not this customer's to see.
    other = _agent_with_chats(1)[1][0]
    assert chat_selectors.chat_entry_for_customer(session=other, entry_id=text.entry.pk) is None


def test_a_prepared_update_writes_what_the_orm_update_would():
    from datetime import UTC, datetime

    # The update every customer message makes: the waiting timer starts unless it runs already.
    from channels_app.webchat.services import _CUSTOMER_WAITING_FROM as waiting_from

    _agent, sessions = _agent_with_chats(2)
    first, second = (Conversation.objects.get(pk=session.conversation_id) for session in sessions)
    Conversation.objects.update(customer_waiting_since=None)
    moment = datetime(2026, 12, 3, 11, 30, 15, 123_456, tzinfo=UTC)

    assert waiting_from(conversation_id=first.pk, now=moment) == 1
    # The filter holds: a timer already running is not restarted.
    assert waiting_from(conversation_id=first.pk, now=datetime(2027, 1, 1, tzinfo=UTC)) == 0
    assert waiting_from(conversation_id=first.pk + 1000, now=moment) == 0
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.customer_waiting_since == moment
    assert second.customer_waiting_since is None, "only the named row changes"


def test_an_update_whose_value_is_not_a_parameter_is_refused():
    from core.prepared import PreparedUpdate

    constant = PreparedUpdate(
        lambda conversation_id: (Conversation.objects.filter(pk=7), {"customer_waiting_since": None}),
        conversation_id=(-13, int),
    )
    with pytest.raises(ValueError, match="not found"):
        constant(conversation_id=1)


def test_a_customer_message_stamps_the_session_and_starts_the_waiting_timer_once():
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.webchat.models import ChatSession
    from channels_app.webchat.services import chat_agent_message

    agent, sessions = _agent_with_chats(1)
    session = sessions[0]
    long_ago = timezone.now() - timedelta(minutes=30)
    ChatSession.objects.filter(pk=session.pk).update(last_customer_activity_at=long_ago, inactivity_warned_at=long_ago)
    conversation = Conversation.objects.get(pk=session.conversation_id)
    chat_agent_message(conversation=conversation, agent_user=agent.user, text="How can I help?")
    assert Conversation.objects.get(pk=conversation.pk).customer_waiting_since is None

    before = timezone.now()
    chat_customer_message(session=session, text="My order is late")
    stored = ChatSession.objects.get(pk=session.pk)
    assert stored.last_customer_activity_at >= before
    assert stored.inactivity_warned_at is None
    started = Conversation.objects.get(pk=conversation.pk).customer_waiting_since
    assert started >= before

    chat_customer_message(session=session, text="Order 12345")
    assert Conversation.objects.get(pk=conversation.pk).customer_waiting_since == started, "the timer runs on"
    chat_agent_message(conversation=conversation, agent_user=agent.user, text="Looking into it")
    assert Conversation.objects.get(pk=conversation.pk).customer_waiting_since is None
