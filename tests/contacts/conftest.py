"""Fixtures for the contacts section: German phone numbers, a quiet channel layer, role fixtures."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from agents.models import AgentState
from core import realtime
from tests.factories import AgentFactory


@pytest.fixture(autouse=True)
def _german_default_region(settings):
    settings.DEFAULT_PHONE_REGION = "DE"


@pytest.fixture(autouse=True)
def _quiet_channel_layer(monkeypatch):
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: None)


@pytest.fixture
def merger(db):
    """An agent allowed to merge contacts (and undo merges)."""
    profile = AgentFactory()
    permission = Permission.objects.get(codename="merge_contact", content_type__app_label="contacts")
    profile.user.user_permissions.add(permission)
    return profile.user


@pytest.fixture
def ready_agent(db):
    """An agent logged in to the desktop and Ready."""
    return AgentFactory(state=AgentState.READY)
