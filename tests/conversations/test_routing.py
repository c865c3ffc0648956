"""Routing: queue, offers, capacity, accept/reject/expiry, transfer, After Call Work, and races."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import OperationalError, close_old_connections, connection
from django.db.models import Count, Q
from django.utils import timezone

from agents.models import AgentProfile, AgentState, NotReadyReason
from agents.services import agent_state_set, agents_acw_expire_due
from channels_app.webchat.services import chat_start
from conversations.models import Conversation, Direction, Interaction, Medium, Offer, Service, TimelineEntry
from conversations.routing import (
    REJECT_COOLDOWN,
    agent_load,
    conversation_transfer,
    offer_accept,
    offer_expire,
    offer_reject,
    offers_expire_due,
    route_next,
    route_service,
    routing_sweep,
)
from conversations.services import conversation_close, interaction_end, interaction_start
from core import realtime
from tests.factories import AgentFactory, ConversationFactory, DispositionFactory, NotReadyReasonFactory, ServiceFactory

ON_POSTGRESQL = connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def _quiet_channel_layer(monkeypatch):
    """Events are asserted in test_events.py; here they go nowhere."""
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def scheduled(monkeypatch) -> dict[str, list]:
    """Timer tasks (offer expiry, end of wrap-up) are recorded instead of sent to the broker."""
    calls: dict[str, list] = {"offer_expire": [], "agent_acw_expire": []}
    lock = threading.Lock()

    def recorder(name):
        def apply_async(args=None, countdown=None, **kwargs):
            with lock:
                calls[name].append((tuple(args or ()), countdown))

        return apply_async

    monkeypatch.setattr("conversations.tasks.offer_expire.apply_async", recorder("offer_expire"))
    monkeypatch.setattr("agents.tasks.agent_acw_expire.apply_async", recorder("agent_acw_expire"))
    return calls


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the block and then its on-commit callbacks (routing runs on commit)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def service(db) -> Service:
    # No wrap-up unless a test asks for it: agents go straight back to Ready.
    return ServiceFactory(wrapup_seconds=0, offer_timeout_seconds=20)


def _agent(*services: Service, state: str = AgentState.READY, capacity: int = 100) -> AgentProfile:
    profile = AgentFactory(capacity=capacity)
    profile.services.set(services)
    if state == AgentState.NOT_READY:
        agent_state_set(agent=profile, state=state, reason=NotReadyReasonFactory(code="break"))
    elif state != AgentState.LOGGED_OUT:
        agent_state_set(agent=profile, state=state, by_system=True)
    profile.refresh_from_db()
    return profile


def _queued(service: Service, medium: str = Medium.CHAT) -> Interaction:
    conversation = ConversationFactory(service=service)
    return interaction_start(conversation=conversation, medium=medium, direction=Direction.INBOUND, service=service)


def _state(profile: AgentProfile) -> str:
    profile.refresh_from_db()
    return profile.state


def _pending(interaction: Interaction) -> Offer:
    return Offer.objects.get(interaction=interaction, state=Offer.State.PENDING)


def _overdue(*offers: Offer) -> None:
    now = timezone.now()
    Offer.objects.filter(pk__in=[offer.pk for offer in offers]).update(
        created_at=now - timedelta(seconds=30), expires_at=now - timedelta(seconds=1)
    )


def _accepted_chat(service: Service, profile: AgentProfile, committed) -> Interaction:
    _queued(service)
    with committed():
        offer = route_next(service=service)
        assert offer.agent_id == profile.user_id
        return offer_accept(offer_id=offer.pk, agent_user=profile.user)


# --- who is offered ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_new_chat_is_queued_and_offered_on_commit_to_a_ready_agent(service, committed, scheduled):
    profile = _agent(service)

    with committed():
        session = chat_start(service=service, data={"name": "Ada Lovelace", "question": "Hello?"})
        assert session.interaction.state == Interaction.State.QUEUED

    interaction = Interaction.objects.get(pk=session.interaction_id)
    offer = _pending(interaction)
    assert (interaction.state, interaction.agent_id) == (Interaction.State.OFFERED, profile.user_id)
    assert offer.agent_id == profile.user_id
    assert offer.expires_at == offer.created_at + timedelta(seconds=service.offer_timeout_seconds)
    assert scheduled["offer_expire"] == [((offer.pk,), service.offer_timeout_seconds)]


@pytest.mark.django_db
def test_chat_without_a_free_agent_stays_in_the_queue(service, committed):
    with committed():
        session = chat_start(service=service, data={"name": "Ada", "question": "Hello?"})

    assert Interaction.objects.get(pk=session.interaction_id).state == Interaction.State.QUEUED
    assert not Offer.objects.exists()


@pytest.mark.django_db
def test_offer_goes_only_to_a_ready_agent_of_the_service(service, committed):
    other_service = ServiceFactory()
    _agent(service, state=AgentState.NOT_READY)
    _agent(service, state=AgentState.LOGGED_OUT)
    _agent(service, state=AgentState.AFTER_CALL_WORK)
    _agent(other_service)
    interaction = _queued(service)

    assert route_next(service=service) is None
    interaction.refresh_from_db()
    assert interaction.state == Interaction.State.QUEUED

    ready = _agent(service)
    offer = route_next(service=service)

    assert offer.agent_id == ready.user_id
    assert offer.interaction_id == interaction.pk


@pytest.mark.django_db
def test_the_oldest_queued_interaction_is_offered_first(service):
    first, second = _queued(service), _queued(service)
    _agent(service)

    assert route_next(service=service).interaction_id == first.pk
    assert route_next(service=service).interaction_id == second.pk


@pytest.mark.django_db
def test_the_longest_idle_agent_is_offered_first(service):
    newer, older = _agent(service), _agent(service)
    now = timezone.now()
    AgentProfile.objects.filter(pk=older.pk).update(idle_since=now - timedelta(minutes=10))
    AgentProfile.objects.filter(pk=newer.pk).update(idle_since=now - timedelta(minutes=1))
    for _i in range(3):
        _queued(service)

    offers = route_service(service=service)

    # Each offer makes its agent the most recently offered: work is spread in turn.
    assert [offer.agent_id for offer in offers] == [older.user_id, newer.user_id, older.user_id]


@pytest.mark.django_db
def test_a_busy_agent_is_not_preferred_over_a_colleague_offered_less_recently(service, committed):
    first, second = _agent(service), _agent(service)
    AgentProfile.objects.filter(pk=first.pk).update(idle_since=timezone.now() - timedelta(minutes=5))

    _accepted_chat(service, first, committed)
    _accepted_chat(service, second, committed)
    assert (_state(first), _state(second)) == (AgentState.BUSY, AgentState.BUSY)
    _queued(service)

    assert route_next(service=service).agent_id == first.user_id


# --- capacity -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_four_chats_at_25_percent_fill_an_agent_and_the_fifth_stays_queued(service):
    profile = _agent(service)
    chats = [_queued(service) for _i in range(5)]

    offers = route_service(service=service)

    assert [offer.interaction_id for offer in offers] == [chat.pk for chat in chats[:4]]
    assert agent_load(user_id=profile.user_id) == (100, False)
    chats[4].refresh_from_db()
    assert chats[4].state == Interaction.State.QUEUED


@pytest.mark.django_db
def test_capacity_shares_come_from_the_service():
    service = ServiceFactory(share_chat=50, wrapup_seconds=0)
    profile = _agent(service, capacity=150)
    for _i in range(4):
        _queued(service)

    assert len(route_service(service=service)) == 3
    assert agent_load(user_id=profile.user_id) == (150, False)


@pytest.mark.django_db
def test_an_agent_with_zero_capacity_is_never_offered_work(service):
    _agent(service, capacity=0)
    _queued(service)

    assert route_next(service=service) is None


@pytest.mark.django_db
def test_a_call_blocks_chats_unless_the_service_allows_chat_during_a_call(service, committed):
    profile = _agent(service, capacity=200)
    call = _queued(service, medium=Medium.VOICE)
    with committed():
        offer_accept(offer_id=route_next(service=service).pk, agent_user=profile.user)
    assert agent_load(user_id=profile.user_id) == (100, True)
    chat = _queued(service)

    assert route_next(service=service) is None

    Service.objects.filter(pk=service.pk).update(chat_during_call=True)
    service.refresh_from_db()
    offer = route_next(service=service)

    assert (offer.interaction_id, offer.agent_id) == (chat.pk, profile.user_id)
    assert Interaction.objects.get(pk=call.pk).state == Interaction.State.ACTIVE


@pytest.mark.django_db
def test_a_call_does_not_fit_beside_chats_beyond_capacity(service, committed):
    profile = _agent(service)
    _accepted_chat(service, profile, committed)
    _queued(service, medium=Medium.VOICE)

    assert route_next(service=service) is None
    assert agent_load(user_id=profile.user_id) == (25, False)


# --- accept, reject, expire -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_accept_makes_the_interaction_active_the_conversation_assigned_and_the_agent_busy(service, committed):
    profile = _agent(service)
    interaction = _queued(service)
    offer = route_next(service=service)

    with committed():
        accepted = offer_accept(offer_id=offer.pk, agent_user=profile.user)

    offer.refresh_from_db()
    accepted.refresh_from_db()
    assert offer.state == Offer.State.ACCEPTED
    assert offer.responded_at is not None
    assert (accepted.pk, accepted.state, accepted.agent_id) == (
        interaction.pk,
        Interaction.State.ACTIVE,
        profile.user_id,
    )
    assert accepted.answered_at is not None
    assert accepted.conversation.assigned_agent_id == profile.user_id
    assert _state(profile) == AgentState.BUSY
    kinds = accepted.conversation.timeline.values_list("kind", flat=True)
    assert TimelineEntry.Kind.INTERACTION_ANSWERED in kinds


@pytest.mark.django_db
def test_an_offer_cannot_be_accepted_by_another_agent_or_twice(service, committed):
    profile, other = _agent(service), _agent(ServiceFactory())
    _queued(service)
    offer = route_next(service=service)

    with pytest.raises(ValidationError):
        offer_accept(offer_id=offer.pk, agent_user=other.user)
    with committed():
        offer_accept(offer_id=offer.pk, agent_user=profile.user)
    with pytest.raises(ValidationError):
        offer_accept(offer_id=offer.pk, agent_user=profile.user)
    with pytest.raises(ValidationError):
        offer_reject(offer_id=offer.pk, agent_user=profile.user)


@pytest.mark.django_db
def test_reject_requeues_and_offers_to_another_agent_not_the_rejecter(service, committed):
    rejecter, colleague = _agent(service), _agent(service)
    AgentProfile.objects.filter(pk=rejecter.pk).update(idle_since=timezone.now() - timedelta(minutes=5))
    interaction = _queued(service)
    offer = route_next(service=service)
    assert offer.agent_id == rejecter.user_id

    with committed():
        offer_reject(offer_id=offer.pk, agent_user=rejecter.user)

    offer.refresh_from_db()
    assert offer.state == Offer.State.REJECTED
    assert _pending(interaction).agent_id == colleague.user_id
    # Rejecting is not missing: the agent stays Ready.
    assert _state(rejecter) == AgentState.READY


@pytest.mark.django_db
def test_the_rejecter_is_not_offered_the_same_interaction_again_within_the_cooldown(service, committed):
    rejecter = _agent(service)
    interaction = _queued(service)
    offer = route_next(service=service)

    with committed():
        offer_reject(offer_id=offer.pk, agent_user=rejecter.user)

    interaction.refresh_from_db()
    assert interaction.state == Interaction.State.QUEUED
    assert route_next(service=service) is None

    Offer.objects.filter(pk=offer.pk).update(responded_at=timezone.now() - REJECT_COOLDOWN - timedelta(seconds=1))
    assert route_next(service=service).agent_id == rejecter.user_id


@pytest.mark.django_db
def test_expired_offer_requeues_and_sets_the_agent_not_ready_missed(service, committed):
    missed_agent, colleague = _agent(service), _agent(service)
    AgentProfile.objects.filter(pk=missed_agent.pk).update(idle_since=timezone.now() - timedelta(minutes=5))
    interaction = _queued(service)
    offer = route_next(service=service)
    assert offer.agent_id == missed_agent.user_id
    _overdue(offer)

    with committed():
        assert offer_expire(offer_id=offer.pk) is True

    offer.refresh_from_db()
    missed_agent.refresh_from_db()
    assert offer.state == Offer.State.EXPIRED
    assert missed_agent.state == AgentState.NOT_READY
    assert missed_agent.not_ready_reason.code == NotReadyReason.MISSED
    assert missed_agent.not_ready_reason.is_system
    assert _pending(interaction).agent_id == colleague.user_id


@pytest.mark.django_db
def test_an_offer_not_yet_due_does_not_expire(service):
    profile = _agent(service)
    _queued(service)
    offer = route_next(service=service)

    assert offer_expire(offer_id=offer.pk) is False

    offer.refresh_from_db()
    assert offer.state == Offer.State.PENDING
    assert _state(profile) == AgentState.READY


@pytest.mark.django_db
def test_accepting_an_expired_offer_is_refused_and_records_the_miss(service, committed):
    profile = _agent(service)
    interaction = _queued(service)
    offer = route_next(service=service)
    _overdue(offer)

    with committed(), pytest.raises(ValidationError):
        offer_accept(offer_id=offer.pk, agent_user=profile.user)

    offer.refresh_from_db()
    interaction.refresh_from_db()
    assert offer.state == Offer.State.EXPIRED
    assert interaction.state == Interaction.State.QUEUED
    assert _state(profile) == AgentState.NOT_READY


@pytest.mark.django_db
def test_offers_expire_due_expires_only_overdue_offers(service, committed):
    agents = [_agent(service) for _i in range(3)]
    for _i in range(3):
        _queued(service)
    offers = route_service(service=service)
    assert sorted(o.agent_id for o in offers) == sorted(a.user_id for a in agents)
    overdue = offers[:2]
    _overdue(*overdue)

    with committed():
        assert offers_expire_due() == 2

    states = dict(Offer.objects.values_list("pk", "state"))
    assert [states[o.pk] for o in offers] == [Offer.State.EXPIRED, Offer.State.EXPIRED, Offer.State.PENDING]
    assert sorted(_state(a) for a in agents) == sorted([AgentState.NOT_READY, AgentState.NOT_READY, AgentState.READY])


@pytest.mark.django_db
def test_routing_sweep_expires_overdue_offers_and_routes_every_queue(service, committed):
    """The queue lives in the database: chats queued while nobody was routing are offered by the sweep."""
    second_service = ServiceFactory(wrapup_seconds=0)
    stale_agent = _agent(service)
    stale = _queued(service)
    stale_offer = route_next(service=service)
    _overdue(stale_offer)
    waiting = _queued(second_service)
    helper = _agent(service, second_service)
    # The helper became Ready without any routing running (as across a restart).

    with committed():
        assert routing_sweep() == 1

    assert _state(stale_agent) == AgentState.NOT_READY
    assert _pending(stale).agent_id == helper.user_id
    assert _pending(waiting).agent_id == helper.user_id


@pytest.mark.django_db
def test_inactive_services_are_not_routed_by_the_sweep(service):
    Service.objects.filter(pk=service.pk).update(is_active=False)
    _agent(service)
    interaction = _queued(service)

    routing_sweep()

    interaction.refresh_from_db()
    assert interaction.state == Interaction.State.QUEUED


# --- transfer --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_transfer_to_an_agent_offers_the_chat_with_a_note_and_releases_the_sender(service, committed, scheduled):
    sender, receiver = _agent(service), _agent(service)
    AgentProfile.objects.filter(pk=sender.pk).update(idle_since=timezone.now() - timedelta(minutes=5))
    interaction = _accepted_chat(service, sender, committed)
    conversation = interaction.conversation

    with committed():
        offers = conversation_transfer(
            conversation=conversation, from_agent=sender.user, to_agent=receiver.user, note=" Wants a refund "
        )

    (offer,) = offers
    assert (offer.agent_id, offer.transferred_by_id, offer.transfer_note) == (
        receiver.user_id,
        sender.user_id,
        "Wants a refund",
    )
    assert _pending(interaction) == offer
    interaction.refresh_from_db()
    conversation.refresh_from_db()
    assert (interaction.state, interaction.agent_id) == (Interaction.State.OFFERED, receiver.user_id)
    assert conversation.assigned_agent_id is None
    assert _state(sender) == AgentState.READY
    assert agent_load(user_id=sender.user_id) == (0, False)
    entry = conversation.timeline.get(kind=TimelineEntry.Kind.TRANSFERRED)
    assert entry.actor_id == sender.user_id
    assert entry.data == {"to_agent": str(receiver), "to_service": "", "note": "Wants a refund"}
    assert ((offer.pk,), service.offer_timeout_seconds) in scheduled["offer_expire"]

    with committed():
        offer_accept(offer_id=offer.pk, agent_user=receiver.user)

    interaction.refresh_from_db()
    conversation.refresh_from_db()
    assert (interaction.state, interaction.agent_id) == (Interaction.State.ACTIVE, receiver.user_id)
    assert conversation.assigned_agent_id == receiver.user_id
    assert conversation.timeline.filter(kind=TimelineEntry.Kind.ASSIGNED, actor=receiver.user).exists()
    assert _state(receiver) == AgentState.BUSY


@pytest.mark.django_db
def test_transfer_to_a_service_queues_the_chat_there(service, committed):
    sender = _agent(service)
    interaction = _accepted_chat(service, sender, committed)
    billing = ServiceFactory(name="Billing", wrapup_seconds=0)
    billing_agent = _agent(billing)

    with committed():
        assert (
            conversation_transfer(conversation=interaction.conversation, from_agent=sender.user, to_service=billing)
            == []
        )

    interaction.refresh_from_db()
    assert interaction.service_id == billing.pk
    assert interaction.conversation.service_id == billing.pk
    assert _pending(interaction).agent_id == billing_agent.user_id
    entry = interaction.conversation.timeline.get(kind=TimelineEntry.Kind.TRANSFERRED)
    assert entry.data["to_service"] == "Billing"
    assert _state(sender) == AgentState.READY


@pytest.mark.django_db
def test_transfer_to_a_service_without_free_agents_waits_in_its_queue(service, committed):
    sender = _agent(service)
    interaction = _accepted_chat(service, sender, committed)
    billing = ServiceFactory(wrapup_seconds=0)

    with committed():
        conversation_transfer(conversation=interaction.conversation, from_agent=sender.user, to_service=billing)

    interaction.refresh_from_db()
    assert (interaction.state, interaction.agent_id, interaction.service_id) == (
        Interaction.State.QUEUED,
        None,
        billing.pk,
    )


@pytest.mark.django_db
def test_rejecting_a_transferred_offer_requeues_it_in_the_service(service, committed):
    sender, receiver, colleague = _agent(service), _agent(service), _agent(service)
    now = timezone.now()
    AgentProfile.objects.filter(pk=sender.pk).update(idle_since=now - timedelta(minutes=9))
    AgentProfile.objects.filter(pk=colleague.pk).update(idle_since=now - timedelta(minutes=5))
    interaction = _accepted_chat(service, sender, committed)
    with committed():
        (offer,) = conversation_transfer(
            conversation=interaction.conversation, from_agent=sender.user, to_agent=receiver.user
        )

    with committed():
        offer_reject(offer_id=offer.pk, agent_user=receiver.user)

    next_offer = _pending(interaction)
    assert next_offer.agent_id == colleague.user_id
    assert next_offer.transferred_by_id is None


@pytest.mark.django_db
def test_customer_leaving_during_a_transfer_offer_needs_no_wrapup_from_the_receiver(committed):
    service = ServiceFactory(wrapup_seconds=60)
    sender, receiver = _agent(service), _agent(service)
    AgentProfile.objects.filter(pk=sender.pk).update(idle_since=timezone.now() - timedelta(minutes=5))
    interaction = _accepted_chat(service, sender, committed)
    with committed():
        (offer,) = conversation_transfer(
            conversation=interaction.conversation, from_agent=sender.user, to_agent=receiver.user
        )

    with committed():
        ended = interaction_end(interaction=interaction, reason="customer_left")

    offer.refresh_from_db()
    assert (ended.state, offer.state) == (Interaction.State.ENDED, Offer.State.CANCELLED)
    # The receiver never held the chat: still Ready, not in After Call Work.
    assert _state(receiver) == AgentState.READY


@pytest.mark.django_db
def test_transfer_refusals(service, committed):
    sender, receiver, stranger = _agent(service), _agent(service), _agent(service)
    interaction = _accepted_chat(service, sender, committed)
    conversation = interaction.conversation
    gone = _agent(service, state=AgentState.LOGGED_OUT)
    cases = [
        {"from_agent": sender.user},
        {"from_agent": sender.user, "to_agent": receiver.user, "to_service": service},
        {"from_agent": stranger.user, "to_agent": receiver.user},
        {"from_agent": sender.user, "to_agent": sender.user},
        {"from_agent": sender.user, "to_agent": gone.user},
    ]

    for kwargs in cases:
        with pytest.raises(ValidationError):
            conversation_transfer(conversation=conversation, **kwargs)

    interaction.refresh_from_db()
    assert (interaction.state, interaction.agent_id) == (Interaction.State.ACTIVE, sender.user_id)
    assert not conversation.timeline.filter(kind=TimelineEntry.Kind.TRANSFERRED).exists()


@pytest.mark.django_db
def test_transfer_with_nothing_live_is_refused(service, committed):
    sender, receiver = _agent(service), _agent(service)
    interaction = _accepted_chat(service, sender, committed)
    with committed():
        interaction_end(interaction=interaction)

    with pytest.raises(ValidationError):
        conversation_transfer(conversation=interaction.conversation, from_agent=sender.user, to_agent=receiver.user)


# --- end of work, After Call Work ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_ending_an_interaction_frees_capacity_and_routes_the_next_queued_chat(service, committed):
    profile = _agent(service, capacity=25)
    first = _accepted_chat(service, profile, committed)
    second = _queued(service)
    assert route_next(service=service) is None

    with committed():
        interaction_end(interaction=first, reason="agent_ended", actor=profile.user)

    assert _pending(second).agent_id == profile.user_id
    # No wrap-up in this service: the agent went Ready and got the next chat.
    assert _state(profile) == AgentState.READY


@pytest.mark.django_db
def test_an_agent_finishing_all_work_goes_back_to_ready(service, committed):
    profile = _agent(service)
    chats = [_accepted_chat(service, profile, committed) for _i in range(2)]

    with committed():
        interaction_end(interaction=chats[0])
    assert _state(profile) == AgentState.BUSY

    with committed():
        interaction_end(interaction=chats[1])
    assert _state(profile) == AgentState.READY


@pytest.mark.django_db
def test_ending_the_last_answered_interaction_starts_after_call_work_with_its_timer(committed, scheduled):
    service = ServiceFactory(wrapup_seconds=45)
    profile = _agent(service)
    chats = [_accepted_chat(service, profile, committed) for _i in range(2)]

    with committed():
        interaction_end(interaction=chats[0])
    assert _state(profile) == AgentState.BUSY

    before = timezone.now()
    with committed():
        interaction_end(interaction=chats[1])
    after = timezone.now()

    profile.refresh_from_db()
    assert profile.state == AgentState.AFTER_CALL_WORK
    assert before + timedelta(seconds=45) <= profile.acw_until <= after + timedelta(seconds=45)
    assert scheduled["agent_acw_expire"] == [((profile.pk,), 45)]
    # In After Call Work nothing is offered.
    _queued(service)
    assert route_next(service=service) is None


@pytest.mark.django_db
def test_closing_the_conversation_with_a_disposition_ends_after_call_work(committed):
    solved = DispositionFactory(name="Problem solved")
    service = ServiceFactory(wrapup_seconds=60)
    service.dispositions.add(solved)
    profile = _agent(service)
    interaction = _accepted_chat(service, profile, committed)
    with committed():
        interaction_end(interaction=interaction)
    assert _state(profile) == AgentState.AFTER_CALL_WORK
    waiting = _queued(service)

    with committed():
        conversation_close(
            conversation=interaction.conversation, disposition=solved, notes="Rebooked", closed_by=profile.user
        )

    profile.refresh_from_db()
    assert (profile.state, profile.acw_until) == (AgentState.READY, None)
    conversation = Conversation.objects.get(pk=interaction.conversation_id)
    assert (conversation.status, conversation.disposition) == (Conversation.Status.CLOSED, solved)
    # Ready again: the waiting chat is offered.
    assert _pending(waiting).agent_id == profile.user_id


@pytest.mark.django_db
def test_after_call_work_waits_for_every_conversation_to_be_wrapped_up(committed):
    service = ServiceFactory(wrapup_seconds=60)
    profile = _agent(service)
    first = _accepted_chat(service, profile, committed)
    second = _accepted_chat(service, profile, committed)
    with committed():
        interaction_end(interaction=first)
        interaction_end(interaction=second)
    assert _state(profile) == AgentState.AFTER_CALL_WORK

    with committed():
        conversation_close(conversation=first.conversation, closed_by=profile.user)
    assert _state(profile) == AgentState.AFTER_CALL_WORK

    with committed():
        conversation_close(conversation=second.conversation, closed_by=profile.user)
    assert _state(profile) == AgentState.READY


@pytest.mark.django_db
def test_agents_acw_expire_due_ends_overdue_after_call_work(committed):
    service = ServiceFactory(wrapup_seconds=30)
    overdue, running = _agent(service), _agent(service)
    for profile in (overdue, running):
        interaction = _accepted_chat(service, profile, committed)
        with committed():
            interaction_end(interaction=interaction)
        assert _state(profile) == AgentState.AFTER_CALL_WORK
    AgentProfile.objects.filter(pk=overdue.pk).update(acw_until=timezone.now() - timedelta(seconds=1))

    with committed():
        agents_acw_expire_due()

    assert (_state(overdue), _state(running)) == (AgentState.READY, AgentState.AFTER_CALL_WORK)


@pytest.mark.django_db
def test_an_agent_who_chose_not_ready_while_busy_stays_not_ready_after_the_work(committed):
    service = ServiceFactory(wrapup_seconds=30)
    profile = _agent(service)
    interaction = _accepted_chat(service, profile, committed)
    lunch = NotReadyReasonFactory(code="lunch")
    agent_state_set(agent=profile, state=AgentState.NOT_READY, reason=lunch, changed_by=profile.user)
    _queued(service)
    assert route_next(service=service) is None

    with committed():
        interaction_end(interaction=interaction)

    profile.refresh_from_db()
    assert (profile.state, profile.not_ready_reason) == (AgentState.NOT_READY, lunch)


@pytest.mark.django_db
def test_customer_leaving_a_queued_chat_abandons_it_and_cancels_its_offer(committed):
    service = ServiceFactory(wrapup_seconds=60)
    profile = _agent(service)
    interaction = _queued(service)
    offer = route_next(service=service)

    with committed():
        ended = interaction_end(interaction=interaction, reason="customer_left")

    offer.refresh_from_db()
    assert (ended.state, ended.end_reason) == (Interaction.State.ABANDONED, "customer_left")
    assert offer.state == Offer.State.CANCELLED
    # Nothing was answered: no wrap-up, no missed offer.
    assert _state(profile) == AgentState.READY
    assert agent_load(user_id=profile.user_id) == (0, False)


@pytest.mark.django_db
def test_an_unanswered_interaction_ended_for_another_reason_is_missed(service):
    interaction = _queued(service)

    assert interaction_end(interaction=interaction, reason="timeout").state == Interaction.State.MISSED


# --- concurrency ---------------------------------------------------------------------------------------------------
#
# PostgreSQL runs these truly in parallel (row locks, SKIP LOCKED). SQLite takes
# its write lock at BEGIN (transaction_mode IMMEDIATE) and waits up to the
# configured timeout for it, so its writers run one at a time; the same tests
# check that the single-writer path keeps the same invariants and does not
# fail with "database is locked".

THREADS = 8


def _run_at_once(target, count: int) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads released together; each closes its connection."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            target(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def _assert_routing_invariants(agents: list[AgentProfile]) -> None:
    for profile in agents:
        load, _on_call = agent_load(user_id=profile.user_id)
        assert load <= profile.capacity, f"{profile} holds {load} % of {profile.capacity} %"
    live_offers = Q(offers__state__in=(Offer.State.PENDING, Offer.State.ACCEPTED))
    doubles = Interaction.objects.annotate(n=Count("offers", filter=live_offers)).filter(n__gt=1)
    assert list(doubles) == []
    # Every offered interaction has exactly its one pending offer, to the agent it names.
    for interaction in Interaction.objects.filter(state=Interaction.State.OFFERED):
        assert _pending(interaction).agent_id == interaction.agent_id
    assert not Offer.objects.filter(state=Offer.State.PENDING).exclude(interaction__state=Interaction.State.OFFERED)


@pytest.mark.django_db(transaction=True)
def test_concurrent_routing_never_exceeds_capacity_or_offers_twice():
    service = ServiceFactory(wrapup_seconds=0)
    agents = [_agent(service, capacity=capacity) for capacity in (100, 100, 50, 75, 25)]
    slots = sum(profile.capacity // 25 for profile in agents)
    chats = [_queued(service) for _i in range(slots + 10)]

    def route(i: int) -> None:
        if i % 2:
            route_service(service=service)
        else:
            while route_next(service=service) is not None:
                pass

    assert _run_at_once(route, THREADS) == []

    _assert_routing_invariants(agents)
    # A step that found every agent locked by another leaves its chat to the
    # next pass (the sweep); one more pass fills every slot.
    route_service(service=service)
    _assert_routing_invariants(agents)
    assert Offer.objects.filter(state=Offer.State.PENDING).count() == slots
    assert Interaction.objects.filter(state=Interaction.State.QUEUED).count() == len(chats) - slots


@pytest.mark.django_db(transaction=True)
def test_concurrent_arrivals_and_accepts_keep_capacity_and_single_offers(settings):
    settings.DEFAULT_PHONE_REGION = "DE"
    service = ServiceFactory(wrapup_seconds=0, offer_timeout_seconds=600, prechat_fields={"email": "required"})
    agents = [_agent(service) for _i in range(5)]
    arrivals = 30
    accepted: list[int] = []
    accept_errors: list[str] = []
    arrived = threading.Event()
    done = {"count": 0}
    lock = threading.Lock()

    def arrive(i: int) -> None:
        chat_start(service=service, data={"email": f"customer{i}@example.com"})
        with lock:
            done["count"] += 1
            if done["count"] == arrivals:
                arrived.set()

    def accept(profile: AgentProfile) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            offer_ids = list(
                Offer.objects.filter(agent=profile.user, state=Offer.State.PENDING).values_list("pk", flat=True)
            )
            for offer_id in offer_ids:
                try:
                    accepted.append(offer_accept(offer_id=offer_id, agent_user=profile.user).pk)
                except ValidationError as exc:
                    accept_errors.append(str(exc))
            if arrived.is_set() and not offer_ids:
                return
            time.sleep(0.01)
            close_old_connections()

    def work(i: int) -> None:
        if i < arrivals:
            arrive(i)
        else:
            accept(agents[i - arrivals])

    errors = _run_at_once(work, arrivals + len(agents))

    assert errors == []
    assert accept_errors == []
    _assert_routing_invariants(agents)
    assert Interaction.objects.filter(medium=Medium.CHAT).count() == arrivals
    slots = sum(profile.capacity // 25 for profile in agents)
    routing_sweep()
    assert Interaction.objects.filter(state=Interaction.State.ACTIVE).count() == len(set(accepted))
    assert Interaction.objects.exclude(state=Interaction.State.QUEUED).count() == slots
    for profile in agents:
        assert agent_load(user_id=profile.user_id)[0] == profile.capacity


@pytest.mark.django_db(transaction=True)
def test_accept_racing_the_customer_leaving_ends_consistently():
    service = ServiceFactory(wrapup_seconds=0)
    agents = [_agent(service) for _i in range(4)]
    chats = [_queued(service) for _i in range(16)]
    offers = route_service(service=service)
    assert len(offers) == 16
    by_agent = {profile.user_id: profile.user for profile in agents}
    outcomes: list[str] = []

    def race(i: int) -> None:
        offer = offers[i // 2]
        if i % 2:
            ended = interaction_end(interaction=offer.interaction, reason="customer_left")
            outcomes.append(ended.state)
        else:
            try:
                offer_accept(offer_id=offer.pk, agent_user=by_agent[offer.agent_id])
                outcomes.append("accepted")
            except ValidationError:
                outcomes.append("refused")
            except OperationalError as exc:  # a deadlock would surface here
                outcomes.append(f"error: {exc}")

    assert _run_at_once(race, 2 * len(offers)) == []

    assert not [o for o in outcomes if o.startswith("error")]
    for chat in chats:
        chat.refresh_from_db()
        assert not chat.is_live
        offer = chat.offers.get()
        if chat.answered_at is None:
            assert (chat.state, offer.state) == (Interaction.State.ABANDONED, Offer.State.CANCELLED)
        else:
            assert (chat.state, offer.state) == (Interaction.State.ENDED, Offer.State.ACCEPTED)
    for profile in agents:
        assert agent_load(user_id=profile.user_id) == (0, False)
        assert _state(profile) == AgentState.READY
