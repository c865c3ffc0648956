"""The consumers' base class and the embedded channel layer (core.consumers, core.layers)."""

from __future__ import annotations

import time

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from core import layers, realtime
from core.consumers import ParleyConsumer


class Echo(ParleyConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=f"echo {text_data}")


async def test_frames_are_dispatched_without_the_hop_to_close_old_connections(monkeypatch):
    import channels.consumer
    import channels.generic.websocket

    hops = []

    async def counted():
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    monkeypatch.setattr(channels.generic.websocket, "aclose_old_connections", counted)
    communicator = WebsocketCommunicator(Echo.as_asgi(), "/ws/echo/")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data="one")
    assert await communicator.receive_from() == "echo one"
    await communicator.disconnect()
    # Channels' own dispatch would have run it for the connect, the frame and the disconnect.
    assert hops == []


async def test_an_event_without_a_handler_is_an_error():
    consumer = Echo()
    with pytest.raises(ValueError, match=r"No handler for message type conversation\.unknown"):
        await consumer.dispatch({"type": "conversation.unknown"})


def test_the_embedded_layer_is_the_sweeping_in_memory_layer(settings):
    if settings.REDIS_URL:
        # The PostgreSQL + Redis pass: the layer is Redis, and workers publish to it directly.
        assert not isinstance(get_channel_layer(), layers.SweepingInMemoryChannelLayer)
        assert not realtime.layer_is_in_memory()
    else:
        assert isinstance(get_channel_layer(), layers.SweepingInMemoryChannelLayer)
        assert realtime.layer_is_in_memory()
    # Either way, the embedded layer counts as in-memory for the workers' event relay.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "core.layers.SweepingInMemoryChannelLayer"}}
    assert realtime.layer_is_in_memory()


async def test_the_embedded_layer_sweeps_expired_messages_at_most_once_a_second(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(layers.time, "monotonic", lambda: clock[0])
    layer = layers.SweepingInMemoryChannelLayer(expiry=60)
    sweeps = []
    original = layers.InMemoryChannelLayer._clean_expired
    monkeypatch.setattr(layers.InMemoryChannelLayer, "_clean_expired", lambda self: sweeps.append(1) or original(self))

    await layer.send("gone.one", {"type": "x"})
    await layer.send("kept.one", {"type": "y"})
    await layer.group_add("room", "kept.one")
    await layer.group_send("room", {"type": "z"})
    assert len(sweeps) == 1
    # Expire the first channel's message (the base class stamps them with time.time()).
    layer.channels["gone.one"]._queue[0] = (time.time() - 1, {"type": "x"})
    clock[0] += 0.5
    await layer.group_send("room", {"type": "z"})
    assert len(sweeps) == 1 and "gone.one" in layer.channels, "not swept again within a second"

    clock[0] += 0.6
    assert (await layer.receive("kept.one"))["type"] == "y"
    assert len(sweeps) == 2
    assert "gone.one" not in layer.channels, "the expired message was dropped by the next sweep"
