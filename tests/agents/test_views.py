"""The desktop's state selector over HTTP, as htmx sends it."""

from __future__ import annotations

import pytest
from django.test import Client

from agents.models import AgentProfile, AgentState
from agents.services import agent_state_set
from conversations.models import Interaction
from tests.factories import TEST_PASSWORD, InteractionFactory, NotReadyReasonFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def test_login_puts_a_logged_out_agent_in_ready(agent):
    client = Client()
    response = client.post("/login/", {"username": agent.user.username, "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/desktop/"
    agent.refresh_from_db()
    assert agent.state == AgentState.READY


def test_wrong_password_is_refused_with_a_clear_error(agent):
    response = Client().post("/login/", {"username": agent.user.username, "password": "wrong"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content


def test_agent_sets_not_ready_with_reason(agent_client, agent):
    NotReadyReasonFactory(name="Break", code="break")
    response = agent_client.post("/desktop/state/", {"choice": "not_ready.break"}, headers=HTMX)
    assert response.status_code == 200
    assert b'data-state="not_ready"' in response.content
    agent.refresh_from_db()
    assert agent.state == AgentState.NOT_READY
    assert agent.not_ready_reason.code == "break"


def test_not_ready_without_reason_is_refused_when_reasons_exist(agent_client, agent):
    NotReadyReasonFactory(name="Break", code="break")
    response = agent_client.post("/desktop/state/", {"choice": "not_ready"}, headers=HTMX)
    assert response.status_code == 422
    assert b'role="alert"' in response.content
    agent.refresh_from_db()
    assert agent.state != AgentState.NOT_READY


def test_system_states_cannot_be_chosen(agent_client, agent):
    for choice in ("busy", "acw", "not_ready.missed"):
        response = agent_client.post("/desktop/state/", {"choice": choice}, headers=HTMX)
        assert response.status_code == 422
    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT


def test_logged_out_choice_ends_the_session(agent_client, agent):
    response = agent_client.post("/desktop/state/", {"choice": "logged_out"}, headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/"
    assert agent_client.get("/desktop/").status_code == 302


def test_logout_is_refused_while_the_agent_holds_a_live_interaction(agent_client, agent):
    agent_state_set(agent=agent, state=AgentState.READY)
    InteractionFactory(agent=agent.user, state=Interaction.State.ACTIVE)
    response = agent_client.post("/logout/")
    assert response["Location"] == "/desktop/"
    assert agent_client.get("/desktop/").status_code == 200
    assert AgentProfile.objects.get(pk=agent.pk).state == AgentState.READY


def test_state_change_requires_post_and_login(anonymous_client, agent_client):
    assert agent_client.get("/desktop/state/").status_code == 405
    response = anonymous_client.post("/desktop/state/", {"choice": "ready"})
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_state_change_is_csrf_protected(agent):
    client = Client(enforce_csrf_checks=True)
    client.login(username=agent.user.username, password=TEST_PASSWORD)
    assert client.post("/desktop/state/", {"choice": "ready"}).status_code == 403


def test_non_agent_cannot_change_state(plain_user):
    client = Client()
    client.login(username=plain_user.username, password=TEST_PASSWORD)
    assert client.post("/desktop/state/", {"choice": "ready"}).status_code == 403
