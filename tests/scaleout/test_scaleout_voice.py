"""Scale-out (issue: prove it), call signalling: the customer's ``/ws/voice/`` socket on daphne A, the agent's on
daphne B. The agent calls from the live chat, the customer accepts, two real WebRTC peers (aiortc) negotiate
through both processes and Redis until media flows, the agent hangs up. Every relayed frame reaches the other
party unchanged and in order; bystander sockets on either process receive nothing of the call and cannot act
on it; the interaction records its ring, answer and end times."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

from channels_app.webchat import services as chat_services
from conversations.models import Interaction, TimelineEntry
from tests.factories import AgentFactory, ServiceFactory
from tests.scaleout.cluster import Cluster, running_cluster
from tests.scaleout.test_scaleout import _agent_login, _ws, chat_open, chat_setup
from tests.voice.test_aiortc_call import Peer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

RELAYED = ("offer", "answer", "ice", "ready")


@pytest.fixture
def running(tmp_path):
    with running_cluster(tmp_path) as started:
        yield started


@dataclass
class Socket:
    """One ``/ws/voice/`` client: every frame it sent and received, and a hook for the relayed ones."""

    name: str
    ws: object
    received: list[dict] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    on_frame: object = None
    reader: asyncio.Future | None = None
    failure: Exception | None = None

    async def send(self, frame: dict) -> None:
        self.sent.append(frame)
        await self.ws.send(json.dumps(frame))

    async def send_json_to(self, frame: dict) -> None:
        """What ``tests.voice``'s aiortc ``Peer`` calls to signal."""
        await self.send(frame)

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.received.append(frame)
                self.arrived.set()
                if self.on_frame is not None:
                    # In arrival order: an ICE candidate must not overtake the description it belongs to.
                    await self.on_frame(frame)
        except Exception as exc:  # a closed socket or a peer that failed: the waiting test reports it
            self.failure = exc
            self.arrived.set()

    async def wait_for(self, predicate, *, what: str, timeout: float = 30.0) -> dict:
        async def seen() -> dict:
            checked = 0
            while True:
                for frame in self.received[checked:]:
                    if predicate(frame):
                        return frame
                checked = len(self.received)
                if self.failure is not None:
                    raise AssertionError(f"{self.name}: {what} not received: {self.failure!r}") from self.failure
                self.arrived.clear()
                await self.arrived.wait()

        try:
            return await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name}: {what} not received in {timeout} s; got {self.received[-5:]}") from None

    def relayed(self) -> list[dict]:
        return [frame for frame in self.received if frame["type"] in RELAYED]

    def sent_relayed(self) -> list[dict]:
        return [frame for frame in self.sent if frame["type"] in RELAYED]


async def open_voice(name: str, base: str, *, cookie: str | None = None, token: str | None = None) -> Socket:
    from websockets.asyncio.client import connect

    headers = {"Accept-Language": "en"}
    if cookie:
        headers["Cookie"] = cookie
    ws = await connect(
        base.replace("http://", "ws://") + "/ws/voice/", origin=base, additional_headers=headers, open_timeout=15
    )
    socket = Socket(name=name, ws=ws)
    socket.reader = asyncio.ensure_future(socket.read())
    if token is not None:
        await socket.send({"type": "hello", "token": token})
    await socket.wait_for(lambda f: f["type"] == "hello", what="hello")
    await socket.wait_for(lambda f: f["type"] == "calls", what="the live calls")
    return socket


async def _both(*events: asyncio.Event, what: str, sockets: tuple[Socket, ...], timeout: float = 30.0) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), timeout)
    except TimeoutError:
        failures = {socket.name: socket.failure for socket in sockets if socket.failure is not None}
        raise AssertionError(f"{what}: not within {timeout} s; failures: {failures}") from None


def _call_in(state: str, call_id: int | None = None):
    return lambda f: f["type"] == "call" and f["call"]["state"] == state and call_id in (None, f["call"]["id"])


