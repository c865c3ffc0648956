"""Agent states: what an agent may choose, what only the system sets, and the state log."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import AgentProfile, AgentState, AgentStateLog, NotReadyReason
from agents.services import (
    agent_acw_end,
    agent_login,
    agent_logout,
    agent_profile_ensure,
    agent_state_set,
    agent_work_ended,
    agent_work_started,
    agents_acw_expire_due,
)
from conversations.models import Interaction
from core import realtime
from tests.factories import AgentFactory, InteractionFactory, NotReadyReasonFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quiet_channel_layer(monkeypatch):
    """Events are asserted in tests/conversations/test_events.py; here they go nowhere."""
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


@pytest.fixture
def break_reason():
    return NotReadyReasonFactory(name="Break", code="break")


@pytest.fixture
def missed_reason():
    return NotReadyReasonFactory(name="Missed offer", code=NotReadyReason.MISSED, is_system=True)


def _open_log(agent: AgentProfile) -> AgentStateLog:
    return AgentStateLog.objects.get(agent=agent, ended_at__isnull=True)


def _live_interaction(agent: AgentProfile, state: str = Interaction.State.ACTIVE) -> Interaction:
    now = timezone.now()
    return InteractionFactory(agent=agent.user, state=state, created_at=now, answered_at=now)


# --- choosing a state ----------------------------------------------------------------------------------


def test_agent_becomes_ready_and_idle(agent):
    before = timezone.now()

    updated = agent_state_set(agent=agent, state=AgentState.READY, changed_by=agent.user)

    agent.refresh_from_db()
    assert agent.state == updated.state == AgentState.READY
    assert agent.not_ready_reason is None
    assert agent.state_since >= before
    assert agent.idle_since == agent.state_since
    log = _open_log(agent)
    assert (log.state, log.not_ready_reason, log.changed_by, log.started_at) == (
        AgentState.READY,
        None,
        agent.user,
        agent.state_since,
    )


def test_agent_goes_not_ready_with_a_reason(agent, break_reason):
    agent_state_set(agent=agent, state=AgentState.READY)

    agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=break_reason)

    agent.refresh_from_db()
    assert (agent.state, agent.not_ready_reason) == (AgentState.NOT_READY, break_reason)
    assert agent.idle_since is None
    assert _open_log(agent).not_ready_reason == break_reason


def test_agent_logs_out(agent):
    agent_state_set(agent=agent, state=AgentState.READY)

    agent_state_set(agent=agent, state=AgentState.LOGGED_OUT)

    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT
    assert agent.idle_since is None
    assert _open_log(agent).state == AgentState.LOGGED_OUT


def test_not_ready_without_reason_is_refused_when_reasons_exist(agent, break_reason):
    agent_state_set(agent=agent, state=AgentState.READY)

    with pytest.raises(ValidationError):
        agent_state_set(agent=agent, state=AgentState.NOT_READY)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY
    assert AgentStateLog.objects.filter(agent=agent).count() == 1


def test_not_ready_without_reason_is_allowed_when_no_reason_is_selectable(agent, missed_reason):
    NotReadyReasonFactory(code="retired", is_active=False)

    agent_state_set(agent=agent, state=AgentState.NOT_READY)

    agent.refresh_from_db()
    assert (agent.state, agent.not_ready_reason) == (AgentState.NOT_READY, None)


def test_system_reason_cannot_be_chosen_by_the_agent(agent, missed_reason):
    with pytest.raises(ValidationError):
        agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=missed_reason)

    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT


def test_system_reason_can_be_set_by_the_system(agent, break_reason, missed_reason):
    agent_state_set(agent=agent, state=AgentState.READY)

    agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=missed_reason, by_system=True)

    agent.refresh_from_db()
    assert (agent.state, agent.not_ready_reason) == (AgentState.NOT_READY, missed_reason)
    assert _open_log(agent).changed_by is None


def test_inactive_reason_cannot_be_chosen(agent):
    retired = NotReadyReasonFactory(code="retired", is_active=False)

    with pytest.raises(ValidationError):
        agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=retired)


@pytest.mark.parametrize("state", [AgentState.READY, AgentState.LOGGED_OUT, AgentState.BUSY])
def test_only_not_ready_takes_a_reason(agent, break_reason, state):
    with pytest.raises(ValidationError):
        agent_state_set(agent=agent, state=state, reason=break_reason, by_system=True)


@pytest.mark.parametrize("state", [AgentState.BUSY, AgentState.AFTER_CALL_WORK])
def test_busy_and_after_call_work_are_refused_for_agents(agent, state):
    agent_state_set(agent=agent, state=AgentState.READY)

    with pytest.raises(ValidationError):
        agent_state_set(agent=agent, state=state, changed_by=agent.user)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY


@pytest.mark.parametrize("state", [AgentState.BUSY, AgentState.AFTER_CALL_WORK])
def test_busy_and_after_call_work_are_set_by_the_system(agent, state):
    agent_state_set(agent=agent, state=state, by_system=True)

    agent.refresh_from_db()
    assert agent.state == state
    assert agent.idle_since is None


def test_unknown_state_is_refused(agent):
    with pytest.raises(ValidationError):
        agent_state_set(agent=agent, state="lunch", by_system=True)


# --- logout guard ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [Interaction.State.OFFERED, Interaction.State.ACTIVE, Interaction.State.ON_HOLD])
def test_logout_is_refused_while_the_agent_has_a_live_interaction(agent, state):
    agent_state_set(agent=agent, state=AgentState.READY)
    _live_interaction(agent, state=state)

    with pytest.raises(ValidationError):
        agent_state_set(agent=agent, state=AgentState.LOGGED_OUT)
    with pytest.raises(ValidationError):
        agent_logout(user=agent.user)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY


def test_logout_is_allowed_once_the_interaction_ended(agent, other_agent):
    agent_state_set(agent=agent, state=AgentState.READY)
    interaction = _live_interaction(agent)
    Interaction.objects.filter(pk=interaction.pk).update(state=Interaction.State.ENDED, ended_at=timezone.now())
    _live_interaction(other_agent)

    agent_logout(user=agent.user)

    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT


def test_logout_of_a_user_without_agent_profile_does_nothing(plain_user):
    assert agent_logout(user=plain_user) is None


# --- the state log ----------------------------------------------------------------------------------------


def test_every_change_closes_the_previous_log_row_and_opens_a_new_one(agent, break_reason):
    training = NotReadyReasonFactory(name="Training", code="training")
    steps = [
        (AgentState.READY, None, False),
        (AgentState.NOT_READY, break_reason, False),
        (AgentState.NOT_READY, training, False),
        (AgentState.BUSY, None, True),
        (AgentState.AFTER_CALL_WORK, None, True),
        (AgentState.READY, None, False),
        (AgentState.LOGGED_OUT, None, False),
    ]

    for state, reason, by_system in steps:
        agent_state_set(agent=agent, state=state, reason=reason, by_system=by_system)
        assert AgentStateLog.objects.filter(agent=agent, ended_at__isnull=True).count() == 1

    log = list(AgentStateLog.objects.filter(agent=agent).order_by("started_at", "id"))
    assert [(row.state, row.not_ready_reason) for row in log] == [(s, r) for s, r, _system in steps]
    for previous, following in pairwise(log):
        assert previous.ended_at == following.started_at
    assert log[-1].ended_at is None
    agent.refresh_from_db()
    assert agent.state_since == log[-1].started_at


def test_setting_the_same_state_again_changes_nothing(agent):
    first = agent_state_set(agent=agent, state=AgentState.READY)

    again = agent_state_set(agent=agent, state=AgentState.READY)

    assert again.state_since == first.state_since
    assert AgentStateLog.objects.filter(agent=agent).count() == 1


def test_state_changes_of_one_agent_leave_others_alone(agent, other_agent):
    agent_state_set(agent=other_agent, state=AgentState.READY)

    agent_state_set(agent=agent, state=AgentState.READY)
    agent_state_set(agent=agent, state=AgentState.LOGGED_OUT)

    assert _open_log(other_agent).state == AgentState.READY


# --- login ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("login_state", [AgentState.READY, AgentState.NOT_READY])
def test_login_moves_a_logged_out_agent_to_the_configured_state(agent, break_reason, settings, login_state):
    settings.AGENT_STATE_ON_LOGIN = login_state

    profile = agent_login(user=agent.user)

    agent.refresh_from_db()
    assert profile.state == agent.state == login_state
    assert _open_log(agent).changed_by == agent.user


def test_login_keeps_the_state_of_an_agent_already_logged_in(agent, break_reason, settings):
    settings.AGENT_STATE_ON_LOGIN = AgentState.READY
    agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=break_reason)

    agent_login(user=agent.user)

    agent.refresh_from_db()
    assert (agent.state, agent.not_ready_reason) == (AgentState.NOT_READY, break_reason)
    assert AgentStateLog.objects.filter(agent=agent).count() == 1


def test_login_of_a_user_without_agent_profile_does_nothing(plain_user):
    assert agent_login(user=plain_user) is None
    assert not AgentProfile.objects.exists()


def test_agent_profile_ensure_creates_one_profile_logged_out():
    user = UserFactory()

    profile = agent_profile_ensure(user=user)

    assert agent_profile_ensure(user=user) == profile
    assert profile.state == AgentState.LOGGED_OUT
    assert AgentProfile.objects.filter(user=user).count() == 1


# --- database constraints -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [AgentState.READY, AgentState.BUSY, AgentState.AFTER_CALL_WORK, AgentState.LOGGED_OUT]
)
def test_not_ready_reason_only_when_not_ready(break_reason, state):
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentFactory(state=state, not_ready_reason=break_reason)


def test_not_ready_agent_may_have_a_reason(break_reason):
    agent = AgentFactory(state=AgentState.NOT_READY, not_ready_reason=break_reason)

    assert agent.not_ready_reason == break_reason


def test_one_open_state_log_row_per_agent(agent, other_agent):
    now = timezone.now()
    AgentStateLog.objects.create(agent=agent, state=AgentState.READY, started_at=now)
    AgentStateLog.objects.create(agent=other_agent, state=AgentState.READY, started_at=now)

    with pytest.raises(IntegrityError), transaction.atomic():
        AgentStateLog.objects.create(agent=agent, state=AgentState.NOT_READY, started_at=now)


def test_closed_state_log_rows_may_repeat(agent):
    now = timezone.now()
    for hours in (2, 1):
        AgentStateLog.objects.create(
            agent=agent,
            state=AgentState.READY,
            started_at=now - timedelta(hours=hours),
            ended_at=now - timedelta(hours=hours - 1),
        )

    assert AgentStateLog.objects.filter(agent=agent).count() == 2


def test_state_log_row_cannot_end_before_it_started(agent):
    now = timezone.now()

    with pytest.raises(IntegrityError), transaction.atomic():
        AgentStateLog.objects.create(
            agent=agent, state=AgentState.READY, started_at=now, ended_at=now - timedelta(seconds=1)
        )


# --- Ready while holding work, and the work cycle -----------------------------------------------------------


@pytest.fixture
def acw_timers(monkeypatch) -> list[tuple[tuple, int]]:
    """The end-of-wrap-up task is recorded instead of sent to the broker."""
    calls: list[tuple[tuple, int]] = []
    monkeypatch.setattr(
        "agents.tasks.agent_acw_expire.apply_async",
        lambda args=None, countdown=None, **kwargs: calls.append((tuple(args), countdown)),
    )
    return calls


def _end(interaction: Interaction) -> None:
    Interaction.objects.filter(pk=interaction.pk).update(state=Interaction.State.ENDED, ended_at=timezone.now())


def test_choosing_ready_while_holding_live_work_makes_the_agent_busy(agent, break_reason):
    agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=break_reason)
    _live_interaction(agent)

    agent_state_set(agent=agent, state=AgentState.READY, changed_by=agent.user)

    agent.refresh_from_db()
    assert (agent.state, agent.not_ready_reason) == (AgentState.BUSY, None)
    assert _open_log(agent).state == AgentState.BUSY


@pytest.mark.parametrize("state", [Interaction.State.OFFERED, Interaction.State.ON_HOLD])
def test_an_offer_or_a_held_call_also_counts_as_live_work(agent, break_reason, state):
    agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=break_reason)
    _live_interaction(agent, state=state)

    agent_state_set(agent=agent, state=AgentState.READY)

    agent.refresh_from_db()
    assert agent.state == AgentState.BUSY


def test_choosing_ready_with_only_ended_work_is_ready(agent, break_reason):
    agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=break_reason)
    _end(_live_interaction(agent))

    agent_state_set(agent=agent, state=AgentState.READY)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY


def test_choosing_ready_while_busy_changes_nothing(agent):
    _live_interaction(agent)
    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)

    agent_state_set(agent=agent, state=AgentState.READY, changed_by=agent.user)

    agent.refresh_from_db()
    assert agent.state == AgentState.BUSY
    assert AgentStateLog.objects.filter(agent=agent).count() == 1


def test_the_system_may_set_ready_despite_live_work(agent):
    _live_interaction(agent)

    agent_state_set(agent=agent, state=AgentState.READY, by_system=True)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY


def test_going_busy_from_ready_keeps_the_last_offer_time_for_routing(agent):
    agent_state_set(agent=agent, state=AgentState.READY)
    offered_at = timezone.now() - timedelta(minutes=3)
    AgentProfile.objects.filter(pk=agent.pk).update(idle_since=offered_at)

    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)

    agent.refresh_from_db()
    assert (agent.state, agent.idle_since) == (AgentState.BUSY, offered_at)


def test_work_started_makes_a_ready_agent_busy(agent):
    agent_state_set(agent=agent, state=AgentState.READY)

    agent_work_started(user=agent.user)

    agent.refresh_from_db()
    assert agent.state == AgentState.BUSY
    assert _open_log(agent).changed_by == agent.user


@pytest.mark.parametrize(
    "state", [AgentState.NOT_READY, AgentState.AFTER_CALL_WORK, AgentState.BUSY, AgentState.LOGGED_OUT]
)
def test_work_started_leaves_other_states_alone(agent, state):
    agent_state_set(agent=agent, state=state, by_system=True)

    agent_work_started(user=agent.user)

    agent.refresh_from_db()
    assert agent.state == state


def test_work_started_and_ended_for_a_user_without_agent_profile_do_nothing(plain_user):
    agent_work_started(user=plain_user)
    agent_work_ended(user=plain_user, wrapup_seconds=30)

    assert not AgentProfile.objects.exists()


def test_work_ended_without_wrapup_makes_a_busy_agent_ready(agent, acw_timers):
    _end(_live_interaction(agent))
    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)

    agent_work_ended(user=agent.user, wrapup_seconds=0)

    agent.refresh_from_db()
    assert (agent.state, agent.acw_until) == (AgentState.READY, None)
    assert agent.idle_since == agent.state_since
    assert acw_timers == []


def test_work_ended_with_wrapup_starts_after_call_work_with_its_timer(
    agent, acw_timers, django_capture_on_commit_callbacks
):
    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        agent_work_ended(user=agent.user, wrapup_seconds=90)

    agent.refresh_from_db()
    assert agent.state == AgentState.AFTER_CALL_WORK
    assert before + timedelta(seconds=90) <= agent.acw_until <= timezone.now() + timedelta(seconds=90)
    assert agent.idle_since is None
    assert acw_timers == [((agent.pk,), 90)]


def test_work_ended_without_an_answer_needs_no_wrapup(agent, acw_timers):
    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)

    agent_work_ended(user=agent.user, wrapup=False, wrapup_seconds=90)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY


def test_work_ended_while_other_work_is_live_keeps_the_agent_busy(agent, acw_timers):
    _live_interaction(agent)
    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)

    agent_work_ended(user=agent.user, wrapup_seconds=90)

    agent.refresh_from_db()
    assert agent.state == AgentState.BUSY


@pytest.mark.parametrize("state", [AgentState.NOT_READY, AgentState.LOGGED_OUT, AgentState.AFTER_CALL_WORK])
def test_work_ended_keeps_a_state_the_agent_chose(agent, break_reason, acw_timers, state):
    reason = break_reason if state == AgentState.NOT_READY else None
    agent_state_set(agent=agent, state=state, reason=reason, by_system=True)
    log_rows = AgentStateLog.objects.filter(agent=agent).count()

    agent_work_ended(user=agent.user, wrapup_seconds=90)

    agent.refresh_from_db()
    assert (agent.state, agent.not_ready_reason) == (state, reason)
    assert AgentStateLog.objects.filter(agent=agent).count() == log_rows
    assert acw_timers == []


@pytest.mark.django_db(transaction=True)
def test_work_ended_outside_a_transaction_locks_safely(acw_timers):
    """A task or a view may call it in autocommit mode; PostgreSQL refuses FOR UPDATE outside a transaction."""
    agent = AgentFactory()
    agent_state_set(agent=agent, state=AgentState.BUSY, by_system=True)

    agent_work_ended(user=agent.user, wrapup_seconds=0)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY


def _in_acw(agent: AgentProfile, *, due_in: timedelta) -> AgentProfile:
    return agent_state_set(
        agent=agent, state=AgentState.AFTER_CALL_WORK, by_system=True, acw_until=timezone.now() + due_in
    )


def test_acw_end_by_the_agent_returns_to_ready(agent):
    _in_acw(agent, due_in=timedelta(seconds=60))

    agent_acw_end(agent=agent, changed_by=agent.user)

    agent.refresh_from_db()
    assert (agent.state, agent.acw_until) == (AgentState.READY, None)
    assert _open_log(agent).changed_by == agent.user


def test_acw_end_with_live_work_returns_to_busy(agent):
    _in_acw(agent, due_in=timedelta(seconds=60))
    # The customer came back while the agent was wrapping up.
    _live_interaction(agent)

    agent_acw_end(agent=agent)

    agent.refresh_from_db()
    assert agent.state == AgentState.BUSY


def test_acw_end_by_timer_waits_until_it_is_due(agent):
    _in_acw(agent, due_in=timedelta(seconds=60))

    agent_acw_end(agent=agent, only_if_due=True)
    agent.refresh_from_db()
    assert agent.state == AgentState.AFTER_CALL_WORK

    AgentProfile.objects.filter(pk=agent.pk).update(acw_until=timezone.now() - timedelta(seconds=1))
    agent_acw_end(agent=agent, only_if_due=True)
    agent.refresh_from_db()
    assert agent.state == AgentState.READY


def test_acw_end_outside_after_call_work_changes_nothing(agent, break_reason):
    agent_state_set(agent=agent, state=AgentState.NOT_READY, reason=break_reason)

    agent_acw_end(agent=agent)

    agent.refresh_from_db()
    assert (agent.state, agent.not_ready_reason) == (AgentState.NOT_READY, break_reason)


def test_acw_expire_due_ends_only_overdue_wrapup(agent, other_agent, break_reason):
    _in_acw(agent, due_in=-timedelta(seconds=1))
    _in_acw(other_agent, due_in=timedelta(seconds=60))
    third = AgentFactory()
    agent_state_set(agent=third, state=AgentState.NOT_READY, reason=break_reason)

    assert agents_acw_expire_due() == 1

    profiles = AgentProfile.objects.filter(pk__in=[agent.pk, other_agent.pk, third.pk]).order_by("pk")
    states = list(profiles.values_list("state", flat=True))
    assert states == [AgentState.READY, AgentState.AFTER_CALL_WORK, AgentState.NOT_READY]


def test_acw_expire_task_ends_due_wrapup(agent):
    from agents.tasks import agent_acw_expire

    _in_acw(agent, due_in=-timedelta(seconds=1))

    agent_acw_expire(agent.pk)
    agent_acw_expire(999999)

    agent.refresh_from_db()
    assert agent.state == AgentState.READY
