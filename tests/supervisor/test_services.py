"""The supervisor's writes: the rules of forcing a state and of reassigning."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agents.models import AgentState
from agents.services import agent_state_set
from conversations.models import Interaction, Medium
from core.models import AuditEntry
from supervisor.services import agent_state_force, conversation_reassign
from tests.factories import ConversationFactory, InteractionFactory, NotReadyReasonFactory

pytestmark = pytest.mark.django_db


def test_only_ready_not_ready_and_logged_out_can_be_forced(agent, supervisor):
    agent_state_set(agent=agent, state=AgentState.READY)
    for state in (AgentState.BUSY, AgentState.AFTER_CALL_WORK, "bogus"):
        with pytest.raises(ValidationError):
            agent_state_force(agent=agent, state=state, supervisor=supervisor)
    assert not AuditEntry.objects.exists()


def test_not_ready_needs_a_selectable_reason_when_reasons_exist(agent, supervisor):
    agent_state_set(agent=agent, state=AgentState.READY)
    NotReadyReasonFactory(name="Break", code="break")
    system = NotReadyReasonFactory(name="Missed offer", code="missed-x", is_system=True)
    with pytest.raises(ValidationError):
        agent_state_force(agent=agent, state=AgentState.NOT_READY, supervisor=supervisor)
    with pytest.raises(ValidationError):
        agent_state_force(agent=agent, state=AgentState.NOT_READY, reason=system, supervisor=supervisor)


def test_wrap_up_can_be_ended_by_a_supervisor(agent, supervisor):
    agent_state_set(agent=agent, state=AgentState.AFTER_CALL_WORK, by_system=True)

    agent = agent_state_force(agent=agent, state=AgentState.READY, supervisor=supervisor)

    assert agent.state == AgentState.READY
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.details["from"], entry.details["to"]) == ("agent_state_forced", "acw", "ready")


def test_an_offer_on_screen_counts_as_mid_interaction(agent, supervisor):
    agent_state_set(agent=agent, state=AgentState.READY)
    InteractionFactory(medium=Medium.CHAT, state=Interaction.State.OFFERED, agent=agent.user)

    with pytest.raises(ValidationError, match="middle of an interaction"):
        agent_state_force(agent=agent, state=AgentState.NOT_READY, supervisor=supervisor)


def test_reassign_needs_exactly_one_target_and_an_open_conversation(agent, other_agent, supervisor):
    conversation = ConversationFactory(assigned_agent=agent.user)
    with pytest.raises(ValidationError):
        conversation_reassign(conversation=conversation, supervisor=supervisor)
    with pytest.raises(ValidationError):
        conversation_reassign(
            conversation=conversation, supervisor=supervisor, to_agent=other_agent.user, to_queue=True
        )
    with pytest.raises(ValidationError, match="working on"):
        conversation_reassign(conversation=conversation, supervisor=supervisor, to_queue=True)
    assert not AuditEntry.objects.exists()


def test_a_logged_out_agent_is_not_logged_in_by_a_supervisor(agent, supervisor):
    assert agent.state == AgentState.LOGGED_OUT
    for state in (AgentState.READY, AgentState.NOT_READY):
        with pytest.raises(ValidationError, match="logged out"):
            agent_state_force(agent=agent, state=state, supervisor=supervisor)
    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT
