"""Call services: start, request, answer, ring timeout → missed, hold durations, flags, quality, ICE servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from agents.models import AgentProfile, AgentState
from agents.services import agent_state_set
from channels_app.voice import services
from channels_app.webchat import services as chat_services
from conversations.models import Interaction, Offer, TimelineEntry
from conversations.routing import agent_can_take, offer_accept
from tests.factories import AgentFactory
from tests.voice.helpers import live_chat

pytestmark = pytest.mark.django_db(transaction=True)


def voice_events(conversation) -> list[str]:
    return [
        data["event"]
        for data in TimelineEntry.objects.filter(
            conversation=conversation, kind=TimelineEntry.Kind.CHANNEL_EVENT
        ).values_list("data", flat=True)
    ]


# --- ICE servers --------------------------------------------------------------------------------------------


def test_no_ice_servers_by_default(settings):
    settings.VOICE_STUN_URLS = []
    settings.VOICE_TURN_URLS = []
    assert services.ice_servers() == []


def test_turn_rest_credentials_are_hmac_signed_and_expire(settings):
    settings.VOICE_STUN_URLS = ["stun:turn.example.org:3478"]
    settings.VOICE_TURN_URLS = ["turn:turn.example.org:3478?transport=udp"]
    settings.VOICE_TURN_SECRET = "s3cret"
    settings.VOICE_TURN_TTL_SECONDS = 600
    stun, turn = services.ice_servers(user_id="abc")
    assert stun == {"urls": ["stun:turn.example.org:3478"]}
    expiry, user = turn["username"].split(":")
    assert user == "abc"
    assert abs(int(expiry) - (timezone.now().timestamp() + 600)) < 5
    expected = base64.b64encode(hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected


def test_turn_without_secret_has_no_credentials(settings):
    settings.VOICE_TURN_URLS = ["turn:turn.example.org"]
    settings.VOICE_TURN_SECRET = ""
    assert services.ice_servers()[-1] == {"urls": ["turn:turn.example.org"]}


# --- agent calls from a chat --------------------------------------------------------------------------------


def test_agent_call_is_a_new_outbound_voice_interaction_in_the_same_conversation():
    agent, _service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    assert call.conversation_id == session.conversation_id
    assert (call.medium, call.direction, call.state) == ("voice", "outbound", Interaction.State.OFFERED)
    assert call.agent_id == agent.user.pk
    assert session.interaction.medium == "chat"
    assert voice_events(session.conversation) == ["ringing"]


def test_only_the_assigned_agent_may_call():
    _agent, _service, session, _token = live_chat()
    other = AgentFactory()
    with pytest.raises(ValidationError):
        services.call_start_outbound(conversation=session.conversation, agent_user=other.user)


def test_calls_need_a_live_chat_to_reach_the_customer():
    agent, _service, session, _token = live_chat()
    chat_services.chat_end(session=session, reason="agent_ended", actor=agent.user)
    with pytest.raises(ValidationError):
        services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    with pytest.raises(ValidationError):
        services.call_request(conversation=session.conversation)


def test_one_call_at_a_time_per_conversation():
    agent, _service, session, _token = live_chat()
    services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    with pytest.raises(ValidationError):
        services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    with pytest.raises(ValidationError):
        services.call_request(conversation=session.conversation)


def test_customer_hangs_up_and_the_chat_continues_then_a_later_call_works():
    agent, _service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    services.call_answer(call_id=call.pk, role="customer")
    ended = services.call_hangup(call_id=call.pk, role="customer")
    assert ended.state == Interaction.State.ENDED
    session.interaction.refresh_from_db()
    assert session.interaction.state == Interaction.State.ACTIVE
    chat_services.chat_customer_message(session=session, text="Thanks, back to chat")
    again = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    assert again.pk != call.pk and again.conversation_id == call.conversation_id


# --- the customer asks for a call ---------------------------------------------------------------------------


def test_customer_request_rings_the_assigned_agent():
    agent, _service, session, _token = live_chat()
    call = services.call_request(conversation=session.conversation)
    assert (call.direction, call.state, call.agent_id) == ("inbound", Interaction.State.OFFERED, agent.user.pk)
    with pytest.raises(ValidationError):
        services.call_answer(call_id=call.pk, role="customer")
    answered = services.call_answer(call_id=call.pk, role="agent", user=agent.user)
    assert answered.state == Interaction.State.ACTIVE
    assert answered.details["ring_seconds"] >= 0


def test_customer_request_without_a_free_agent_is_queued_and_routed():
    agent, service, session, _token = live_chat()
    AgentProfile.objects.filter(pk=agent.pk).update(state=AgentState.LOGGED_OUT)
    other = AgentFactory()
    other.services.add(service)
    agent_state_set(agent=other, state=AgentState.READY)
    call = services.call_request(conversation=session.conversation)
    offer = Offer.objects.get(interaction=call, state=Offer.State.PENDING)
    assert offer.agent_id == other.user.pk
    answered = offer_accept(offer_id=offer.pk, agent_user=other.user)
    assert answered.state == Interaction.State.ACTIVE


def test_agent_rejects_the_customers_call():
    agent, _service, session, _token = live_chat()
    call = services.call_request(conversation=session.conversation)
    rejected = services.call_reject(call_id=call.pk, role="agent", user=agent.user)
    assert rejected.state == Interaction.State.MISSED
    assert rejected.end_reason == "agent_rejected"


def test_customer_giving_up_while_ringing_abandons_the_call():
    _agent, _service, session, _token = live_chat()
    call = services.call_request(conversation=session.conversation)
    assert services.call_hangup(call_id=call.pk, role="customer").state == Interaction.State.ABANDONED


# --- ring timeout -------------------------------------------------------------------------------------------


def test_unanswered_call_times_out_as_missed(settings):
    settings.VOICE_RING_TIMEOUT_SECONDS = 30
    agent, _service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    assert services.call_ring_expire(call_id=call.pk) is False, "not yet due"
    Interaction.objects.filter(pk=call.pk).update(created_at=timezone.now() - timedelta(seconds=31))
    assert services.call_ring_expire(call_id=call.pk) is True
    call.refresh_from_db()
    assert call.state == Interaction.State.MISSED
    assert call.end_reason == "no_answer"
    assert voice_events(session.conversation) == ["ringing", "missed"]


def test_ring_sweep_marks_overdue_calls_missed_but_leaves_routing_offers_alone(settings):
    settings.VOICE_RING_TIMEOUT_SECONDS = 30
    agent, _service, session, _token = live_chat()
    ringing = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    _agent2, _service2, session2, _token2 = live_chat(email="ben@example.com")
    AgentProfile.objects.filter(user=session2.conversation.assigned_agent).update(state=AgentState.LOGGED_OUT)
    routed = services.call_request(conversation=session2.conversation)
    Interaction.objects.filter(pk__in=[ringing.pk, routed.pk]).update(created_at=timezone.now() - timedelta(seconds=60))
    assert services.calls_ring_sweep() == 1
    ringing.refresh_from_db()
    routed.refresh_from_db()
    assert ringing.state == Interaction.State.MISSED
    assert routed.state in (Interaction.State.QUEUED, Interaction.State.OFFERED)


def test_call_events_reach_both_parties_voice_groups_after_commit(django_capture_on_commit_callbacks):
    from asgiref.sync import async_to_sync, sync_to_async
    from channels.layers import get_channel_layer

    from channels_app.voice.events import voice_agent_group, voice_conversation_group

    agent, _service, session, _token = live_chat()

    async def scenario():
        # One event loop for the layer's channels, as a consumer has (the pub/sub layer requires it).
        layer = get_channel_layer()
        agent_channel = await layer.new_channel()
        customer_channel = await layer.new_channel()
        await layer.group_add(voice_agent_group(agent.user.pk), agent_channel)
        await layer.group_add(voice_conversation_group(session.conversation.uuid), customer_channel)

        def start():
            with django_capture_on_commit_callbacks(execute=True):
                return services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)

        call = await sync_to_async(start)()
        assert await layer.receive(agent_channel) == {"type": "voice.call", "call": call.pk}
        assert await layer.receive(customer_channel) == {"type": "voice.call", "call": call.pk}

    async_to_sync(scenario)()


# --- hold, flags, quality -----------------------------------------------------------------------------------


def test_hold_and_resume_record_timeline_entries_with_durations():
    agent, _service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    services.call_answer(call_id=call.pk, role="customer")
    held = services.call_hold(call_id=call.pk, on=True, user=agent.user)
    assert held.state == Interaction.State.ON_HOLD
    details = held.details
    details["held_at"] = (timezone.now() - timedelta(seconds=12)).isoformat()
    Interaction.objects.filter(pk=call.pk).update(details=details)
    resumed = services.call_hold(call_id=call.pk, on=False, user=agent.user)
    assert resumed.state == Interaction.State.ACTIVE
    assert resumed.details["hold_seconds"] >= 12
    entry = TimelineEntry.objects.filter(kind="channel_event", data__event="resumed").get()
    assert entry.data["duration"] >= 12
    ended = services.call_hangup(call_id=call.pk, role="agent", user=agent.user)
    last = TimelineEntry.objects.filter(kind="channel_event").order_by("-id").first()
    assert last.data["event"] == "ended" and last.data["hold_seconds"] >= 12
    assert ended.details["talk_seconds"] >= 0


def test_only_the_calls_agent_may_hold():
    agent, _service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    services.call_answer(call_id=call.pk, role="customer")
    with pytest.raises(ValidationError):
        services.call_hold(call_id=call.pk, on=True, user=AgentFactory().user)


def test_video_turns_the_call_into_video_and_back_is_recorded():
    agent, _service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    services.call_answer(call_id=call.pk, role="customer")
    on = services.call_flag(call_id=call.pk, role="customer", flag="video", on=True)
    assert on.details["video"]["customer"] is True and on.medium == "video"
    off = services.call_flag(call_id=call.pk, role="customer", flag="video", on=False)
    assert off.details["video"]["customer"] is False
    assert voice_events(session.conversation)[-2:] == ["video_on", "video_off"]


def test_quality_figures_are_stored_and_validated():
    agent, _service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    services.call_answer(call_id=call.pk, role="customer")
    services.call_hangup(call_id=call.pk, role="agent", user=agent.user)
    stored = services.call_quality_record(
        call_id=call.pk, role="agent", stats={"rtt_ms": 12.5, "jitter_ms": 3, "packets_lost": 2, "loss_percent": 0.4}
    )
    assert stored.details["quality"]["agent"]["rtt_ms"] == 12.5
    with pytest.raises(ValidationError):
        services.call_quality_record(call_id=call.pk, role="agent", stats={"rtt_ms": "fast"})


# --- capacity: an agent on a call ---------------------------------------------------------------------------


def test_agent_on_a_call_gets_no_chat_offer_unless_the_service_allows():
    agent, service, session, _token = live_chat()
    call = services.call_start_outbound(conversation=session.conversation, agent_user=agent.user)
    services.call_answer(call_id=call.pk, role="customer")
    chat = Interaction(medium="chat", service=service)
    profile = AgentProfile.objects.get(pk=agent.pk)
    assert agent_can_take(profile=profile, interaction=chat, service=service) is False
    service.chat_during_call = True
    service.share_voice = 50
    service.save()
    assert agent_can_take(profile=profile, interaction=chat, service=service) is True
