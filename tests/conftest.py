"""Fixtures shared by the whole suite: one per role, and the real components."""

from __future__ import annotations

import os

import pytest
from django.test import Client

from tests.factories import TEST_PASSWORD, AgentFactory, ContactPointFactory, SupervisorFactory, UserFactory

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_component(available: bool, what: str) -> None:
    """Skip locally when a real component is missing; in CI that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available")


@pytest.fixture
def agent(db):
    return AgentFactory()


@pytest.fixture
def other_agent(db):
    return AgentFactory()


@pytest.fixture
def supervisor(db):
    return SupervisorFactory()


@pytest.fixture
def plain_user(db):
    """Logged-in user who is neither agent nor supervisor."""
    return UserFactory()


@pytest.fixture
def customer_point(db):
    """A customer: a contact known by an email address."""
    return ContactPointFactory()


def _client_for(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return client


@pytest.fixture
def agent_client(agent) -> Client:
    return _client_for(agent.user)


@pytest.fixture
def other_agent_client(other_agent) -> Client:
    return _client_for(other_agent.user)


@pytest.fixture
def supervisor_client(supervisor) -> Client:
    return _client_for(supervisor)


@pytest.fixture
def anonymous_client() -> Client:
    return Client()
