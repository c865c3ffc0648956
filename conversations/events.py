"""Events about conversations; the only place conversations publish to the channel layer."""

from __future__ import annotations

from core.groups import conversation_group
from core.realtime import publish_on_commit


def conversation_timeline_appended(*, conversation_uuid, entry_id: int) -> None:
    event = {"type": "conversation.timeline", "conversation": str(conversation_uuid), "entry_id": entry_id}
    publish_on_commit(conversation_group(conversation_uuid), event)


def conversation_changed(*, conversation_uuid) -> None:
    event = {"type": "conversation.changed", "conversation": str(conversation_uuid)}
    publish_on_commit(conversation_group(conversation_uuid), event)
