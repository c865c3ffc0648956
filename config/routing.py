"""Websocket routes of every app, in one place."""

from __future__ import annotations

from django.urls import path

from agents.consumers import AgentConsumer

websocket_urlpatterns = [
    path("ws/agent/", AgentConsumer.as_asgi(), name="ws-agent"),
]
