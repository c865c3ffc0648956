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
