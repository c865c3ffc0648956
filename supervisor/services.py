"""Every write a supervisor makes: forcing an agent's state, reassigning a conversation. Each is audited."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from agents.models import AgentProfile, AgentState, NotReadyReason
from agents.services import agent_state_set
from conversations.models import Conversation, Interaction
from conversations.routing import conversation_transfer
from core.services import audit_record
from supervisor.selectors import agent_is_mid_interaction

# What a supervisor may force; Busy and After Call Work follow from the agent's work.
FORCEABLE_STATES = (AgentState.READY, AgentState.NOT_READY, AgentState.LOGGED_OUT)


@transaction.atomic
def agent_state_force(
    *, agent: AgentProfile, state: str, supervisor, reason: NotReadyReason | None = None
) -> AgentProfile:
    """Set an agent's state for them (Ready, Not Ready with a reason, Logged out).

    Refused while the agent is mid-interaction (an offer on screen, a live chat
    or call): the agent finishes first. A logged-out agent is not logged in by
    a supervisor. The agent's desktop follows at once
    through the usual ``agent.state`` event of ``agent_state_set``.
    """
    if state not in FORCEABLE_STATES:
        raise ValidationError(_("Supervisors can set Ready, Not Ready or Logged out only."))
    # Lock first: an offer accepted between the check and the change would otherwise slip through.
    agent = AgentProfile.objects.select_for_update().select_related("user").get(pk=agent.pk)
    if agent_is_mid_interaction(agent=agent):
        raise ValidationError(
            _("%(agent)s is in the middle of an interaction; try again when it has ended.") % {"agent": agent}
        )
    if agent.state == AgentState.LOGGED_OUT and state != AgentState.LOGGED_OUT:
        # Work would be offered to someone who is not at a desktop; only the agent logs in.
        raise ValidationError(_("%(agent)s is logged out; only the agent can log in.") % {"agent": agent})
    before = agent.state
    before_reason = agent.not_ready_reason.code if agent.not_ready_reason_id else ""
    agent = agent_state_set(agent=agent, state=state, reason=reason, changed_by=supervisor)
    audit_record(
        actor=supervisor,
        action="agent_state_forced",
        obj=agent,
        summary=f"{before} → {agent.state}" + (f" ({reason.code})" if reason else ""),
        details={
            "from": before,
            "from_reason": before_reason,
            "to": agent.state,
            "reason": reason.code if reason else "",
        },
    )
    return agent


@transaction.atomic
def conversation_reassign(
    *, conversation: Conversation, supervisor, to_agent=None, to_queue: bool = False, note: str = ""
) -> Conversation:
    """Move a live conversation to another agent (offered to them) or back to its service's queue.

    Reuses the agents' transfer (``conversation_transfer``), on behalf of the
    agent who holds the conversation: that agent's desktop drops it, the new
    agent gets an offer (or routing picks one from the queue).
    """
    if (to_agent is None) == (not to_queue):
        raise ValidationError(_("Choose either an agent or the queue."))
    # Locked alone: PostgreSQL refuses FOR UPDATE across the outer joins to the nullable agent and service.
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if not conversation.is_open:
        raise ValidationError(_("The conversation is closed."))
    holder = conversation.assigned_agent
    held = conversation.interactions.filter(
        agent=holder, state__in=(Interaction.State.ACTIVE, Interaction.State.ON_HOLD)
    ).exists()
    if holder is None or not held:
        raise ValidationError(_("Only a conversation an agent is working on can be reassigned."))
    if to_queue and conversation.service is None:
        raise ValidationError(_("The conversation has no service whose queue it could go back to."))
    who = supervisor.get_full_name() or supervisor.get_username()
    text = _("Reassigned by %(supervisor)s") % {"supervisor": who}
    if note.strip():
        text = f"{text}: {note.strip()}"
    conversation_transfer(
        conversation=conversation,
        from_agent=holder,
        to_agent=to_agent,
        to_service=conversation.service if to_queue else None,
        note=text,
    )
    audit_record(
        actor=supervisor,
        action="conversation_reassigned",
        obj=conversation,
        summary=f"from user #{holder.pk} to " + (f"user #{to_agent.pk}" if to_agent else "the queue"),
        details={"from_user": holder.pk, "to_user": to_agent.pk if to_agent else None, "to_queue": to_queue},
    )
    conversation.refresh_from_db()
    return conversation
