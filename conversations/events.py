"""Events about conversations, offers and queues; the only place these publish to the channel layer.

Every event carries a type and ids. Conversation events go to the
conversation's group (the customer, supervisors watching) and to the assigned
agent's group (every desktop tab of that agent).
"""

from __future__ import annotations

from core.groups import agent_group, conversation_group, service_group
from core.realtime import publish_now, publish_on_commit


def _to_conversation(conversation_uuid, agent_id: int | None, event: dict, *, now: bool = False) -> None:
    publish = publish_now if now else publish_on_commit
    publish(conversation_group(conversation_uuid), event)
    if agent_id is not None:
        publish(agent_group(agent_id), event)


def conversation_timeline_appended(*, conversation_uuid, entry_id: int, agent_id: int | None) -> None:
    event = {"type": "conversation.timeline", "conversation": str(conversation_uuid), "entry_id": entry_id}
    _to_conversation(conversation_uuid, agent_id, event)


def conversation_entry_changed(*, conversation_uuid, entry_id: int, agent_id: int | None) -> None:
    """An entry already shown changed (a delivery status): clients replace it in place."""
    conversation_timeline_appended(conversation_uuid=conversation_uuid, entry_id=entry_id, agent_id=agent_id)


def conversation_changed(*, conversation_uuid, agent_id: int | None) -> None:
    event = {"type": "conversation.changed", "conversation": str(conversation_uuid)}
    _to_conversation(conversation_uuid, agent_id, event)


def conversation_contact_changed(*, conversation_uuid, agent_id: int) -> None:
    """The conversation's contact changed (an address added or removed, a name corrected).

    Only the agent's desktop shows it: the contact panel and which channels the composer offers.
    """
    publish_on_commit(agent_group(agent_id), {"type": "conversation.contact", "conversation": str(conversation_uuid)})


def conversation_receipts(*, conversation_uuid, agent_id: int | None) -> None:
    """Delivery or read marks moved on one side."""
    event = {"type": "conversation.receipts", "conversation": str(conversation_uuid)}
    _to_conversation(conversation_uuid, agent_id, event)


def conversation_typing(*, conversation_uuid, agent_id: int | None, who: str, typing: bool) -> None:
    """Typing is not stored: it goes out at once and is lost harmlessly."""
    event = {"type": "conversation.typing", "conversation": str(conversation_uuid), "who": who, "typing": typing}
    _to_conversation(conversation_uuid, agent_id, event, now=True)


def agent_offers_changed(*, user_id: int) -> None:
    publish_on_commit(agent_group(user_id), {"type": "agent.offers", "user_id": user_id})


def agent_conversations_changed(*, user_id: int) -> None:
    publish_on_commit(agent_group(user_id), {"type": "agent.conversations", "user_id": user_id})


def service_queue_changed(*, service_id: int) -> None:
    publish_on_commit(service_group(service_id), {"type": "service.queue", "service_id": service_id})


def chat_inactivity_warning(*, conversation_uuid, ends_at: str) -> None:
    """Tell the customer the chat ends soon unless they write."""
    publish_on_commit(
        conversation_group(conversation_uuid),
        {"type": "chat.inactivity", "conversation": str(conversation_uuid), "ends_at": ends_at},
    )
