"""Voice events; the only place this app publishes to the channel layer.

Voice sockets join their own groups (``voice.agent.<id>``, ``voice.conversation.<uuid>``)
so that voice event types never reach the chat and desktop sockets, which have no
handler for them. The desktop and the chat learn of a call through the shared
``conversations.events`` (the header, the list and the timeline re-render).
"""

from __future__ import annotations

from uuid import UUID

from conversations import events as conversation_events
from core.realtime import publish_on_commit


def voice_agent_group(user_id: int) -> str:
    """Every voice socket of one agent (one per desktop tab)."""
    return f"voice.agent.{int(user_id)}"


def voice_conversation_group(conversation_uuid: UUID | str) -> str:
    """Every customer voice socket of one conversation."""
    return f"voice.conversation.{UUID(str(conversation_uuid))}"


def call_changed(
    *, call_id: int, conversation_uuid, agent_id: int | None, previous_agent_id: int | None = None
) -> None:
    """A call's state or flags changed: both parties' voice sockets reload it; desktops re-render."""
    event = {"type": "voice.call", "call": int(call_id)}
    publish_on_commit(voice_conversation_group(conversation_uuid), event)
    for user_id in {agent_id, previous_agent_id} - {None}:
        publish_on_commit(voice_agent_group(user_id), event)
    conversation_events.conversation_changed(conversation_uuid=conversation_uuid, agent_id=agent_id)
    if agent_id is not None:
        conversation_events.agent_conversations_changed(user_id=agent_id)
