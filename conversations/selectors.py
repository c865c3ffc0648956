"""Every read the views and consumers need about conversations."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from contacts.models import Contact
from conversations.models import Conversation, TimelineEntry


def conversations_active_for_agent(*, agent) -> QuerySet[Conversation]:
    """The agent's Active Conversations List, oldest first."""
    return (
        Conversation.objects.open().assigned_to(agent).select_related("contact", "service").order_by("opened_at", "id")
    )


def conversation_for_agent(*, agent, conversation_uuid) -> Conversation | None:
    """The conversation if ``agent`` may work it (it is assigned to them), else None."""
    return (
        Conversation.objects.select_related("contact", "service")
        .filter(uuid=conversation_uuid, assigned_agent=agent)
        .first()
    )


def conversation_timeline(
    *, conversation: Conversation, after: tuple[datetime, int] | None = None, limit: int = 100
) -> list[TimelineEntry]:
    """Timeline entries in time order, keyset-paged after ``(created_at, id)``.

    One query whatever the size of the conversation: no OFFSET, no COUNT.
    """
    entries = TimelineEntry.objects.filter(conversation=conversation).select_related(
        "message", "note", "interaction", "actor"
    )
    if after is not None:
        created_at, entry_id = after
        entries = entries.filter(Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=entry_id))
    return list(entries.order_by("created_at", "id")[:limit])


def contact_activity_history(
    *, contact: Contact, before: tuple[datetime, int] | None = None, limit: int = 20
) -> list[Conversation]:
    """The contact's conversations across every channel, newest first, keyset-paged."""
    conversations = Conversation.objects.filter(contact=contact).select_related(
        "service", "assigned_agent", "disposition"
    )
    if before is not None:
        opened_at, conversation_id = before
        conversations = conversations.filter(
            Q(opened_at__lt=opened_at) | Q(opened_at=opened_at, id__lt=conversation_id)
        )
    return list(conversations.order_by("-opened_at", "-id")[:limit])
