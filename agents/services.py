"""Every write to agents goes through here: states, their log, login and logout."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agents import events
from agents.models import AgentProfile, AgentState, AgentStateLog, NotReadyReason
from agents.selectors import agent_has_live_work, not_ready_reasons_selectable

logger = logging.getLogger(__name__)

# States an agent may choose; Busy and After Call Work are set by routing.
AGENT_SELECTABLE_STATES = (AgentState.READY, AgentState.NOT_READY, AgentState.LOGGED_OUT)


def agent_profile_ensure(*, user) -> AgentProfile:
    profile, _created = AgentProfile.objects.get_or_create(user=user)
    return profile


@transaction.atomic
def agent_state_set(
    *,
    agent: AgentProfile,
    state: str,
    reason: NotReadyReason | None = None,
    changed_by=None,
    by_system: bool = False,
    acw_until=None,
) -> AgentProfile:
    """Move ``agent`` to ``state`` and tell their desktop.

    Agents choose Ready, Not Ready (with a reason when reasons are configured)
    or Logged out; the system may also set Busy, After Call Work and system
    reasons such as “missed”. Logging out with live work is refused.
    """
    if state not in AgentState.values:
        raise ValidationError(_("Unknown agent state."))
    if not by_system and state not in AGENT_SELECTABLE_STATES:
        raise ValidationError(_("This state is set by the system."))
    if state == AgentState.NOT_READY:
        if reason is None and not by_system and not_ready_reasons_selectable().exists():
            raise ValidationError(_("Choose a reason for Not Ready."))
        if reason is not None and not by_system and (reason.is_system or not reason.is_active):
            raise ValidationError(_("This reason cannot be chosen."))
    elif reason is not None:
        raise ValidationError(_("Only Not Ready takes a reason."))

    agent = AgentProfile.objects.select_for_update().get(pk=agent.pk)
    if state == AgentState.LOGGED_OUT and agent_has_live_work(agent=agent):
        raise ValidationError(_("Finish your live interactions before logging out."))
    if state == AgentState.READY and not by_system and agent_has_live_work(agent=agent):
        # Ready while holding work means Busy: still open to offers while capacity lasts.
        state = AgentState.BUSY
    if agent.state == state and agent.not_ready_reason_id == (reason.pk if reason else None):
        return agent

    now = timezone.now()
    AgentStateLog.objects.filter(agent=agent, ended_at__isnull=True).update(ended_at=now)
    AgentStateLog.objects.create(
        agent=agent, state=state, not_ready_reason=reason, started_at=now, changed_by=changed_by
    )
    agent.state = state
    agent.not_ready_reason = reason
    agent.state_since = now
    if state == AgentState.READY:
        agent.idle_since = now
    elif state != AgentState.BUSY:
        agent.idle_since = None
    # Busy keeps idle_since (the last offer): longest-idle order still spreads work among busy agents.
    agent.acw_until = acw_until if state == AgentState.AFTER_CALL_WORK else None
    agent.save(update_fields=["state", "not_ready_reason", "state_since", "idle_since", "acw_until"])
    events.agent_state_changed(user_id=agent.user_id)
    if state in (AgentState.READY, AgentState.BUSY):
        # Imported here: routing builds on these services.
        from conversations.routing import route_all_on_commit

        route_all_on_commit(user_id=agent.user_id)
    return agent


def agent_login(*, user) -> AgentProfile | None:
    """An agent logged in to the desktop: enter the configured login state."""
    profile = AgentProfile.objects.filter(user=user).first()
    if profile is None:
        return None
    if profile.state == AgentState.LOGGED_OUT:
        return agent_state_set(agent=profile, state=settings.AGENT_STATE_ON_LOGIN, changed_by=user, by_system=True)
    return profile


def agent_logout(*, user) -> AgentProfile | None:
    """An agent logs out of the desktop; refused while they hold live interactions."""
    profile = AgentProfile.objects.filter(user=user).first()
    if profile is None:
        return None
    return agent_state_set(agent=profile, state=AgentState.LOGGED_OUT, changed_by=user)


def agent_work_started(*, user) -> None:
    """The agent took an interaction: Ready becomes Busy."""
    profile = AgentProfile.objects.filter(user=user).first()
    if profile is not None and profile.state == AgentState.READY:
        agent_state_set(agent=profile, state=AgentState.BUSY, changed_by=user, by_system=True)


@transaction.atomic
def agent_work_ended(*, user, wrapup: bool = True, wrapup_seconds: int = 0) -> None:
    """An interaction of the agent ended.

    With no live work left, a Busy (or Ready) agent enters After Call Work
    when the service has wrap-up time, else goes back to Ready. An agent who
    chose Not Ready meanwhile stays Not Ready.
    """
    profile = AgentProfile.objects.select_for_update().filter(user=user).first()
    if profile is None or agent_has_live_work(agent=profile):
        return
    if profile.state not in (AgentState.BUSY, AgentState.READY):
        return
    if wrapup and wrapup_seconds > 0:
        until = timezone.now() + timedelta(seconds=wrapup_seconds)
        agent_state_set(
            agent=profile, state=AgentState.AFTER_CALL_WORK, changed_by=user, by_system=True, acw_until=until
        )
        _schedule_acw_end(profile.pk, wrapup_seconds)
    elif profile.state == AgentState.BUSY:
        agent_state_set(agent=profile, state=AgentState.READY, changed_by=user, by_system=True)


def _schedule_acw_end(profile_id: int, seconds: int) -> None:
    def schedule() -> None:
        from agents.tasks import agent_acw_expire

        try:
            agent_acw_expire.apply_async(args=[profile_id], countdown=seconds)
        except Exception as exc:
            # The periodic sweep ends it instead.
            logger.warning("could not schedule the end of wrap-up for agent %s: %r", profile_id, exc)

    transaction.on_commit(schedule)


@transaction.atomic
def agent_acw_end(*, agent: AgentProfile, changed_by=None, only_if_due: bool = False) -> AgentProfile:
    """After Call Work ends (timer or the agent): back to Ready, or Busy with live work."""
    agent = AgentProfile.objects.select_for_update().get(pk=agent.pk)
    if agent.state != AgentState.AFTER_CALL_WORK:
        return agent
    if only_if_due and agent.acw_until is not None and agent.acw_until > timezone.now():
        return agent
    state = AgentState.BUSY if agent_has_live_work(agent=agent) else AgentState.READY
    return agent_state_set(agent=agent, state=state, changed_by=changed_by, by_system=True)


def agents_acw_expire_due() -> int:
    """End every overdue After Call Work (the safety net behind the per-agent timer)."""
    due = AgentProfile.objects.filter(state=AgentState.AFTER_CALL_WORK, acw_until__lte=timezone.now())
    count = 0
    for profile in due:
        agent_acw_end(agent=profile, only_if_due=True)
        count += 1
    return count
