"""Websocket routes of every app, in one place."""

from __future__ import annotations

from django.urls import path

from agents.consumers import AgentConsumer
from channels_app.voice.routing import websocket_urlpatterns as voice_routes
from channels_app.webchat.consumers import CustomerChatConsumer
from supervisor.routing import websocket_urlpatterns as supervisor_routes

websocket_urlpatterns = [
    path("ws/agent/", AgentConsumer.as_asgi(), name="ws-agent"),
    path("ws/chat/", CustomerChatConsumer.as_asgi(), name="ws-chat"),
    *voice_routes,
    *supervisor_routes,
]
