"""The bulk seed (QUALITY.md's reference data set, small here): counts, links, times, the DEBUG guard."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, F, Max, Min
from django.test import override_settings

from contacts.models import Contact, ContactPoint
from conversations.models import Conversation, Interaction, Medium, Message, TimelineEntry

pytestmark = pytest.mark.django_db

SIZES = {"contacts": 50, "conversations": 100, "messages": 2000}


def seed(**options) -> str:
    out = io.StringIO()
    with override_settings(DEBUG=True):
        call_command("seed_bulk", stdout=out, **{**SIZES, **options})
    return out.getvalue()


def test_counts_and_points():
    out = seed()
    assert Contact.objects.count() == 50
    assert ContactPoint.objects.count() == 100
    assert set(ContactPoint.objects.values_list("kind", flat=True)) == {"phone", "email"}
    assert not Contact.objects.annotate(n=Count("points")).exclude(n=2).exists()
    assert Conversation.objects.count() == 100
    assert Conversation.objects.closed().count() == 100
    assert Message.objects.count() == 2000
    assert "2,000 messages" in out
    assert set(Interaction.objects.values_list("medium", flat=True)) == {
        Medium.CHAT,
        Medium.VOICE,
        Medium.SMS,
        Medium.EMAIL,
    }


def test_every_message_has_one_timeline_entry_and_frames():
    seed()
    entries = TimelineEntry.objects.filter(kind=TimelineEntry.Kind.MESSAGE)
    assert entries.count() == 2000
    assert entries.filter(message__isnull=False).values("message").distinct().count() == 2000
    assert not entries.exclude(conversation=F("message__conversation")).exists()
    assert not Message.objects.exclude(conversation=F("interaction__conversation")).exists()
    assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.OPENED).count() == 100
    assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.CLOSED).count() == 100


def test_times_consistent():
    seed()
    for conversation in Conversation.objects.annotate(
        first=Min("timeline__created_at"), last=Max("timeline__created_at")
    ):
        assert conversation.first == conversation.opened_at
        assert conversation.last == conversation.closed_at
        assert conversation.closed_at > conversation.opened_at
    # Within a conversation, later ids are later in time.
    previous: dict[int, tuple] = {}
    for conversation_id, created_at in Message.objects.order_by("id").values_list("conversation_id", "created_at"):
        if conversation_id in previous:
            assert created_at > previous[conversation_id]
        previous[conversation_id] = created_at
    newest = Conversation.objects.filter(contact=F("contact")).order_by("-closed_at").values("contact", "closed_at")
    by_contact: dict[int, object] = {}
    for row in newest:
        by_contact.setdefault(row["contact"], row["closed_at"])
    for contact in Contact.objects.all():
        assert contact.last_activity_at == by_contact[contact.pk]


def test_open_conversations_for_an_agent(agent):
    seed(agent=agent.user.username, open=3, open_messages=100)
    open_ = Conversation.objects.open()
    assert open_.count() == 3
    assert set(open_.values_list("assigned_agent", flat=True)) == {agent.user.pk}
    assert len(set(open_.values_list("contact", flat=True))) == 3
    assert Message.objects.filter(conversation__in=open_).count() == 300
    assert Message.objects.count() == 2000
    assert Interaction.objects.filter(conversation__in=open_, state=Interaction.State.ACTIVE).count() == 3


def test_a_second_run_adds_to_the_first():
    seed()
    seed()
    assert Message.objects.count() == 4000
    assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.MESSAGE).count() == 4000


def test_refuses_without_debug():
    with override_settings(DEBUG=False), pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_bulk", stdout=io.StringIO(), **SIZES)
    assert not Message.objects.exists()
    with override_settings(DEBUG=False):
        call_command("seed_bulk", stdout=io.StringIO(), allow_production=True, **SIZES)
    assert Message.objects.count() == 2000
