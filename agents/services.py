"""Every write to agents goes through here: states, their log, login and logout."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agents import events
from agents.models import AgentProfile, AgentState, AgentStateLog, NotReadyReason
from agents.selectors import agent_has_live_work, not_ready_reasons_selectable

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
    agent.idle_since = now if state == AgentState.READY else None
    agent.save(update_fields=["state", "not_ready_reason", "state_since", "idle_since"])
    events.agent_state_changed(user_id=agent.user_id)
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