async def call_across_processes(
    running: Cluster, *, conversation_uuid: str, agent_cookie: str, customer_token: str, bystanders: dict
) -> dict:
    """The call itself, all on real sockets; returns what the test asserts on afterwards."""
    daphne_a, daphne_b = running.web
    customer = await open_voice("customer on A", daphne_a, token=customer_token)
    agent = await open_voice("agent on B", daphne_b, cookie=agent_cookie)
    others = {
        "customer-a": await open_voice("other customer on A", daphne_a, token=bystanders["token_a"]),
        "customer-b": await open_voice("other customer on B", daphne_b, token=bystanders["token_b"]),
        "agent-a": await open_voice("other agent on A", daphne_a, cookie=bystanders["agent_cookie"]),
    }
    greeted = {name: len(socket.received) for name, socket in others.items()}
    agent_peer = Peer(agent, "agent")
    customer_peer = Peer(customer, "customer")
    call_id = 0

    async def agent_frames(frame: dict) -> None:
        # The customer's page says it is ready: the agent's side (impolite, the offerer) starts the connection.
        if frame["type"] == "ready":
            await agent_peer.pc.setLocalDescription(await agent_peer.pc.createOffer())
            sdp = agent_peer.pc.localDescription.sdp
            await agent.send({"type": "offer", "call": call_id, "sdp": sdp, "fresh": True})
            await agent_peer.send_candidates(call_id, sdp)
        elif frame["type"] == "answer":
            from aiortc import RTCSessionDescription

            await agent_peer.pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="answer"))
        elif frame["type"] == "ice":
            await agent_peer.add_candidate(frame["candidate"])

    async def customer_frames(frame: dict) -> None:
        if frame["type"] == "offer":
            await customer_peer.answer(call_id, frame["sdp"])
        elif frame["type"] == "ice":
            await customer_peer.add_candidate(frame["candidate"])

    agent.on_frame = agent_frames
    customer.on_frame = customer_frames
    try:
        # The agent's call action (the workspace's Call button) on B rings the customer's page on A.
        await agent.send({"type": "call", "conversation": conversation_uuid})
        ringing = await customer.wait_for(_call_in("ringing"), what="the ringing call (service ran on B)")
        call_id = ringing["call"]["id"]
        assert ringing["call"]["incoming"] is True
        await agent.wait_for(_call_in("ringing", call_id), what="the agent's own ringing call")

        # The customer accepts on A; the agent on B sees the call answered.
        await customer.send({"type": "accept", "call": call_id})
        await agent.wait_for(_call_in("active", call_id), what="the answered call (service ran on A)")
        await customer.wait_for(_call_in("active", call_id), what="the customer's answered call")

        # Signalling both ways through A, Redis and B until the peers connect and hear each other.
        await customer.send({"type": "ready", "call": call_id})
        await _both(agent_peer.connected, customer_peer.connected, what="ICE connected", sockets=(agent, customer))
        await _both(agent_peer.got_audio, customer_peer.got_audio, what="audio both ways", sockets=(agent, customer))

        # Bystanders on either process can neither inject signalling nor end the call.
        candidate = {"candidate": "candidate:1 1 udp 2130706431 10.9.9.9 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
        await others["customer-b"].send({"type": "ice", "call": call_id, "candidate": candidate})
        await others["agent-a"].send({"type": "hangup", "call": call_id})
        for name in ("customer-b", "agent-a"):
            error = await others[name].wait_for(lambda f: f["type"] == "error", what="the refusal")
            assert error["code"] == "not_found", (name, error)

        # The agent hangs up on B; both parties see the end.
        await agent.send({"type": "hangup", "call": call_id})
        await customer.wait_for(_call_in("ended", call_id), what="the end of the call on A")
        await agent.wait_for(_call_in("ended", call_id), what="the end of the call on B")
        # Anything still in flight would arrive now.
        await asyncio.sleep(1.0)
    finally:
        await agent_peer.close()
        await customer_peer.close()
        for socket in (customer, agent, *others.values()):
            await socket.ws.close()
            socket.reader.cancel()

    return {
        "call_id": call_id,
        "customer": customer,
        "agent": agent,
        "others": others,
        "greeted": greeted,
        "audio": (agent_peer.frames_received, customer_peer.frames_received),
    }


def test_call_signalling_between_two_processes_reaches_only_the_other_party(running):
    service, profile, cookie, csrf = chat_setup("scale-out-voice")
    daphne_a, daphne_b = running.web
    with _ws(daphne_b, "/ws/agent/", Cookie=cookie) as desktop, _ws(daphne_a, "/ws/chat/") as chat:
        conversation, token = chat_open(
            running, service=service, profile=profile, cookie=cookie, csrf=csrf, customer=chat, agent_socket=desktop
        )

    # Other customers (their chats wait in a queue nobody serves) and another agent, on both processes.
    quiet = ServiceFactory(name="Nobody serves", slug="scale-out-quiet")
    tokens = [
        chat_services.session_token(
            chat_services.chat_start(
                service=quiet, data={"name": f"Other {n}", "email": f"other{n}@example.com", "question": "Hello?"}
            )
        )
        for n in (1, 2)
    ]
    other_agent_cookie, _csrf = _agent_login(AgentFactory())
    result = asyncio.run(
        call_across_processes(
            running,
            conversation_uuid=str(conversation.uuid),
            agent_cookie=cookie,
            customer_token=token,
            bystanders={"token_a": tokens[0], "token_b": tokens[1], "agent_cookie": other_agent_cookie},
        )
    )
    customer, agent = result["customer"], result["agent"]

    # Every signalling frame one party sent reached the other, unchanged and in order, and nothing else did.
    assert [f["type"] for f in agent.sent_relayed()][:1] == ["offer"]
    assert {f["type"] for f in customer.sent_relayed()} == {"ready", "answer", "ice"}
    assert customer.relayed() == agent.sent_relayed()
    assert agent.relayed() == customer.sent_relayed()
    assert sum(f["type"] == "ice" for f in agent.sent_relayed()) >= 2  # candidates and the end of candidates
    assert min(result["audio"]) >= 25, "media flowed both ways"
    assert not [f for f in customer.received + agent.received if f["type"] == "error"]

    # The bystanders received nothing after their greeting but the refusal of what they tried.
    for name, socket in result["others"].items():
        after_greeting = socket.received[result["greeted"][name] :]
        expected = [] if name == "customer-a" else ["error"]
        assert [f["type"] for f in after_greeting] == expected, (name, after_greeting)
        assert all(f.get("code") == "not_found" for f in after_greeting)

    call = Interaction.objects.get(pk=result["call_id"])
    assert call.conversation_id == conversation.pk
    assert call.state == Interaction.State.ENDED
    assert call.direction == "outbound"
    assert call.end_reason == "agent_hangup"
    assert call.agent_id == profile.user.pk
    assert call.created_at < call.answered_at < call.ended_at
    assert call.details["ring_seconds"] > 0
    assert call.details["talk_seconds"] > 0
    events = [
        data["event"]
        for data in TimelineEntry.objects.filter(interaction=call, kind=TimelineEntry.Kind.CHANNEL_EVENT)
        .order_by("id")
        .values_list("data", flat=True)
    ]
    assert events == ["ringing", "answered", "ended"]
