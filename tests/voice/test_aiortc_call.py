"""Two real WebRTC peers (aiortc) call each other through the real signalling consumers.

The agent's peer and the customer's peer each talk only to their own
``/ws/voice/`` socket; the consumers relay offer/answer/ICE between them. The
call reaches ``connected`` with audio frames arriving on both sides, is held,
resumed and hung up, and the interaction records its times.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from asgiref.sync import sync_to_async
from av import AudioFrame

from conversations.models import Interaction, TimelineEntry
from tests.voice.helpers import agent_socket, close_all, customer_socket, live_chat, receive_until

pytestmark = [pytest.mark.django_db(transaction=True)]

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone, 20 ms per frame, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.pts = 0
        self.start = None

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        wait = self.start + self.pts / SAMPLE_RATE - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = [int(math.sin(2 * math.pi * 440 * (i + self.pts) / SAMPLE_RATE) * 8000) for i in range(FRAME_SAMPLES)]
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(struct.pack(f"<{FRAME_SAMPLES}h", *samples))
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.pts += FRAME_SAMPLES
        return frame


class Peer:
    """One party: a peer connection wired to its voice socket."""

    def __init__(self, socket, name: str) -> None:
        self.socket = socket
        self.name = name
        self.pc = RTCPeerConnection()
        self.pc.addTrack(ToneTrack())
        self.frames_received = 0
        self.connected = asyncio.Event()
        self.got_audio = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()

        @self.pc.on("track")
        def on_track(track) -> None:
            self.tasks.append(asyncio.ensure_future(self.consume(track)))

    async def consume(self, track) -> None:
        while True:
            try:
                await track.recv()
            except Exception:
                return
            self.frames_received += 1
            if self.frames_received >= 25:
                self.got_audio.set()

    async def send_offer(self, call_id: int) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        await self.socket.send_json_to({"type": "offer", "call": call_id, "sdp": sdp})
        await self.send_candidates(call_id, sdp)

    async def answer(self, call_id: int, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        await self.socket.send_json_to({"type": "answer", "call": call_id, "sdp": sdp})
        await self.send_candidates(call_id, sdp)

    async def send_candidates(self, call_id: int, sdp: str) -> None:
        """aiortc puts its candidates in the SDP; they also go as trickle frames, like a browser's."""
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                candidate = {"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0}
                await self.socket.send_json_to({"type": "ice", "call": call_id, "candidate": candidate})
        await self.socket.send_json_to({"type": "ice", "call": call_id, "candidate": None})

    async def add_candidate(self, candidate: dict | None) -> None:
        if not candidate or not candidate.get("candidate"):
            return
        parsed = candidate_from_sdp(candidate["candidate"].removeprefix("candidate:"))
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def pump(peer: Peer, call_id: int, *, role: str, timings: dict, stop: asyncio.Event) -> None:
    """Handle the relayed signalling frames a party receives until told to stop."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        # A receive that times out would cancel the consumer (asgiref's communicator): peek first.
        if await peer.socket.receive_nothing(timeout=0.05, interval=0.01):
            continue
        frame = await peer.socket.receive_json_from()
        if frame.get("call") not in (None, call_id) and frame["type"] != "call":
            continue
        if frame["type"] == "ready" and role == "agent":
            await peer.send_offer(call_id)
        elif frame["type"] == "offer" and role == "customer":
            await peer.answer(call_id, frame["sdp"])
        elif frame["type"] == "answer" and role == "agent":
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="answer"))
        elif frame["type"] == "ice":
            await peer.add_candidate(frame.get("candidate"))
        elif frame["type"] == "call":
            timings.setdefault(f"{role}:{frame['call']['state']}", loop.time())
        elif frame["type"] == "error":
            timings.setdefault(f"{role}:errors", []).append(frame)


async def until(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@sync_to_async
def call_row(call_id: int) -> Interaction:
    return Interaction.objects.get(pk=call_id)


@sync_to_async
def voice_events(conversation_id: int) -> list[dict]:
    return list(
        TimelineEntry.objects.filter(conversation_id=conversation_id, kind=TimelineEntry.Kind.CHANNEL_EVENT)
        .order_by("id")
        .values_list("data", flat=True)
    )


async def test_two_aiortc_peers_talk_through_the_signalling_consumers():
    agent, _service, session, token = await sync_to_async(live_chat)()
    agent_ws = await agent_socket(agent.user)
    customer_ws = await customer_socket(token)
    agent_peer = Peer(agent_ws, "agent")
    customer_peer = Peer(customer_ws, "customer")
    timings: dict = {}
    stop = asyncio.Event()
    try:
        # The agent calls from the live chat; the customer's socket rings.
        await agent_ws.send_json_to({"type": "call", "conversation": str(session.conversation.uuid)})
        ringing = await receive_until(customer_ws, "call", where=lambda f: f["call"]["state"] == "ringing")
        call_id = ringing["call"]["id"]
        assert ringing["call"]["incoming"] is True
        await receive_until(agent_ws, "call", where=lambda f: f["call"]["state"] == "ringing")

        await customer_ws.send_json_to({"type": "accept", "call": call_id})
        await receive_until(customer_ws, "call", where=lambda f: f["call"]["state"] == "active")
        await receive_until(agent_ws, "call", where=lambda f: f["call"]["state"] == "active")
        loop = asyncio.get_running_loop()
        accepted_at = loop.time()

        _pumps = [
            asyncio.ensure_future(pump(agent_peer, call_id, role="agent", timings=timings, stop=stop)),
            asyncio.ensure_future(pump(customer_peer, call_id, role="customer", timings=timings, stop=stop)),
        ]
        # The answering side says it has its microphone; the agent then makes the offer.
        await customer_ws.send_json_to({"type": "ready", "call": call_id})
        await asyncio.wait_for(asyncio.gather(agent_peer.connected.wait(), customer_peer.connected.wait()), 20)
        connected_at = loop.time()
        await asyncio.wait_for(asyncio.gather(agent_peer.got_audio.wait(), customer_peer.got_audio.wait()), 20)
        assert agent_peer.frames_received >= 25
        assert customer_peer.frames_received >= 25

        # Hold and resume (the agent), then the customer hangs up.
        await agent_ws.send_json_to({"type": "hold", "call": call_id, "on": True})
        await until(lambda: "customer:on_hold" in timings and "agent:on_hold" in timings)
        assert (await call_row(call_id)).state == Interaction.State.ON_HOLD
        await asyncio.sleep(0.3)
        timings.pop("agent:active", None)
        await agent_ws.send_json_to({"type": "hold", "call": call_id, "on": False})
        await until(lambda: "agent:active" in timings)
        assert (await call_row(call_id)).state == Interaction.State.ACTIVE
        frames_before = customer_peer.frames_received
        await asyncio.sleep(0.5)
        assert customer_peer.frames_received > frames_before, "audio flows again after resume"

        await customer_ws.send_json_to(
            {"type": "stats", "call": call_id, "stats": {"rtt_ms": 1.5, "jitter_ms": 2.0, "packets_lost": 0}}
        )
        await customer_ws.send_json_to({"type": "hangup", "call": call_id})
        await until(lambda: "customer:ended" in timings and "agent:ended" in timings)
    finally:
        stop.set()
        await asyncio.sleep(0.3)
        await agent_peer.close()
        await customer_peer.close()
        await close_all()

    assert "agent:errors" not in timings and "customer:errors" not in timings, timings
    assert timings.get("agent:on_hold") and timings.get("customer:on_hold"), "both sides saw the hold"
    assert timings.get("agent:ended") and timings.get("customer:ended")
    call = await call_row(call_id)
    assert call.state == Interaction.State.ENDED
    assert call.direction == "outbound"
    assert call.end_reason == "customer_hangup"
    assert call.answered_at is not None and call.ended_at > call.answered_at
    assert call.details["hold_seconds"] >= 0.3
    assert call.details["holds"] == 1
    assert call.details["talk_seconds"] > 0
    assert call.details["quality"]["customer"]["rtt_ms"] == 1.5
    kinds = [data["event"] for data in await voice_events(session.conversation_id)]
    assert kinds == ["ringing", "answered", "held", "resumed", "ended"]
    assert connected_at - accepted_at < 20
