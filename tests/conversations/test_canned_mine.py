"""Agents keep their own canned responses; admins define the shared ones."""

from __future__ import annotations

import pytest

from conversations.models import CannedResponse

pytestmark = pytest.mark.django_db


def test_agent_adds_a_personal_canned_response_and_it_is_suggested(agent_client, agent):
    response = agent_client.post(
        "/desktop/canned/mine/", {"shortcut": "refund", "title": "Refund", "body": "Hi {first_name}, refunded."}
    )
    assert response.status_code == 302
    canned = CannedResponse.objects.get(shortcut="refund")
    assert canned.owner == agent.user
    suggestions = agent_client.get("/desktop/canned/?q=ref", headers={"HX-Request": "true"}).content.decode()
    assert "/refund" in suggestions


def test_duplicate_shortcut_of_the_same_agent_is_refused_with_a_message(agent_client, agent):
    CannedResponse.objects.create(owner=agent.user, shortcut="hi", title="Hi", body="Hello")
    response = agent_client.post("/desktop/canned/mine/", {"shortcut": "hi", "title": "Again", "body": "Hello"})
    assert response.status_code == 422
    assert b'role="alert"' in response.content
    assert CannedResponse.objects.filter(owner=agent.user).count() == 1


def test_list_shows_own_and_shared_but_not_other_agents(agent_client, agent, other_agent):
    CannedResponse.objects.create(owner=agent.user, shortcut="mine", title="Mine", body="m")
    CannedResponse.objects.create(owner=other_agent.user, shortcut="theirs", title="Theirs", body="t")
    CannedResponse.objects.create(owner=None, shortcut="shared", title="Shared", body="s")
    content = agent_client.get("/desktop/canned/mine/").content.decode()
    assert "/mine" in content
    assert "/shared" in content
    assert "/theirs" not in content


def test_agent_deletes_only_their_own(agent_client, agent, other_agent):
    mine = CannedResponse.objects.create(owner=agent.user, shortcut="mine", title="Mine", body="m")
    theirs = CannedResponse.objects.create(owner=other_agent.user, shortcut="theirs", title="Theirs", body="t")
    shared = CannedResponse.objects.create(owner=None, shortcut="shared", title="Shared", body="s")
    assert agent_client.post(f"/desktop/canned/mine/{mine.pk}/delete/").status_code == 302
    assert agent_client.post(f"/desktop/canned/mine/{theirs.pk}/delete/").status_code == 404
    assert agent_client.post(f"/desktop/canned/mine/{shared.pk}/delete/").status_code == 404
    assert set(CannedResponse.objects.values_list("shortcut", flat=True)) == {"theirs", "shared"}


def test_anonymous_and_non_agents_are_refused(anonymous_client, plain_user):
    from tests.conftest import _client_for

    assert anonymous_client.get("/desktop/canned/mine/").status_code == 302
    assert _client_for(plain_user).get("/desktop/canned/mine/").status_code == 403
