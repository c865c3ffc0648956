"""Builders for contacts tests: contacts with points, conversations across channels, chat sessions."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from channels_app.webchat.models import ChatSession
from contacts.models import Contact, ContactPoint
from conversations.models import Conversation, Direction, Interaction, Medium, Message, Note, TimelineEntry
from tests.factories import ContactFactory, ContactPointFactory, ServiceFactory

BASE = timezone.now().replace(microsecond=0) - timedelta(days=30)
PHONE = ContactPoint.Kind.PHONE
EMAIL = ContactPoint.Kind.EMAIL
WEBCHAT = ContactPoint.Kind.WEBCHAT


def closed_conversation(contact: Contact, *, opened_at, media=(Medium.CHAT,), body: str = "", agent=None, **fields):
    """A closed conversation of ``contact`` with one answered interaction per medium and one message each."""
    service = fields.pop("service", None) or ServiceFactory(slug="bookings", name="Bookings")
    conversation = Conversation.objects.create(
        contact=contact,
        service=service,
        status=Conversation.Status.CLOSED,
        assigned_agent=agent,
        opened_at=opened_at,
        closed_at=opened_at + timedelta(minutes=30),
        **fields,
    )
    TimelineEntry.objects.create(conversation=conversation, kind=TimelineEntry.Kind.OPENED, created_at=opened_at)
    for offset, medium in enumerate(media):
        started = opened_at + timedelta(minutes=offset)
        interaction = Interaction.objects.create(
            conversation=conversation,
            medium=medium,
            direction=Direction.INBOUND,
            state=Interaction.State.ENDED,
            service=service,
            agent=agent,
            created_at=started,
            answered_at=started + timedelta(seconds=10),
            ended_at=started + timedelta(minutes=5),
        )
        if medium in (Medium.CHAT, Medium.SMS, Medium.EMAIL):
            message = Message.objects.create(
                conversation=conversation,
                interaction=interaction,
                medium=medium,
                direction=Direction.INBOUND,
                author_kind=Message.Author.CUSTOMER,
                subject="Booking ABC123" if medium == Medium.EMAIL else "",
                body=body or f"Hello by {medium}",
                delivery_status=Message.Status.RECEIVED,
                created_at=started + timedelta(seconds=20),
            )
            TimelineEntry.objects.create(
                conversation=conversation,
                kind=TimelineEntry.Kind.MESSAGE,
                interaction=interaction,
                message=message,
                created_at=message.created_at,
            )
    return conversation


def add_note(conversation: Conversation, body: str, author=None) -> Note:
    note = Note.objects.create(conversation=conversation, body=body, author=author)
    TimelineEntry.objects.create(conversation=conversation, kind=TimelineEntry.Kind.NOTE, note=note)
    return note


def chat_session(contact: Contact, conversation: Conversation, **fields) -> ChatSession:
    interaction = Interaction.objects.create(
        conversation=conversation,
        medium=Medium.CHAT,
        direction=Direction.INBOUND,
        state=Interaction.State.ENDED,
        service=conversation.service,
        created_at=conversation.opened_at,
        ended_at=conversation.opened_at + timedelta(minutes=1),
    )
    fields.setdefault("visitor_id", uuid.uuid4())
    return ChatSession.objects.create(
        contact=contact, conversation=conversation, interaction=interaction, service=conversation.service, **fields
    )


def contact_with_points(*points, **fields) -> Contact:
    contact = ContactFactory(**fields)
    for kind, value in points:
        ContactPointFactory(contact=contact, kind=kind, value=value)
    return contact
