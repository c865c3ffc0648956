from __future__ import annotations

from django.apps import AppConfig


class EmailConfig(AppConfig):
    name = "channels_app.email"
    label = "channel_email"
