"""Routing: queued interactions are offered to Ready agents with free capacity.

The queue is the set of interactions in state ``queued``, in the database, so
a restart loses nothing. Assignment is race-free: each routing step runs in
one transaction that locks the interaction and the chosen agent's profile
(``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite takes its write
lock at the start of every transaction, so steps run one at a time), and a
partial unique index allows one pending offer per interaction.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import AgentProfile, AgentState, NotReadyReason
from agents.services import agent_state_set, agent_work_ended, agent_work_started
from conversations import events
from conversations.models import Conversation, Interaction, Medium, Offer, Service, TimelineEntry
from conversations.services import _entry, interaction_answer

logger = logging.getLogger(__name__)

ROUTABLE_STATES = (AgentState.READY, AgentState.BUSY)
LOAD_STATES = (Interaction.State.OFFERED, Interaction.State.ACTIVE, Interaction.State.ON_HOLD)
CALL_MEDIA = (Medium.VOICE, Medium.VIDEO)
# An agent who rejected an interaction is not offered the same one again for this long.
REJECT_COOLDOWN = timedelta(seconds=60)
DEFAULT_SHARES = Service(share_voice=100, share_chat=25, share_email=25, share_sms=25)


def _locked(queryset: QuerySet) -> QuerySet:
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset.select_for_update()


def agent_load(*, user_id: int) -> tuple[int, bool]:
    """Capacity in use by the agent (percent) and whether they are on a call."""
    load = 0
    on_call = False
    live = Interaction.objects.filter(agent_id=user_id, state__in=LOAD_STATES).select_related("service")
    for interaction in live:
        load += (interaction.service or DEFAULT_SHARES).share_for(interaction.medium)
        on_call = on_call or interaction.medium in CALL_MEDIA
    return load, on_call


def agent_can_take(*, profile: AgentProfile, interaction: Interaction, service: Service) -> bool:
    """Whether ``profile`` has room for ``interaction`` under the service's capacity rules."""
    load, on_call = agent_load(user_id=profile.user_id)
    if load + service.share_for(interaction.medium) > profile.capacity:
        return False
    return not (on_call and interaction.medium not in CALL_MEDIA and not service.chat_during_call)


def _offer(interaction: Interaction, profile: AgentProfile, service: Service, **transfer) -> Offer:
    now = timezone.now()
    offer = Offer.objects.create(
        interaction=interaction,
        agent_id=profile.user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=service.offer_timeout_seconds),
        **transfer,
    )
    Interaction.objects.filter(pk=interaction.pk).update(state=Interaction.State.OFFERED, agent_id=profile.user_id)
    # Least recently offered first: spreads work like "longest idle".
    AgentProfile.objects.filter(pk=profile.pk).update(idle_since=now)
    events.agent_offers_changed(user_id=profile.user_id)
    events.service_queue_changed(service_id=service.pk)
    events.conversation_changed(conversation_uuid=interaction.conversation.uuid, agent_id=None)
    _schedule_expiry(offer.pk, service.offer_timeout_seconds)
    return offer


def _schedule_expiry(offer_id: int, seconds: int) -> None:
    def schedule() -> None:
        from conversations.tasks import offer_expire

        try:
            offer_expire.apply_async(args=[offer_id], countdown=seconds)
        except Exception as exc:
            # The periodic sweep expires it instead.
            logger.warning("could not schedule expiry of offer %s: %r", offer_id, exc)

    transaction.on_commit(schedule)


@transaction.atomic
def route_next(*, service: Service) -> Offer | None:
    """Offer the oldest queued interaction of ``service`` to the best free agent, if any."""
    interaction = (
        _locked(Interaction.objects.filter(service=service, state=Interaction.State.QUEUED))
        .order_by("created_at", "id")
        .select_related("conversation")
        .first()
    )
    if interaction is None:
        return None
    recently_rejected = Offer.objects.filter(
        interaction=interaction,
        state__in=(Offer.State.REJECTED, Offer.State.EXPIRED),
        responded_at__gte=timezone.now() - REJECT_COOLDOWN,
    ).values("agent_id")
    candidates = (
        AgentProfile.objects.filter(state__in=ROUTABLE_STATES, services=service)
        .exclude(user_id__in=recently_rejected)
        # Least recently offered first; agents without idle_since (Busy straight from
        # Not Ready or wrap-up) come last.
        .order_by(F("idle_since").asc(nulls_last=True), "id")
    )
    for profile in _locked(candidates)[:50]:
        if agent_can_take(profile=profile, interaction=interaction, service=service):
            return _offer(interaction, profile, service)
    return None


