from __future__ import annotations

from django.apps import AppConfig


class WebchatConfig(AppConfig):
    name = "channels_app.webchat"
    label = "channel_webchat"
