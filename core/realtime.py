"""Publishing to the channel layer after the transaction commits.

Events carry a type and ids only, never HTML or unsaved data: a consumer loads
the rows itself. The database is the source of truth; if the layer is down
the event is lost, and clients re-sync from the database when they reconnect.

With the in-memory layer (no ``REDIS_URL``) a Celery worker cannot reach the
web process's layer, so worker processes write their events to
``RelayedEvent`` and the web process forwards them (``relay_events``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from core.db import database_sync_to_async, websocket_db_overloaded

logger = logging.getLogger(__name__)

# Set in Celery worker processes when the layer is in-memory (config/celery.py).
RELAY_THROUGH_DATABASE = False
RELAY_POLL_SECONDS = 0.2


def layer_is_in_memory() -> bool:
    from channels.layers import InMemoryChannelLayer
    from django.utils.module_loading import import_string

    return issubclass(import_string(settings.CHANNEL_LAYERS["default"]["BACKEND"]), InMemoryChannelLayer)


def _send(group: str, event: dict[str, Any]) -> None:
    if RELAY_THROUGH_DATABASE:
        from core.models import RelayedEvent

        try:
            RelayedEvent.objects.create(group=group, payload=event)
        except Exception as exc:
            logger.warning("could not relay event to %s: %r", group, exc)
        return
    publisher = _publisher
    if publisher is not None and publisher.accepting():
        publisher.submit(group, event)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception as exc:
        # Committed data is safe; the clients re-sync on reconnect.
        logger.warning("channel layer send to %s failed: %r", group, exc)


# --- publishing from the web process ------------------------------------------------------

# Events waiting for the layer in one lane; past this the layer is far behind and new events are dropped
# (with a warning): memory stays bounded, and clients re-sync from the database.
PUBLISH_QUEUE_MAX = 10_000
PUBLISH_LANES = 4


class Publisher:
    """Hands events from any thread of the web process to its event loop, which sends them to the layer.

    The thread that committed (a consumer's database thread, an HTTP request's thread) goes on at once
    instead of waiting for the layer's round trips; with Redis that wait used to hold up all the
    consumers' database work, which shares one thread. Events of one group keep their order: each group
    is sent by one lane, one event after the other.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queues: list[asyncio.Queue] = [asyncio.Queue(maxsize=PUBLISH_QUEUE_MAX) for _ in range(PUBLISH_LANES)]
        self.tasks = [loop.create_task(self._drain(queue)) for queue in self.queues]
        self.dropped = 0
        self.dropped_logged_at = float("-inf")

    def accepting(self) -> bool:
        return self.loop.is_running() and not self.loop.is_closed()

    def submit(self, group: str, event: dict[str, Any]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._put(group, event)
        else:
            self.loop.call_soon_threadsafe(self._put, group, event)

    def _put(self, group: str, event: dict[str, Any]) -> None:
        queue = self.queues[hash(group) % PUBLISH_LANES]
        try:
            queue.put_nowait((group, event))
        except asyncio.QueueFull:
            self.dropped += 1
            now = self.loop.time()
            if now - self.dropped_logged_at >= 1.0:
                self.dropped_logged_at = now
                logger.warning("channel layer far behind: %d events dropped so far (one to %s)", self.dropped, group)

    async def _drain(self, queue: asyncio.Queue) -> None:
        while True:
            group, event = await queue.get()
            layer = get_channel_layer()
            if layer is None:
                continue
            try:
                await layer.group_send(group, event)
            except Exception as exc:
                logger.warning("channel layer send to %s failed: %r", group, exc)

    def idle(self) -> bool:
        return all(queue.empty() for queue in self.queues)


_publisher: Publisher | None = None


def publish_backlog() -> int:
    """Events this process's publisher holds for the layer (0 before it has started)."""
    publisher = _publisher
    return sum(queue.qsize() for queue in publisher.queues) if publisher is not None else 0


def websocket_overloaded() -> bool:
    """Whether a socket's new writes (a message, a new chat, a reply) should be refused for now.

    The database pool may be behind (``websocket_db_overloaded``), or the layer: each stored message makes
    events, and when they come faster than the layer takes them they wait in the publisher's queues, each
    one adding to every later message's delivery time (under twice the saturation rate they once held
    22 000 events, deliveries 17 to 46 s late; docs/PERFORMANCE.md, RT3). Past
    ``WEBSOCKET_MAX_PUBLISH_BACKLOG`` new writes are refused, as for the pool, until the queues drain.
    """
    return websocket_db_overloaded() or publish_backlog() > settings.WEBSOCKET_MAX_PUBLISH_BACKLOG


def publisher_start() -> Publisher:
    """The publisher of the running event loop (the ASGI server's), started on its first call."""
    global _publisher
    loop = asyncio.get_running_loop()
    if _publisher is None or _publisher.loop is not loop:
        _publisher = Publisher(loop)
    return _publisher


def publish_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _send(group, event))


def publish_now(group: str, event: dict[str, Any]) -> None:
    """Send at once, for ephemeral signals that are never stored (typing)."""
    _send(group, event)


# --- the web process's side of the relay -------------------------------------------------


def _relayed_after(last_id: int) -> list[tuple[int, str, dict]]:
    from core.models import RelayedEvent

    rows = RelayedEvent.objects.filter(id__gt=last_id).order_by("id").values_list("id", "group", "payload")[:500]
    return list(rows)


def _relayed_forget(upto_id: int) -> None:
    from core.models import RelayedEvent

    RelayedEvent.objects.filter(id__lte=upto_id).delete()


def _relayed_last_id() -> int:
    from core.models import RelayedEvent

    return RelayedEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


async def relay_once(last_id: int) -> int:
    """Forward relayed events after ``last_id`` to this process's layer; returns the new last id."""
    rows = await database_sync_to_async(_relayed_after)(last_id)
    if not rows:
        return last_id
    layer = get_channel_layer()
    for row_id, group, payload in rows:
        try:
            await layer.group_send(group, payload)
        except Exception as exc:
            logger.warning("relayed send to %s failed: %r", group, exc)
        last_id = row_id
    await database_sync_to_async(_relayed_forget)(last_id)
    return last_id


async def relay_events() -> None:
    """Run in the web process for as long as it lives (embedded default only)."""
    # Events older than this process went to clients that have since re-synced.
    last_id = await database_sync_to_async(_relayed_last_id)()
    while True:
        try:
            last_id = await relay_once(last_id)
        except Exception as exc:
            logger.warning("event relay: %r", exc)
        await asyncio.sleep(RELAY_POLL_SECONDS)
