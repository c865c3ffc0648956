"""The ICE servers endpoint: agents only, short-lived TURN credentials."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_agent_gets_ice_servers_with_turn_credentials(agent_client, settings):
    settings.VOICE_STUN_URLS = ["stun:turn.example.org"]
    settings.VOICE_TURN_URLS = ["turn:turn.example.org"]
    settings.VOICE_TURN_SECRET = "secret"
    response = agent_client.get(reverse("voice:ice-servers"))
    assert response.status_code == 200
    servers = response.json()["iceServers"]
    assert servers[0] == {"urls": ["stun:turn.example.org"]}
    assert servers[1]["username"].count(":") == 1 and servers[1]["credential"]
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_anonymous_is_sent_to_login(anonymous_client):
    response = anonymous_client.get(reverse("voice:ice-servers"))
    assert response.status_code == 302


def test_non_agent_is_refused(client, plain_user):
    client.force_login(plain_user)
    assert client.get(reverse("voice:ice-servers")).status_code == 403


def test_post_is_refused(agent_client):
    assert agent_client.post(reverse("voice:ice-servers")).status_code == 405
