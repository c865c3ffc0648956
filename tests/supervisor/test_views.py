"""The supervisor pages: boards, conversation search, monitoring page, audit, and the admin's configuration."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentState
from agents.services import agent_state_set
from conversations.models import Conversation, Direction, Interaction, Medium, Offer, Service
from conversations.routing import agent_can_take
from core.services import audit_record
from supervisor.hours import business_hours_errors, service_is_open
from supervisor.models import Team
from supervisor.selectors import service_levels_today
from tests.factories import (
    AgentFactory,
    ConversationFactory,
    DispositionFactory,
    InteractionFactory,
    NotReadyReasonFactory,
    ServiceFactory,
)

pytestmark = pytest.mark.django_db


def test_agents_board_lists_state_reason_and_filters_by_team_and_service(supervisor_client):
    bookings, support = ServiceFactory(name="Bookings"), ServiceFactory(name="Support")
    anna = AgentFactory(user__first_name="Anna", user__last_name="Becker")
    anna.services.add(bookings)
    ben = AgentFactory(user__first_name="Ben", user__last_name="Berg")
    ben.services.add(support)
    lunch = NotReadyReasonFactory(name="Lunch", code="lunch")
    agent_state_set(agent=anna, state=AgentState.NOT_READY, reason=lunch)
    team = Team.objects.create(name="Morning")
    team.members.add(ben)

    html = supervisor_client.get(reverse("supervisor:agents")).content.decode()
    assert "Anna Becker" in html and "Ben Berg" in html
    assert 'data-state="not_ready"' in html and ": Lunch" in html
    assert 'ws-connect="/ws/supervisor/agents/"' in html

    html = supervisor_client.get(reverse("supervisor:agents"), {"team": team.pk}).content.decode()
    assert "Ben Berg" in html and "Anna Becker" not in html
    assert f'ws-connect="/ws/supervisor/agents/?team={team.pk}"' in html
    html = supervisor_client.get(reverse("supervisor:agents"), {"service": bookings.pk}).content.decode()
    assert "Anna Becker" in html and "Ben Berg" not in html


def test_queues_board_counts_waiting_ready_offers_and_service_level(supervisor_client):
    service = ServiceFactory(name="Bookings", service_level_seconds=20)
    ready = AgentFactory()
    ready.services.add(service)
    agent_state_set(agent=ready, state=AgentState.READY)
    now = timezone.now()
    for medium in (Medium.CHAT, Medium.CHAT, Medium.EMAIL):
        InteractionFactory(conversation=ConversationFactory(service=service), medium=medium, created_at=now)
    offered = InteractionFactory(
        conversation=ConversationFactory(service=service), state=Interaction.State.OFFERED, created_at=now
    )
    Offer.objects.create(interaction=offered, agent=ready.user, expires_at=now + timedelta(seconds=30))

    html = supervisor_client.get(reverse("supervisor:queues")).content.decode()
    row = html[html.index(f'id="queue-row-{service.pk}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-waiting="3"' in row
    assert '<td class="num" data-medium="chat">2</td>' in row
    assert '<td class="num" data-medium="email">1</td>' in row
    assert 'data-ready="1"' in row and 'data-offers="1"' in row


def test_service_level_counts_answered_within_target_among_decided_interactions():
    service = ServiceFactory(service_level_seconds=20, service_level_percent=80)
    now = timezone.now()
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    moment = max(start, now - timedelta(minutes=30))

    def make(*, wait=None, state=Interaction.State.ENDED, created=moment, direction=Direction.INBOUND):
        conversation = ConversationFactory(service=service)
        answered = created + timedelta(seconds=wait) if wait is not None else None
        final = state in Interaction.FINAL_STATES
        return Interaction.objects.create(
            conversation=conversation,
            medium=Medium.CHAT,
            direction=direction,
            service=service,
            state=state,
            created_at=created,
            answered_at=answered,
            ended_at=(answered or created) + timedelta(seconds=1) if final else None,
        )

    make(wait=5)  # within
    make(wait=20)  # within (inclusive)
    make(wait=21)  # late
    make(state=Interaction.State.ABANDONED)  # counted, not within
    make(state=Interaction.State.QUEUED, created=now - timedelta(seconds=5))  # still undecided
    make(wait=1, direction=Direction.OUTBOUND)  # not an arrival

    level = service_levels_today(service_ids=[service.pk], now=now)[service.pk]
    assert (level.within, level.counted, level.percent, level.below_goal) == (2, 4, 50, True)


def test_conversations_can_be_filtered_and_opened_read_only(supervisor_client, agent):
    bookings = ServiceFactory(name="Bookings")
    solved = DispositionFactory(name="Solved")
    live = ConversationFactory(service=bookings, assigned_agent=agent.user, contact__first_name="Liviaqx")
    InteractionFactory(conversation=live, medium=Medium.CHAT, state=Interaction.State.ACTIVE, agent=agent.user)
    closed = ConversationFactory(contact__first_name="Claraqx")
    moment = timezone.now()
    InteractionFactory(
        conversation=closed, medium=Medium.EMAIL, state=Interaction.State.ENDED, created_at=moment, ended_at=moment
    )
    Conversation.objects.filter(pk=closed.pk).update(
        status=Conversation.Status.CLOSED, closed_at=timezone.now(), disposition=solved
    )
    url = reverse("supervisor:conversations")

    def found(**params) -> set[str]:
        html = supervisor_client.get(url, params).content.decode()
        return {name for name in ("Liviaqx", "Claraqx") if name in html}

    assert found() == {"Liviaqx", "Claraqx"}
    assert found(status="live") == {"Liviaqx"}
    assert found(status="closed") == {"Claraqx"}
    assert found(channel="email") == {"Claraqx"}
    assert found(service=bookings.pk) == {"Liviaqx"}
    assert found(agent=agent.pk) == {"Liviaqx"}
    assert found(disposition=solved.pk) == {"Claraqx"}
    assert found(contact="liviaq") == {"Liviaqx"}
    today = timezone.localdate().isoformat()
    assert found(opened_from=today, opened_to=today) == {"Liviaqx", "Claraqx"}

    html = supervisor_client.get(reverse("supervisor:conversation", args=[live.uuid])).content.decode()
    assert f'ws-connect="/ws/supervisor/conversations/{live.uuid}/"' in html
    assert "Listening in" in html
    assert "data-composer" not in html
    assert 'name="target"' in html
    html = supervisor_client.get(reverse("supervisor:conversation", args=[closed.uuid])).content.decode()
    assert "ws-connect" not in html and 'name="target"' not in html


def test_audit_view_shows_admin_changes_and_recorded_actions(supervisor, supervisor_client, agent):
    service = ServiceFactory(name="Bookings")
    response = supervisor_client.post(
        reverse("admin:conversations_service_change", args=[service.pk]),
        {
            "name": "Bookings",
            "slug": service.slug,
            "is_active": "on",
            "media": '["chat"]',
            "share_voice": 100,
            "share_chat": 50,
            "share_email": 25,
            "share_sms": 25,
            "offer_timeout_seconds": 30,
            "wrapup_seconds": 60,
            "service_level_seconds": 30,
            "service_level_percent": 90,
            "business_hours": '{"mon": ["08:00-18:00"]}',
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert LogEntry.objects.filter(user=supervisor).exists()
    audit_record(actor=supervisor, action="contact_erased", obj=agent, summary="erased contact #1")

    html = supervisor_client.get(reverse("supervisor:audit")).content.decode()
    assert 'data-action="changed"' in html and "conversations.service#" in html
    assert 'data-action="contact_erased"' in html
    html = supervisor_client.get(reverse("supervisor:audit"), {"actor": "nobody"}).content.decode()
    assert "audit-row" not in html


def test_service_changes_in_the_admin_take_effect_without_a_restart(supervisor_client, agent):
    service = ServiceFactory(name="Bookings")
    agent.capacity = 100
    agent.save()
    chats = [InteractionFactory(conversation=ConversationFactory(service=service)) for _ in range(3)]
    for chat in chats[:2]:
        Interaction.objects.filter(pk=chat.pk).update(state=Interaction.State.ACTIVE, agent=agent.user)
    assert agent_can_take(profile=agent, interaction=chats[2], service=Service.objects.get(pk=service.pk))

    data = {
        "name": "Bookings",
        "slug": service.slug,
        "is_active": "on",
        "media": '["chat"]',
        "share_voice": 100,
        "share_chat": 40,
        "share_email": 25,
        "share_sms": 25,
        "offer_timeout_seconds": 30,
        "wrapup_seconds": 60,
        "service_level_seconds": 20,
        "service_level_percent": 80,
        "business_hours": "{}",
    }
    assert (
        supervisor_client.post(reverse("admin:conversations_service_change", args=[service.pk]), data).status_code
        == 302
    )

    # Two chats at 40 % leave no room for a third: routing reads the service afresh.
    assert not agent_can_take(profile=agent, interaction=chats[2], service=Service.objects.get(pk=service.pk))


def test_business_hours_are_checked_in_the_admin(supervisor_client):
    service = ServiceFactory(name="Bookings")
    data = {
        "name": "Bookings",
        "slug": service.slug,
        "is_active": "on",
        "media": '["chat"]',
        "share_voice": 100,
        "share_chat": 25,
        "share_email": 25,
        "share_sms": 25,
        "offer_timeout_seconds": 30,
        "wrapup_seconds": 60,
        "service_level_seconds": 20,
        "service_level_percent": 80,
        "business_hours": '{"monday": ["8-18"]}',
    }
    response = supervisor_client.post(reverse("admin:conversations_service_change", args=[service.pk]), data)
    assert response.status_code == 200
    assert "Unknown weekday" in response.content.decode()


def test_business_hours_rules():
    assert business_hours_errors({}) == []
    assert business_hours_errors({"mon": ["08:00-12:00", "13:00-18:00"], "sat": []}) == []
    assert business_hours_errors({"mon": ["18:00-08:00"]})
    assert business_hours_errors(["mon"])
    service = Service(business_hours={"mon": ["08:00-18:00"]})
    monday_noon = timezone.make_aware(timezone.datetime(2026, 1, 5, 12, 0))
    assert service_is_open(service=service, at=monday_noon)
    assert not service_is_open(service=service, at=monday_noon + timedelta(hours=7))
    assert not service_is_open(service=service, at=monday_noon + timedelta(days=1))
    assert service_is_open(service=Service(business_hours={}), at=monday_noon)


def test_admin_index_links_the_live_views_and_lists_configuration_first(supervisor_client):
    html = supervisor_client.get(reverse("admin:index")).content.decode()
    assert 'id="supervisor-live"' in html
    for name in ("agents", "queues", "conversations", "reports", "audit"):
        assert reverse(f"supervisor:{name}") in html
    assert html.index("app-supervisor") < html.index("app-conversations") < html.index("app-contacts")
    assert reverse("admin:supervisor_team_changelist") in html
