"""The demo seed: what it creates, that its history is consistent, and that it is idempotent."""

from __future__ import annotations

import io
import re

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from agents.models import AgentProfile, NotReadyReason
from contacts.models import Contact, ContactPoint
from conversations.models import (
    Conversation,
    Direction,
    Disposition,
    Interaction,
    Medium,
    Message,
    Note,
    Service,
    TimelineEntry,
)
from core.management.commands.seed_demo import DEMO_PASSWORD
from tests.factories import ContactPointFactory, ConversationFactory, UserFactory

AGENTS = ("agent1", "agent2", "agent3")


def seed(**options) -> str:
    out = io.StringIO()
    with override_settings(DEBUG=True):
        call_command("seed_demo", stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def table_counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def dump_all() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_creates_a_supervisor_and_three_agents_who_can_log_in_with_the_demo_password():
    seed()

    user_model = get_user_model()
    supervisor = user_model.objects.get(username="supervisor")
    assert supervisor.is_staff
    assert supervisor.is_superuser
    assert supervisor.check_password(DEMO_PASSWORD)
    for username in AGENTS:
        user = user_model.objects.get(username=username)
        assert not user.is_staff
        assert not user.is_superuser
        assert user.first_name
        assert user.last_name
        assert user.check_password(DEMO_PASSWORD)
        assert AgentProfile.objects.get(user=user).services.exists()


@pytest.mark.django_db
def test_every_demo_service_has_an_agent():
    seed()

    for service in Service.objects.filter(slug__in=["bookings", "support"]):
        assert service.agents.exists()


@pytest.mark.django_db
def test_creates_services_with_default_shares_and_linked_dispositions():
    seed()

    bookings = Service.objects.get(slug="bookings")
    support = Service.objects.get(slug="support")
    assert bookings.name == "Bookings"
    assert support.name == "Support"
    for service in (bookings, support):
        assert (service.share_voice, service.share_chat, service.share_email, service.share_sms) == (100, 25, 25, 25)
        assert set(service.dispositions.values_list("code", flat=True)) >= {"problem-solved", "follow-up"}
    assert bookings.dispositions.filter(code="booking-changed").exists()


@pytest.mark.django_db
def test_creates_the_four_dispositions():
    seed()

    assert dict(Disposition.objects.values_list("code", "name")) == {
        "problem-solved": "Problem solved",
        "follow-up": "Follow-up needed",
        "booking-changed": "Booking changed",
        "no-action": "No action needed",
    }


@pytest.mark.django_db
def test_creates_selectable_not_ready_reasons_and_keeps_the_system_reason():
    seed()

    chosen = dict(NotReadyReason.objects.filter(is_system=False).values_list("code", "name"))
    assert chosen == {"break": "Break", "lunch": "Lunch", "training": "Training", "meeting": "Meeting"}
    assert NotReadyReason.objects.get(code=NotReadyReason.MISSED).is_system


@pytest.mark.django_db
def test_contacts_have_e164_phones_and_emails():
    seed()

    contacts = Contact.objects.all()
    assert contacts.count() >= 6
    assert contacts.exclude(company="").exists()
    phones = list(ContactPoint.objects.filter(kind=ContactPoint.Kind.PHONE).values_list("value", flat=True))
    assert all(re.fullmatch(r"\+[1-9]\d{6,14}", phone) for phone in phones)
    assert any(phone.startswith("+49") for phone in phones)
    assert any(not phone.startswith("+49") for phone in phones)
    for contact in contacts:
        assert contact.points.filter(kind=ContactPoint.Kind.EMAIL).exists()


@pytest.mark.django_db
def test_every_contact_has_only_closed_conversations_with_a_disposition_and_notes():
    seed()

    for contact in Contact.objects.all():
        assert contact.conversations.exists()
    assert not Conversation.objects.open().exists()
    assert not Conversation.objects.filter(disposition__isnull=True).exists()
    assert not Conversation.objects.filter(notes="").exists()


@pytest.mark.django_db
def test_the_history_covers_chat_voice_sms_and_email():
    seed()

    media = set(
        Interaction.objects.filter(conversation__status=Conversation.Status.CLOSED).values_list("medium", flat=True)
    )
    assert media >= {Medium.CHAT, Medium.VOICE, Medium.SMS, Medium.EMAIL}


@pytest.mark.django_db
def test_some_conversations_mix_media_like_the_worked_examples():
    seed()

    media_per_conversation = [
        set(conversation.interactions.values_list("medium", flat=True)) for conversation in Conversation.objects.all()
    ]
    assert {Medium.CHAT, Medium.VOICE, Medium.SMS} in media_per_conversation
    assert {Medium.VOICE, Medium.EMAIL} in media_per_conversation
    assert {Medium.VOICE, Medium.SMS} in media_per_conversation


@pytest.mark.django_db
def test_conversation_and_interaction_times_are_consistent_and_in_the_past():
    seed()

    now = timezone.now()
    for conversation in Conversation.objects.all():
        assert conversation.closed_at is not None
        assert conversation.opened_at <= conversation.closed_at < now
        for interaction in conversation.interactions.all():
            assert interaction.ended_at is not None
            assert conversation.opened_at <= interaction.created_at <= interaction.ended_at <= conversation.closed_at
            if interaction.answered_at is not None:
                assert interaction.created_at <= interaction.answered_at <= interaction.ended_at
            else:
                assert interaction.state in (Interaction.State.MISSED, Interaction.State.ABANDONED)


@pytest.mark.django_db
def test_timeline_messages_and_notes_fall_inside_their_conversation_in_creation_order():
    seed()

    for conversation in Conversation.objects.all():
        window = (conversation.opened_at, conversation.closed_at)
        entries = list(conversation.timeline.order_by("created_at", "id"))
        assert [entry.pk for entry in entries] == sorted(entry.pk for entry in entries)
        assert entries[0].kind == TimelineEntry.Kind.OPENED
        assert entries[-1].kind == TimelineEntry.Kind.CLOSED
        assert entries[0].created_at == window[0]
        assert entries[-1].created_at == window[1]
        for row in [*conversation.messages.all(), *Note.objects.filter(conversation=conversation)]:
            assert window[0] <= row.created_at <= window[1]
        for message in conversation.messages.all():
            assert message.entry.created_at == message.created_at


@pytest.mark.django_db
def test_the_history_spans_several_weeks():
    seed()

    span = Conversation.objects.latest("opened_at").opened_at - Conversation.objects.earliest("opened_at").opened_at
    assert span.days >= 14


@pytest.mark.django_db
def test_outbound_messages_are_delivered_and_inbound_received():
    seed()

    outbound = Message.objects.filter(direction=Direction.OUTBOUND)
    inbound = Message.objects.filter(direction=Direction.INBOUND)
    assert outbound.exists()
    assert inbound.exists()
    assert set(outbound.values_list("delivery_status", flat=True)) <= {Message.Status.DELIVERED, Message.Status.SENT}
    assert set(inbound.values_list("delivery_status", flat=True)) == {Message.Status.RECEIVED}
    assert not Message.objects.filter(body="").exists()
    assert Message.objects.filter(medium=Medium.EMAIL).exclude(subject="").exists()


@pytest.mark.django_db
def test_contact_last_activity_is_its_last_conversation():
    seed()

    for contact in Contact.objects.all():
        assert contact.last_activity_at == contact.conversations.latest("closed_at").closed_at


@pytest.mark.django_db
def test_running_twice_leaves_every_table_count_unchanged():
    seed()
    after_first = table_counts()

    seed()

    assert table_counts() == after_first


@pytest.mark.django_db
def test_running_twice_changes_no_row():
    seed()
    after_first = dump_all()

    seed()

    assert dump_all() == after_first


@pytest.mark.django_db
def test_second_run_says_nothing_changed():
    seed()

    assert "nothing changed" in seed()


@pytest.mark.django_db
def test_an_existing_user_keeps_their_password():
    UserFactory(username="agent1", password="their-own-password")

    seed()

    user = get_user_model().objects.get(username="agent1")
    assert user.check_password("their-own-password")
    assert not user.check_password(DEMO_PASSWORD)


@pytest.mark.django_db
def test_a_contact_with_a_conversation_gets_no_demo_history():
    point = ContactPointFactory(value="maria.schneider@example.com")
    ConversationFactory(contact=point.contact)

    seed()

    assert point.contact.conversations.count() == 1


@pytest.mark.django_db
def test_refuses_to_run_without_debug():
    with override_settings(DEBUG=False), pytest.raises(CommandError, match="--allow-production"):
        call_command("seed_demo", stdout=io.StringIO())

    assert not get_user_model().objects.filter(username__in=["supervisor", *AGENTS]).exists()


@pytest.mark.django_db
def test_runs_without_debug_when_production_is_allowed():
    with override_settings(DEBUG=False):
        call_command("seed_demo", "--allow-production", stdout=io.StringIO())

    assert get_user_model().objects.filter(username="supervisor").exists()


@pytest.mark.django_db
def test_output_names_the_logins_and_the_urls():
    output = seed(port=8123)

    for username in ("supervisor", *AGENTS):
        assert re.search(rf"^\s*{username}\s+{re.escape(DEMO_PASSWORD)}\s+\S", output, re.MULTILINE)
    assert "supervisor (admin)" in output
    assert "http://127.0.0.1:8123/desktop/" in output
    assert "http://127.0.0.1:8123/admin/" in output


@pytest.mark.django_db
def test_url_port_defaults_to_the_port_environment_variable(monkeypatch):
    monkeypatch.setenv("PORT", "8765")

    assert "http://127.0.0.1:8765/desktop/" in seed()


@pytest.mark.django_db
def test_url_port_defaults_to_8000(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)

    assert "http://127.0.0.1:8000/admin/" in seed()
