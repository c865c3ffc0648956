"""Websocket routes of this app; config.routing includes them."""

from __future__ import annotations

websocket_urlpatterns: list = []
