"""Every read the supervisor views and consumers need: the boards, conversation search, the audit trail."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from agents.models import AgentProfile, AgentState
from conversations.models import Conversation, Direction, Interaction, Medium, Offer, Service
from core.models import AuditEntry
from supervisor.hours import service_is_open
from supervisor.models import Team

# Work an agent holds: counted in capacity, and the reason a forced state change is refused.
HELD_STATES = (Interaction.State.OFFERED, Interaction.State.ACTIVE, Interaction.State.ON_HOLD)
CALL_MEDIA = (Medium.VOICE, Medium.VIDEO)


def media_choices() -> list[tuple[str, str]]:
    """Every medium Parley knows, from ``conversations.Medium``: new channels show up without code changes here."""
    return [(value, str(label)) for value, label in Medium.choices]


def medium_label(value: str) -> str:
    return dict(media_choices()).get(value, value)


def teams() -> QuerySet[Team]:
    return Team.objects.order_by("name")


def services_active() -> QuerySet[Service]:
    return Service.objects.filter(is_active=True).order_by("name")


# --- the agents board ------------------------------------------------------------------------------------------


@dataclass
class AgentRow:
    profile: AgentProfile
    media: list[tuple[str, str, int]]
    load: int
    offers: int
    held: bool

    @property
    def load_percent(self) -> int:
        capacity = self.profile.capacity or 0
        return round(100 * self.load / capacity) if capacity else 0


def agents_for_board(*, team_id: int | None = None, service_id: int | None = None) -> QuerySet[AgentProfile]:
    agents = AgentProfile.objects.filter(user__is_active=True).select_related("user", "not_ready_reason")
    if team_id:
        agents = agents.filter(teams=team_id)
    if service_id:
        agents = agents.filter(services=service_id)
    return agents.order_by("user__first_name", "user__last_name", "user__username").distinct()


def agents_board(*, team_id: int | None = None, service_id: int | None = None) -> list[AgentRow]:
    """Every agent with state, reason, time in state, live work per medium and capacity used (three queries)."""
    profiles = list(agents_for_board(team_id=team_id, service_id=service_id))
    user_ids = [profile.user_id for profile in profiles]
    per_medium: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    load: dict[int, int] = defaultdict(int)
    held: set[int] = set()
    live = Interaction.objects.filter(agent_id__in=user_ids, state__in=HELD_STATES).select_related("service")
    for interaction in live:
        held.add(interaction.agent_id)
        service = interaction.service
        load[interaction.agent_id] += service.share_for(interaction.medium) if service else _default_share(interaction)
        if interaction.state != Interaction.State.OFFERED:
            per_medium[interaction.agent_id][interaction.medium] += 1
    offers = dict(
        Offer.objects.filter(agent_id__in=user_ids, state=Offer.State.PENDING)
        .values("agent_id")
        .annotate(n=Count("id"))
        .values_list("agent_id", "n")
    )
    media = media_choices()
    return [
        AgentRow(
            profile=profile,
            media=[(value, label, per_medium[profile.user_id].get(value, 0)) for value, label in media],
            load=load[profile.user_id],
            offers=offers.get(profile.user_id, 0),
            held=profile.user_id in held,
        )
        for profile in profiles
    ]


def _default_share(interaction: Interaction) -> int:
    return 100 if interaction.medium in CALL_MEDIA else 25


def agent_profile_for_board(*, agent_id: int) -> AgentProfile | None:
    return AgentProfile.objects.select_related("user", "not_ready_reason").filter(pk=agent_id).first()


def agent_is_mid_interaction(*, agent: AgentProfile) -> bool:
    return Interaction.objects.filter(agent_id=agent.user_id, state__in=HELD_STATES).exists()


# --- the queues board ------------------------------------------------------------------------------------------


@dataclass
class QueueRow:
    service: Service
    waiting: list[tuple[str, str, int]]
    waiting_total: int
    oldest: datetime | None
    ready_agents: int
    offers: int
    is_open: bool
    level: ServiceLevel


@dataclass
class ServiceLevel:
    within: int = 0
    counted: int = 0
    goal: int = 80

    @property
    def percent(self) -> int | None:
        return round(100 * self.within / self.counted) if self.counted else None

    @property
    def below_goal(self) -> bool:
        return self.percent is not None and self.percent < self.goal


def local_day_bounds(day: date, tz=None) -> tuple[datetime, datetime]:
    """The instants a local calendar day starts and ends (DST days are 23 or 25 hours long)."""
    tz = tz or timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(day, time.min), tz)
    end = timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min), tz)
    return start, end


def service_levels_today(*, service_ids: list[int], now: datetime | None = None) -> dict[int, ServiceLevel]:
    """Today's service level per service: the share of today's inbound interactions answered within target.

    Counted: interactions answered (within target or not), those that ended
    unanswered (missed, abandoned) and those still waiting past the target.
    Interactions still waiting within the target are not decided yet.
    """
    now = now or timezone.now()
    start, _end = local_day_bounds(timezone.localdate(now))
    services = {service.pk: service for service in Service.objects.filter(pk__in=service_ids)}
    levels = {pk: ServiceLevel(goal=service.service_level_percent) for pk, service in services.items()}
    rows = Interaction.objects.filter(
        service_id__in=service_ids, direction=Direction.INBOUND, created_at__gte=start, created_at__lte=now
    ).values_list("service_id", "created_at", "answered_at", "state")
    for service_id, created_at, answered_at, state in rows:
        target = timedelta(seconds=services[service_id].service_level_seconds)
        level = levels[service_id]
        if answered_at is not None:
            level.counted += 1
            level.within += answered_at - created_at <= target
        elif state in Interaction.FINAL_STATES or now - created_at > target:
            level.counted += 1
    return levels


def queues_board(*, team_id: int | None = None, service_id: int | None = None) -> list[QueueRow]:
    services = services_active()
    if team_id:
        services = services.filter(teams=team_id)
    if service_id:
        services = services.filter(pk=service_id)
    services = list(services)
    ids = [service.pk for service in services]
    waiting: dict[int, dict[str, int]] = defaultdict(dict)
    oldest: dict[int, datetime] = {}
    queued = (
        Interaction.objects.filter(service_id__in=ids, state=Interaction.State.QUEUED)
        .values("service_id", "medium")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    )
    for row in queued:
        waiting[row["service_id"]][row["medium"]] = row["n"]
        if row["service_id"] not in oldest or row["oldest"] < oldest[row["service_id"]]:
            oldest[row["service_id"]] = row["oldest"]
    ready = dict(
        AgentProfile.objects.filter(state=AgentState.READY, services__in=ids, user__is_active=True)
        .values("services")
        .annotate(n=Count("id"))
        .values_list("services", "n")
    )
    offers = dict(
        Offer.objects.filter(state=Offer.State.PENDING, interaction__service_id__in=ids)
        .values("interaction__service_id")
        .annotate(n=Count("id"))
        .values_list("interaction__service_id", "n")
    )
    levels = service_levels_today(service_ids=ids)
    media = media_choices()
    return [
        QueueRow(
            service=service,
            waiting=[(value, label, waiting[service.pk].get(value, 0)) for value, label in media],
            waiting_total=sum(waiting[service.pk].values()),
            oldest=oldest.get(service.pk),
            ready_agents=ready.get(service.pk, 0),
            offers=offers.get(service.pk, 0),
            is_open=service_is_open(service=service),
            level=levels[service.pk],
        )
        for service in services
    ]


# --- conversations -----------------------------------------------------------------------------------------------


@dataclass
class ConversationFilter:
    status: str = ""  # "live", "closed" or "" for both
    service_id: int | None = None
    agent_id: int | None = None
    medium: str = ""
    disposition_id: int | None = None
    opened_from: date | None = None
    opened_to: date | None = None
    contact: str = ""
    before_id: int | None = None


CONVERSATION_PAGE = 50


def conversations_search(*, criteria: ConversationFilter, limit: int = CONVERSATION_PAGE) -> list[Conversation]:
    """Live and closed conversations, newest first, keyset-paginated by id."""
    found = Conversation.objects.select_related("contact", "service", "assigned_agent", "disposition")
    if criteria.status == "live":
        found = found.filter(status=Conversation.Status.OPEN)
    elif criteria.status == "closed":
        found = found.filter(status=Conversation.Status.CLOSED)
    if criteria.service_id:
        found = found.filter(service_id=criteria.service_id)
    if criteria.agent_id:
        found = found.filter(assigned_agent_id=criteria.agent_id)
    if criteria.disposition_id:
        found = found.filter(disposition_id=criteria.disposition_id)
    if criteria.medium:
        found = found.filter(pk__in=Interaction.objects.filter(medium=criteria.medium).values("conversation_id"))
    if criteria.opened_from:
        found = found.filter(opened_at__gte=local_day_bounds(criteria.opened_from)[0])
    if criteria.opened_to:
        found = found.filter(opened_at__lt=local_day_bounds(criteria.opened_to)[1])
    text = criteria.contact.strip()
    if text:
        matches = Q(contact__first_name__icontains=text) | Q(contact__last_name__icontains=text)
        from contacts.models import ContactPoint

        points = ContactPoint.objects.filter(value__icontains=text.lower()).values("contact_id")
        found = found.filter(matches | Q(contact_id__in=points))
    if criteria.before_id:
        found = found.filter(pk__lt=criteria.before_id)
    conversations = list(found.order_by("-id")[: limit + 1])
    media: dict[int, list[str]] = defaultdict(list)
    for conversation_id, medium in (
        Interaction.objects.filter(conversation_id__in=[c.pk for c in conversations[:limit]])
        .values_list("conversation_id", "medium")
        .distinct()
    ):
        if medium not in media[conversation_id]:
            media[conversation_id].append(medium)
    for conversation in conversations:
        conversation.media = media.get(conversation.pk, [])
    return conversations


def conversation_for_supervisor(*, conversation_uuid) -> Conversation | None:
    return (
        Conversation.objects.select_related("contact", "service", "assigned_agent", "disposition")
        .filter(uuid=conversation_uuid)
        .first()
    )


def conversation_live_interactions(*, conversation: Conversation) -> list[Interaction]:
    return list(conversation.interactions.filter(state__in=Interaction.LIVE_STATES).select_related("agent"))


def agents_for_reassign(*, conversation: Conversation) -> QuerySet[AgentProfile]:
    """Logged-in agents other than the one holding the conversation."""
    agents = AgentProfile.objects.filter(user__is_active=True).exclude(state=AgentState.LOGGED_OUT)
    if conversation.assigned_agent_id:
        agents = agents.exclude(user_id=conversation.assigned_agent_id)
    return agents.select_related("user").order_by("user__first_name", "user__last_name", "user__username")


# --- the audit trail ------------------------------------------------------------------------------------------


@dataclass
class AuditItem:
    at: datetime
    actor: str
    source: str  # "admin" (configuration changed in the admin) or "action" (core.AuditEntry)
    action: str
    target: str
    summary: str


AUDIT_PAGE = 200


def audit_trail(
    *, day_from: date | None = None, day_to: date | None = None, actor: str = "", limit: int = AUDIT_PAGE
) -> list[AuditItem]:
    """Admin changes (``LogEntry``) and recorded actions (``core.AuditEntry``), newest first."""
    entries = AuditEntry.objects.all()
    changes = LogEntry.objects.select_related("user", "content_type")
    if day_from:
        start = local_day_bounds(day_from)[0]
        entries, changes = entries.filter(at__gte=start), changes.filter(action_time__gte=start)
    if day_to:
        end = local_day_bounds(day_to)[1]
        entries, changes = entries.filter(at__lt=end), changes.filter(action_time__lt=end)
    if actor.strip():
        entries = entries.filter(actor_label__icontains=actor.strip())
        changes = changes.filter(user__username__icontains=actor.strip())
    items = [
        AuditItem(
            at=entry.at,
            actor=entry.actor_label,
            source="action",
            action=entry.action,
            target=f"{entry.object_type}#{entry.object_id}",
            summary=entry.summary,
        )
        for entry in entries.order_by("-at", "-id")[:limit]
    ]
    labels = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}
    items += [
        AuditItem(
            at=change.action_time,
            actor=change.user.get_username() if change.user_id else "",
            source="admin",
            action=labels.get(change.action_flag, "changed"),
            target=f"{change.content_type.app_label}.{change.content_type.model}#{change.object_id}"
            if change.content_type_id
            else "",
            summary=f"{change.object_repr} {change.get_change_message()}".strip()[:255],
        )
        for change in changes.order_by("-action_time", "-id")[:limit]
    ]
    items.sort(key=lambda item: item.at, reverse=True)
    return items[:limit]
