"""Publishing to the channel layer after the transaction commits.

Events carry a type and ids only, never HTML or unsaved data: a consumer loads
the rows itself. The database is the source of truth; if the layer is down
the event is lost, and clients re-sync from the database when they reconnect.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception as exc:
        # Committed data is safe; the clients re-sync on reconnect.
        logger.warning("channel layer send to %s failed: %r", group, exc)


def publish_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _send(group, event))


def publish_now(group: str, event: dict[str, Any]) -> None:
    """Send at once, for ephemeral signals that are never stored (typing)."""
    _send(group, event)