def route_service(*, service: Service, limit: int = 100) -> list[Offer]:
    """Offer as many queued interactions of ``service`` as agents can take."""
    offers = []
    for _step in range(limit):
        offer = route_next(service=service)
        if offer is None:
            break
        offers.append(offer)
    return offers


def route_on_commit(*, service_id: int | None) -> None:
    """Run routing for the service once the current transaction has committed."""
    if service_id is None:
        return

    def run() -> None:
        service = Service.objects.filter(pk=service_id, is_active=True).first()
        if service is not None:
            route_service(service=service)

    transaction.on_commit(run)


def route_all_on_commit(*, user_id: int) -> None:
    """An agent gained room: try each of their services."""
    for service_id in AgentProfile.objects.filter(user_id=user_id).values_list("services", flat=True):
        route_on_commit(service_id=service_id)


def _lock_interaction_then_offer(offer_queryset: QuerySet) -> Offer | None:
    """Lock an offer's interaction, then the offer: the order routing and interaction_end use.

    Locking only the offer's own row (``of``) also keeps PostgreSQL from refusing
    FOR UPDATE on the outer join to the interaction's nullable service.
    """
    interaction_id = offer_queryset.values_list("interaction_id", flat=True).first()
    if interaction_id is None:
        return None
    list(Interaction.objects.select_for_update().filter(pk=interaction_id).values_list("pk", flat=True))
    return (
        offer_queryset.select_for_update(of=("self",))
        .select_related("interaction__conversation", "interaction__service")
        .first()
    )


def _pending_offer_for(*, offer_id: int, agent_user) -> Offer:
    offer = _lock_interaction_then_offer(Offer.objects.filter(pk=offer_id, agent=agent_user))
    if offer is None:
        raise ValidationError(_("This offer is not yours."))
    if offer.state != Offer.State.PENDING:
        raise ValidationError(_("This offer is no longer open."))
    return offer


def offer_accept(*, offer_id: int, agent_user) -> Interaction:
    """The agent takes the offered interaction; the conversation becomes theirs."""
    interaction = _offer_take(offer_id=offer_id, agent_user=agent_user)
    if interaction is None:
        # Raised only after the miss has been committed, so it is not rolled back with the error.
        raise ValidationError(_("This offer has expired."))
    return interaction


@transaction.atomic
def _offer_take(*, offer_id: int, agent_user) -> Interaction | None:
    offer = _pending_offer_for(offer_id=offer_id, agent_user=agent_user)
    now = timezone.now()
    if offer.expires_at <= now:
        _expire(offer)
        return None
    offer.state = Offer.State.ACCEPTED
    offer.responded_at = now
    offer.save(update_fields=["state", "responded_at"])
    interaction = offer.interaction
    if interaction.answered_at is None:
        interaction = interaction_answer(interaction=interaction, agent=agent_user)
    else:
        # A transferred interaction was answered before: it moves to the new agent.
        Interaction.objects.filter(pk=interaction.pk).update(state=Interaction.State.ACTIVE, agent=agent_user)
        Conversation.objects.filter(pk=interaction.conversation_id).update(assigned_agent=agent_user)
        interaction.refresh_from_db()
        conversation = interaction.conversation
        conversation.refresh_from_db()
        _entry(conversation, TimelineEntry.Kind.ASSIGNED, interaction=interaction, actor=agent_user)
        events.conversation_changed(conversation_uuid=conversation.uuid, agent_id=agent_user.pk)
    agent_work_started(user=agent_user)
    events.agent_offers_changed(user_id=agent_user.pk)
    events.agent_conversations_changed(user_id=agent_user.pk)
    if interaction.service_id:
        events.service_queue_changed(service_id=interaction.service_id)
    return interaction


def _requeue(offer: Offer, state: str) -> None:
    now = timezone.now()
    offer.state = state
    offer.responded_at = now
    offer.save(update_fields=["state", "responded_at"])
    interaction = offer.interaction
    Interaction.objects.filter(pk=interaction.pk, state=Interaction.State.OFFERED).update(
        state=Interaction.State.QUEUED, agent=None
    )
    events.agent_offers_changed(user_id=offer.agent_id)
    events.conversation_changed(conversation_uuid=interaction.conversation.uuid, agent_id=None)
    if interaction.service_id:
        events.service_queue_changed(service_id=interaction.service_id)
    route_on_commit(service_id=interaction.service_id)


