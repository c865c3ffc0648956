"""Channel-layer group names. Built here only, never from client input.

Names use dots and hyphens (the channel layer refuses colons).
"""

from __future__ import annotations

from uuid import UUID


def agent_group(user_id: int) -> str:
    return f"agent.{int(user_id)}"


def conversation_group(conversation_uuid: UUID | str) -> str:
    return f"conversation.{UUID(str(conversation_uuid))}"


def service_group(service_id: int) -> str:
    return f"service.{int(service_id)}"
