"""The signalling socket: who may connect and act on a call, validation, relaying between the two parties only."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from conversations.models import Interaction
from tests.factories import AgentFactory, UserFactory
from tests.voice.helpers import (
    agent_socket,
    close_all,
    customer_socket,
    drain,
    live_chat,
    receive_until,
    voice_socket,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 192.0.2.2 54321 typ host generation 0",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}


@pytest.fixture(autouse=True)
async def sockets_closed():
    yield
    await close_all()


async def connected_call():
    """Agent and customer sockets with an answered call between them."""
    agent, _service, session, token = await sync_to_async(live_chat)()
    agent_ws = await agent_socket(agent.user)
    customer_ws = await customer_socket(token)
    await agent_ws.send_json_to({"type": "call", "conversation": str(session.conversation.uuid)})
    ringing = await receive_until(customer_ws, "call", where=lambda f: f["call"]["state"] == "ringing")
    call_id = ringing["call"]["id"]
    await customer_ws.send_json_to({"type": "accept", "call": call_id})
    await receive_until(agent_ws, "call", where=lambda f: f["call"]["state"] == "active")
    await receive_until(customer_ws, "call", where=lambda f: f["call"]["state"] == "active")
    return agent, session, token, agent_ws, customer_ws, call_id


# --- connecting ---------------------------------------------------------------------------------------


async def test_agent_socket_gets_hello_with_ice_servers(settings):
    settings.VOICE_STUN_URLS = ["stun:stun.example.org:3478"]
    agent = await sync_to_async(AgentFactory)()
    communicator, connected, _ = await voice_socket(user=agent.user)
    assert connected
    hello = await receive_until(communicator, "hello")
    assert hello == {"type": "hello", "role": "agent", "ice_servers": [{"urls": ["stun:stun.example.org:3478"]}]}
    assert (await receive_until(communicator, "calls"))["calls"] == []


async def test_logged_in_non_agent_is_refused():
    user = await sync_to_async(UserFactory)()
    _communicator, connected, code = await voice_socket(user=user)
    assert not connected
    assert code == 4403


async def test_socket_from_foreign_origin_is_refused():
    agent = await sync_to_async(AgentFactory)()
    _communicator, connected, _ = await voice_socket(user=agent.user, origin=(b"origin", b"https://evil.example"))
    assert not connected


async def test_anonymous_socket_can_do_nothing_before_hello():
    communicator, connected, _ = await voice_socket()
    assert connected
    await communicator.send_json_to({"type": "sync"})
    error = await receive_until(communicator, "error")
    assert error["code"] == "not_authenticated"


async def test_forged_customer_token_is_refused_and_closed():
    communicator, _, _ = await voice_socket()
    await communicator.send_json_to({"type": "hello", "token": "forged:token"})
    error = await receive_until(communicator, "error")
    assert error["code"] == "invalid_session"
    assert (await communicator.receive_output(timeout=2))["type"] == "websocket.close"


# --- a call, both ways ------------------------------------------------------------------------------------


async def test_customer_sees_ringing_accepts_and_both_sides_see_active():
    _agent, session, _token, _agent_ws, _customer_ws, call_id = await connected_call()
    call = await sync_to_async(Interaction.objects.get)(pk=call_id)
    assert call.state == Interaction.State.ACTIVE
    assert call.conversation_id == session.conversation_id
    assert call.medium == "voice" and call.direction == "outbound"


async def test_customer_asks_for_a_call_and_the_assigned_agent_accepts():
    agent, _service, _session, token = await sync_to_async(live_chat)()
    agent_ws = await agent_socket(agent.user)
    customer_ws = await customer_socket(token)
    await customer_ws.send_json_to({"type": "call"})
    ringing = await receive_until(agent_ws, "call", where=lambda f: f["call"]["state"] == "ringing")
    assert ringing["call"]["incoming"] is True
    assert ringing["call"]["contact"] == "Anna Berg"
    call_id = ringing["call"]["id"]
    # The customer cannot answer their own call.
    await customer_ws.send_json_to({"type": "accept", "call": call_id})
    assert (await receive_until(customer_ws, "error"))["code"] == "rejected"
    await agent_ws.send_json_to({"type": "accept", "call": call_id})
    active = await receive_until(customer_ws, "call", where=lambda f: f["call"]["state"] == "active")
    assert active["call"]["agent"] == "Lena"
    assert active["call"]["incoming"] is False


async def test_customer_rejects_the_agents_call_and_it_is_missed():
    agent, _service, session, token = await sync_to_async(live_chat)()
    agent_ws = await agent_socket(agent.user)
    customer_ws = await customer_socket(token)
    await agent_ws.send_json_to({"type": "call", "conversation": str(session.conversation.uuid)})
    call_id = (await receive_until(customer_ws, "call"))["call"]["id"]
    await customer_ws.send_json_to({"type": "reject", "call": call_id})
    ended = await receive_until(agent_ws, "call", where=lambda f: f["call"]["state"] == "missed")
    assert ended["call"]["id"] == call_id
    call = await sync_to_async(Interaction.objects.get)(pk=call_id)
    assert call.end_reason == "customer_rejected"


async def test_offer_answer_and_ice_are_relayed_to_the_other_party():
    _agent, _session, _token, agent_ws, customer_ws, call_id = await connected_call()
    await customer_ws.send_json_to({"type": "ready", "call": call_id})
    assert await receive_until(agent_ws, "ready") == {"type": "ready", "call": call_id}
    await agent_ws.send_json_to({"type": "offer", "call": call_id, "sdp": SDP, "fresh": True})
    assert await receive_until(customer_ws, "offer") == {"type": "offer", "call": call_id, "sdp": SDP, "fresh": True}
    await customer_ws.send_json_to({"type": "answer", "call": call_id, "sdp": SDP})
    assert (await receive_until(agent_ws, "answer"))["sdp"] == SDP
    await customer_ws.send_json_to({"type": "ice", "call": call_id, "candidate": CANDIDATE})
    assert (await receive_until(agent_ws, "ice"))["candidate"] == CANDIDATE
    await agent_ws.send_json_to({"type": "ice", "call": call_id, "candidate": None})
    assert (await receive_until(customer_ws, "ice"))["candidate"] is None
    # A party never hears its own frames back.
    assert not [f for f in await drain(agent_ws) if f["type"] in ("ready", "ice", "answer")]


async def test_mute_and_video_flags_reach_the_other_side():
    _agent, _session, _token, agent_ws, customer_ws, call_id = await connected_call()
    await customer_ws.send_json_to({"type": "mute", "call": call_id, "on": True})
    frame = await receive_until(agent_ws, "call", where=lambda f: f["call"]["muted"].get("customer"))
    assert frame["call"]["muted"] == {"agent": False, "customer": True}
    await agent_ws.send_json_to({"type": "video", "call": call_id, "on": True})
    frame = await receive_until(customer_ws, "call", where=lambda f: f["call"]["video"].get("agent"))
    assert frame["call"]["video"]["agent"] is True


async def test_customer_cannot_hold_the_call():
    _agent, _session, _token, _agent_ws, customer_ws, call_id = await connected_call()
    await customer_ws.send_json_to({"type": "hold", "call": call_id, "on": True})
    assert (await receive_until(customer_ws, "error"))["code"] == "rejected"
    assert (await sync_to_async(Interaction.objects.get)(pk=call_id)).state == Interaction.State.ACTIVE


# --- authorisation: a third party -----------------------------------------------------------------------------


async def test_another_customer_can_neither_see_nor_inject_into_the_call():
    _agent, _session, _token, agent_ws, customer_ws, call_id = await connected_call()
    _other_agent, _service, _other_session, other_token = await sync_to_async(live_chat)(email="ben@example.com")
    intruder = await customer_socket(other_token)
    for frame in (
        {"type": "offer", "call": call_id, "sdp": SDP},
        {"type": "ice", "call": call_id, "candidate": CANDIDATE},
        {"type": "hangup", "call": call_id},
        {"type": "accept", "call": call_id},
    ):
        await intruder.send_json_to(frame)
        assert (await receive_until(intruder, "error"))["code"] == "not_found"
    # Nothing reached either party, and the intruder heard nothing of the real call's signalling.
    await customer_ws.send_json_to({"type": "ice", "call": call_id, "candidate": CANDIDATE})
    await receive_until(agent_ws, "ice")
    assert not [f for f in await drain(customer_ws) if f["type"] in ("offer", "ice")]
    assert not [f for f in await drain(intruder) if f["type"] in ("offer", "ice", "call")]
    assert (await sync_to_async(Interaction.objects.get)(pk=call_id)).state == Interaction.State.ACTIVE


async def test_another_agent_can_neither_join_nor_inject():
    _agent, session, _token, _agent_ws, customer_ws, call_id = await connected_call()
    other = await sync_to_async(AgentFactory)()
    intruder = await agent_socket(other.user)
    await intruder.send_json_to({"type": "offer", "call": call_id, "sdp": SDP})
    assert (await receive_until(intruder, "error"))["code"] == "not_found"
    await intruder.send_json_to({"type": "hold", "call": call_id, "on": True})
    assert (await receive_until(intruder, "error"))["code"] == "not_found"
    await intruder.send_json_to({"type": "call", "conversation": str(session.conversation.uuid)})
    assert (await receive_until(intruder, "error"))["code"] == "rejected"
    assert not [f for f in await drain(customer_ws) if f["type"] == "offer"]
    assert (await sync_to_async(Interaction.objects.get)(pk=call_id)).state == Interaction.State.ACTIVE


# --- validation: malformed frames are refused, the call goes on --------------------------------------------------


CALL = "<the call's id>"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "offer", "sdp": SDP},
        {"type": "offer", "call": "1", "sdp": SDP},
        {"type": "offer", "call": CALL, "sdp": "<script>alert(1)</script>"},
        {"type": "offer", "call": CALL, "sdp": "v=0\r\nm=audio 9 RTP 0\r\n<img src=x>\r\n"},
        {"type": "offer", "call": CALL, "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"},
        {"type": "answer", "call": CALL, "sdp": 42},
        {
            "type": "ice",
            "call": CALL,
            "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 1 typ evil", "sdpMid": "0"},
        },
        {"type": "ice", "call": CALL, "candidate": {"candidate": "<b>", "sdpMid": "0"}},
        {"type": "ice", "call": CALL, "candidate": {**CANDIDATE, "extra": "field"}},
        {"type": "ice", "call": CALL, "candidate": {**CANDIDATE, "sdpMLineIndex": "zero"}},
        {"type": "ice", "call": CALL, "candidate": "candidate:1 1 udp 1 1.2.3.4 1 typ host"},
        {"type": "mute", "call": CALL, "on": "yes"},
        {"type": "stats", "call": CALL, "stats": {"rtt_ms": -5}},
        {"type": "teleport", "call": CALL},
    ],
)
async def test_malformed_signalling_is_refused_without_disturbing_the_call(frame):
    _agent, _session, _token, agent_ws, customer_ws, call_id = await connected_call()
    frame = {key: (call_id if value == CALL else value) for key, value in frame.items()}
    await customer_ws.send_json_to(frame)
    error = await receive_until(customer_ws, "error")
    assert error["code"] in ("malformed_frame", "invalid_sdp", "invalid_candidate", "unknown_type", "rejected")
    assert not [f for f in await drain(agent_ws) if f["type"] in ("offer", "answer", "ice")]
    # The call is undisturbed: the next valid frame still goes through.
    await customer_ws.send_json_to({"type": "ice", "call": call_id, "candidate": CANDIDATE})
    assert (await receive_until(agent_ws, "ice"))["candidate"] == CANDIDATE
    assert (await sync_to_async(Interaction.objects.get)(pk=call_id)).state == Interaction.State.ACTIVE


async def test_oversized_and_non_json_frames_are_refused():
    _agent, _session, _token, _agent_ws, customer_ws, _call_id = await connected_call()
    await customer_ws.send_to(text_data="x" * (40 * 1024))
    assert (await receive_until(customer_ws, "error"))["code"] == "frame_too_large"
    await customer_ws.send_to(text_data="{not json")
    assert (await receive_until(customer_ws, "error"))["code"] == "malformed_frame"
    await customer_ws.send_to(text_data=json.dumps([1, 2]))
    assert (await receive_until(customer_ws, "error"))["code"] == "malformed_frame"


async def test_signalling_before_the_call_is_answered_is_refused():
    agent, _service, session, token = await sync_to_async(live_chat)()
    agent_ws = await agent_socket(agent.user)
    customer_ws = await customer_socket(token)
    await agent_ws.send_json_to({"type": "call", "conversation": str(session.conversation.uuid)})
    call_id = (await receive_until(customer_ws, "call"))["call"]["id"]
    await agent_ws.send_json_to({"type": "offer", "call": call_id, "sdp": SDP})
    assert (await receive_until(agent_ws, "error"))["code"] == "not_connected"


async def test_ended_call_accepts_no_more_signalling():
    _agent, _session, _token, agent_ws, customer_ws, call_id = await connected_call()
    await agent_ws.send_json_to({"type": "hangup", "call": call_id})
    await receive_until(customer_ws, "call", where=lambda f: f["call"]["state"] == "ended")
    await customer_ws.send_json_to({"type": "ice", "call": call_id, "candidate": CANDIDATE})
    assert (await receive_until(customer_ws, "error"))["code"] == "not_connected"


async def test_rate_limit_answers_with_an_error(settings):
    settings.VOICE_RATE_LIMIT_PER_10S = 5
    agent = await sync_to_async(AgentFactory)()
    communicator = await agent_socket(agent.user)
    for _ in range(8):
        await communicator.send_json_to({"type": "sync"})
    frames = await drain(communicator, timeout=0.5)
    assert any(f["type"] == "error" and f["code"] == "rate_limited" for f in frames)