@transaction.atomic
def offer_reject(*, offer_id: int, agent_user) -> None:
    """The agent declines; the interaction goes back to the queue for someone else."""
    offer = _pending_offer_for(offer_id=offer_id, agent_user=agent_user)
    _requeue(offer, Offer.State.REJECTED)
    route_all_on_commit(user_id=agent_user.pk)


def _expire(offer: Offer) -> None:
    _requeue(offer, Offer.State.EXPIRED)
    profile = AgentProfile.objects.filter(user_id=offer.agent_id).first()
    if profile is not None and profile.state in ROUTABLE_STATES:
        missed = NotReadyReason.missed()
        agent_state_set(agent=profile, state=AgentState.NOT_READY, reason=missed, by_system=True)


@transaction.atomic
def offer_expire(*, offer_id: int) -> bool:
    """An unanswered offer runs out: back to the queue, and the agent goes Not Ready (missed)."""
    offer = _lock_interaction_then_offer(
        Offer.objects.filter(pk=offer_id, state=Offer.State.PENDING, expires_at__lte=timezone.now())
    )
    if offer is None:
        return False
    _expire(offer)
    return True


def offers_expire_due() -> int:
    """Expire every overdue offer (the periodic safety net behind the per-offer timer)."""
    due = Offer.objects.filter(state=Offer.State.PENDING, expires_at__lte=timezone.now()).values_list("pk", flat=True)
    return sum(offer_expire(offer_id=offer_id) for offer_id in list(due))


def routing_sweep() -> int:
    """Expire overdue offers and route every service that has a queue."""
    expired = offers_expire_due()
    queued_services = (
        Interaction.objects.filter(state=Interaction.State.QUEUED, service__isnull=False)
        .values_list("service_id", flat=True)
        .distinct()
    )
    for service in Service.objects.filter(pk__in=list(queued_services), is_active=True):
        route_service(service=service)
    return expired


@transaction.atomic
def conversation_transfer(
    *, conversation: Conversation, from_agent, to_agent=None, to_service: Service | None = None, note: str = ""
) -> list[Offer]:
    """Hand the conversation's live interactions to another agent (an offer) or service (its queue).

    The sending agent is released at once. If the receiving agent rejects or
    misses the offer, the interaction goes to the queue of its service.
    """
    if (to_agent is None) == (to_service is None):
        raise ValidationError(_("Choose either an agent or a service."))
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.assigned_agent_id != from_agent.pk:
        raise ValidationError(_("This conversation is not yours."))
    live = list(
        conversation.interactions.filter(
            agent=from_agent, state__in=(Interaction.State.ACTIVE, Interaction.State.ON_HOLD)
        )
    )
    if not live:
        raise ValidationError(_("There is nothing live to transfer."))
    target_profile = None
    if to_agent is not None:
        if to_agent.pk == from_agent.pk:
            raise ValidationError(_("Choose another agent."))
        target_profile = AgentProfile.objects.filter(user=to_agent).exclude(state=AgentState.LOGGED_OUT).first()
        if target_profile is None:
            raise ValidationError(_("That agent is not logged in."))
    service = to_service or conversation.service
    conversation.assigned_agent = None
    if to_service is not None:
        conversation.service = to_service
    conversation.save(update_fields=["assigned_agent", "service"])
    _entry(
        conversation,
        TimelineEntry.Kind.TRANSFERRED,
        actor=from_agent,
        data={
            "to_agent": str(target_profile) if target_profile else "",
            "to_service": to_service.name if to_service else "",
            "note": note.strip(),
        },
    )
    offers = []
    for interaction in live:
        Interaction.objects.filter(pk=interaction.pk).update(
            state=Interaction.State.QUEUED, agent=None, service=service
        )
        interaction.refresh_from_db()
        if target_profile is not None:
            offers.append(
                _offer(interaction, target_profile, service, transferred_by=from_agent, transfer_note=note.strip())
            )
    events.agent_conversations_changed(user_id=from_agent.pk)
    events.conversation_changed(conversation_uuid=conversation.uuid, agent_id=from_agent.pk)
    agent_work_ended(user=from_agent, wrapup=False)
    if target_profile is None:
        events.service_queue_changed(service_id=service.pk)
        route_on_commit(service_id=service.pk)
    return offers
