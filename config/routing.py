"""Websocket routes of every app, in one place."""

from __future__ import annotations

from django.urls import path

from agents.consumers import AgentConsumer
from channels_app.webchat.consumers import CustomerChatConsumer

websocket_urlpatterns = [
    path("ws/agent/", AgentConsumer.as_asgi(), name="ws-agent"),
    path("ws/chat/", CustomerChatConsumer.as_asgi(), name="ws-chat"),
]
