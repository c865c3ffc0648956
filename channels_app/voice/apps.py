from __future__ import annotations

from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "channels_app.voice"
    label = "channel_voice"
