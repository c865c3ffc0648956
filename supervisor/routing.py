"""Websocket routes of this app; config.routing includes them."""

from __future__ import annotations

from django.urls import path

from supervisor.consumers import AgentsBoardConsumer, MonitorConsumer, QueuesBoardConsumer

websocket_urlpatterns: list = [
    path("ws/supervisor/agents/", AgentsBoardConsumer.as_asgi(), name="ws-supervisor-agents"),
    path("ws/supervisor/queues/", QueuesBoardConsumer.as_asgi(), name="ws-supervisor-queues"),
    path(
        "ws/supervisor/conversations/<uuid:conversation_uuid>/",
        MonitorConsumer.as_asgi(),
        name="ws-supervisor-conversation",
    ),
]
