"""Make a chat's customer look silent: the session's activity stamp and the customer's messages moved back."""

from __future__ import annotations

from datetime import datetime

from channels_app.webchat.models import ChatSession
from conversations.models import Message


def customer_silent_since(session: ChatSession, since: datetime) -> None:
    """The customer last wrote at ``since``. The sweep reads the stamp and their latest message, so both move."""
    ChatSession.objects.filter(pk=session.pk).update(last_customer_activity_at=since)
    Message.objects.filter(
        interaction_id=session.interaction_id, author_kind=Message.Author.CUSTOMER, created_at__gt=since
    ).update(created_at=since)
