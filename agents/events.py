"""Events about agents; the only place agents publish to the channel layer."""

from __future__ import annotations

from core.groups import agent_group
from core.realtime import publish_on_commit


def agent_state_changed(*, user_id: int) -> None:
    publish_on_commit(agent_group(user_id), {"type": "agent.state", "user_id": user_id})
