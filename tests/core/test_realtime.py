"""Events from Celery workers reach the web process when the channel layer is in-memory."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from core import realtime
from core.models import RelayedEvent


@pytest.mark.django_db
def test_worker_events_are_written_to_the_relay_table_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(realtime, "RELAY_THROUGH_DATABASE", True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        realtime.publish_on_commit("agent.7", {"type": "agent.offers", "user_id": 7})
        assert not RelayedEvent.objects.exists()
    for callback in callbacks:
        callback()
    assert list(RelayedEvent.objects.values_list("group", "payload")) == [
        ("agent.7", {"type": "agent.offers", "user_id": 7})
    ]


@pytest.mark.django_db(transaction=True)
async def test_web_process_forwards_relayed_events_in_order_and_forgets_them():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("agent.7", channel)
    first = await sync_to_async(RelayedEvent.objects.create)(group="agent.7", payload={"type": "agent.offers", "n": 1})
    await sync_to_async(RelayedEvent.objects.create)(group="agent.8", payload={"type": "agent.offers", "n": 2})
    last = await sync_to_async(RelayedEvent.objects.create)(group="agent.7", payload={"type": "agent.state", "n": 3})

    assert await realtime.relay_once(first.pk - 1) == last.pk

    assert (await layer.receive(channel))["n"] == 1
    assert (await layer.receive(channel))["n"] == 3
    assert not await sync_to_async(RelayedEvent.objects.exists)()
    assert await realtime.relay_once(last.pk) == last.pk


def test_celery_workers_relay_only_when_the_layer_is_in_memory(monkeypatch, settings):
    from config.celery import relay_events_when_layer_is_in_memory

    monkeypatch.setattr(realtime, "RELAY_THROUGH_DATABASE", False)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    relay_events_when_layer_is_in_memory()
    assert realtime.RELAY_THROUGH_DATABASE is False
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    relay_events_when_layer_is_in_memory()
    assert realtime.RELAY_THROUGH_DATABASE is True


# --- the web process's publisher -----------------------------------------------------------------------


class _SlowLayer:
    """A layer whose sends take a while, as Redis's round trips do, and that remembers what it got."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
        import asyncio

        await asyncio.sleep(self.delay)
        self.sent.append((group, message))


async def _until(predicate, timeout: float = 5.0) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_thread_publishing_does_not_wait_for_the_layer_and_each_group_keeps_its_order(monkeypatch):
    import time

    layer = _SlowLayer(delay=0.05)
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: layer)
    publisher = realtime.publisher_start()
    assert realtime.publisher_start() is publisher

    def commit_many() -> float:
        started = time.monotonic()
        for n in range(20):
            realtime.publish_now(f"conversation.{n % 2}", {"type": "conversation.timeline", "n": n})
        return time.monotonic() - started

    # A thread, as a consumer's database work or an HTTP request runs in.
    took = await sync_to_async(commit_many, thread_sensitive=False)()

    assert took < 0.05, "the committing thread waited for the layer"
    await _until(lambda: len(layer.sent) == 20)
    for group in ("conversation.0", "conversation.1"):
        numbers = [event["n"] for name, event in layer.sent if name == group]
        assert numbers == sorted(numbers)


async def test_a_layer_far_behind_drops_new_events_instead_of_growing_without_bound(monkeypatch):
    import asyncio

    never = asyncio.Event()

    class StuckLayer:
        async def group_send(self, group, message):
            await never.wait()

    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: StuckLayer())
    monkeypatch.setattr(realtime, "PUBLISH_QUEUE_MAX", 5)
    monkeypatch.setattr(realtime, "_publisher", None)
    publisher = realtime.publisher_start()
    for n in range(realtime.PUBLISH_LANES * 10):
        realtime.publish_now("agent.1", {"type": "agent.offers", "n": n})
    await asyncio.sleep(0.05)

    # One lane serves the group: five fitted (one is now in the layer's hands), the rest were dropped.
    assert sum(queue.qsize() for queue in publisher.queues) == 4
    assert publisher.dropped == realtime.PUBLISH_LANES * 10 - 5
    never.set()


def test_without_a_running_web_process_loop_events_are_sent_at_once(monkeypatch):
    """Workers, management commands and plain tests have no publisher loop: the send happens in place."""
    layer = _SlowLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: layer)
    realtime.publish_now("agent.3", {"type": "agent.state", "user_id": 3})
    assert layer.sent == [("agent.3", {"type": "agent.state", "user_id": 3})]


def test_sockets_new_writes_are_refused_while_the_publisher_is_behind(monkeypatch, settings):
    """Events waiting for the layer past WEBSOCKET_MAX_PUBLISH_BACKLOG make a socket's new writes wait."""
    import asyncio

    settings.WEBSOCKET_MAX_PUBLISH_BACKLOG = 2
    monkeypatch.setattr(realtime, "websocket_db_overloaded", lambda: False)
    loop = asyncio.new_event_loop()
    try:
        publisher = realtime.Publisher(loop)  # its loop is not running: nothing drains the queues
        monkeypatch.setattr(realtime, "_publisher", publisher)
        assert realtime.publish_backlog() == 0
        publisher._put("conversation.a", {"type": "conversation.timeline", "entry_id": 1})
        publisher._put("conversation.b", {"type": "conversation.timeline", "entry_id": 2})
        assert realtime.publish_backlog() == 2
        assert not realtime.websocket_overloaded()

        publisher._put("conversation.c", {"type": "conversation.timeline", "entry_id": 3})

        assert realtime.websocket_overloaded()
        monkeypatch.setattr(realtime, "_publisher", None)
        assert realtime.publish_backlog() == 0 and not realtime.websocket_overloaded()
    finally:
        for task in publisher.tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*publisher.tasks, return_exceptions=True))
        loop.close()


def test_sockets_new_writes_are_refused_while_the_database_pool_is_behind(monkeypatch):
    monkeypatch.setattr(realtime, "websocket_db_overloaded", lambda: True)
    monkeypatch.setattr(realtime, "_publisher", None)
    assert realtime.websocket_overloaded()
