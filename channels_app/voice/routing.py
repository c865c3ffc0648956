"""Websocket routes of this app; config.routing includes them."""

from __future__ import annotations

from django.urls import path

from channels_app.voice.consumers import VoiceConsumer

websocket_urlpatterns: list = [
    path("ws/voice/", VoiceConsumer.as_asgi(), name="ws-voice"),
]
