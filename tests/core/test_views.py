"""Core pages: health, security headers, login, who may see the desktop."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok(anonymous_client):
    response = anonymous_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_every_page_carries_a_content_security_policy(anonymous_client):
    response = anonymous_client.get("/login/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_desktop_requires_login(anonymous_client):
    response = anonymous_client.get("/desktop/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/desktop/"


def test_home_leads_to_the_desktop(anonymous_client):
    assert anonymous_client.get("/")["Location"] == "/desktop/"


def test_agent_sees_the_desktop(agent_client, agent):
    response = agent_client.get("/desktop/")
    assert response.status_code == 200
    assert b'id="agent-state"' in response.content
    assert b'ws-connect="/ws/agent/"' in response.content


def test_supervisor_without_agent_profile_is_sent_to_the_admin(supervisor_client):
    response = supervisor_client.get("/desktop/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_user_who_is_neither_agent_nor_supervisor_is_refused(plain_user):
    from tests.conftest import _client_for

    assert _client_for(plain_user).get("/desktop/").status_code == 403


def test_login_page_renders_in_german_for_accept_language_de(anonymous_client):
    response = anonymous_client.get("/login/", headers={"accept-language": "de-DE,de;q=0.9"})
    content = response.content.decode()
    assert '<html lang="de">' in content
    assert "Anmelden" in content
    assert "Benutzername" in content
