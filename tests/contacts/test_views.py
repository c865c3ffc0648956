"""The contacts screens: each view as agent, supervisor, anonymous and plain user; search, forms, merges, privacy."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentState
from contacts.models import Contact, ContactMerge, ContactPoint
from conversations.models import Conversation, Medium
from tests.contacts.builders import BASE, closed_conversation
from tests.factories import TEST_PASSWORD, ContactFactory, ContactPointFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def maria(db):
    contact = ContactFactory(
        first_name="Maria", last_name="Schneider", company="Acme Travel", notes="VIP", tags=["gold"]
    )
    ContactPoint.objects.create(contact=contact, kind=ContactPoint.Kind.PHONE, value="+493023125417")
    ContactPoint.objects.create(contact=contact, kind=ContactPoint.Kind.EMAIL, value="maria@example.com")
    return contact


@pytest.fixture
def plain_client(plain_user) -> Client:
    client = Client()
    assert client.login(username=plain_user.username, password=TEST_PASSWORD)
    return client


@pytest.fixture
def merger_client(merger) -> Client:
    client = Client()
    assert client.login(username=merger.username, password=TEST_PASSWORD)
    return client


def _get_urls(contact_id: int) -> list[str]:
    return [
        reverse("contacts:search") + "?q=maria",
        reverse("contacts:page", args=[contact_id]),
        reverse("contacts:new"),
        reverse("contacts:edit", args=[contact_id]),
    ]


# --- who may see what ---------------------------------------------------------------------------------


def test_agent_and_supervisor_see_every_page(agent_client, supervisor_client, maria):
    for client in (agent_client, supervisor_client):
        for url in _get_urls(maria.pk):
            assert client.get(url).status_code == 200, url


def test_anonymous_users_are_sent_to_log_in(anonymous_client, maria):
    urls = [
        *_get_urls(maria.pk),
        reverse("contacts:duplicates"),
        reverse("contacts:export", args=[maria.pk]),
        reverse("contacts:merge", args=[maria.pk, maria.pk]),
    ]
    for url in urls:
        response = anonymous_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/"), url
    response = anonymous_client.post(reverse("contacts:follow-up", args=[maria.pk]), {"medium": "sms"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_plain_users_are_refused(plain_client, maria):
    for url in [*_get_urls(maria.pk), reverse("contacts:duplicates"), reverse("contacts:export", args=[maria.pk])]:
        assert plain_client.get(url).status_code == 403, url
    for name, data in (("erase", {"confirm": "erase"}), ("follow-up", {"medium": "sms"}), ("edit", {})):
        assert plain_client.post(reverse(f"contacts:{name}", args=[maria.pk]), data).status_code == 403
    assert plain_client.post(reverse("contacts:new"), {"first_name": "X"}).status_code == 403
    assert not Contact.objects.filter(first_name="X").exists()


# --- search -------------------------------------------------------------------------------------------


def _names(response) -> list[str]:
    return [contact.display_name for contact in response.context["results"]]


def test_search_by_name(agent_client, maria):
    ContactFactory(first_name="Other", last_name="Person")
    response = agent_client.get(reverse("contacts:search"), {"q": "schneider"})
    assert _names(response) == ["Maria Schneider"]
    assert "Acme Travel" in response.content.decode()


def test_search_by_a_phone_number_in_another_format(agent_client, maria):
    for typed in ("030 2312 5417", "0049 30/2312-5417"):
        assert _names(agent_client.get(reverse("contacts:search"), {"q": typed})) == ["Maria Schneider"], typed


def test_search_with_prefixes(agent_client, maria):
    other = ContactFactory(first_name="Maria", last_name="Other", company="Elsewhere")
    ContactPoint.objects.create(contact=other, kind=ContactPoint.Kind.EMAIL, value="other@example.org")
    search = reverse("contacts:search")
    assert _names(agent_client.get(search, {"q": "email:maria@example"})) == ["Maria Schneider"]
    assert _names(agent_client.get(search, {"q": "phone:030 23125417"})) == ["Maria Schneider"]
    assert _names(agent_client.get(search, {"q": 'company:"Acme Travel"'})) == ["Maria Schneider"]
    assert _names(agent_client.get(search, {"q": "company:Elsewhere"})) == ["Maria Other"]


def test_search_pages_with_a_more_link(agent_client):
    now = timezone.now()
    for index in range(30):
        ContactFactory(
            first_name="Pager", last_name=f"Person{index:02d}", last_activity_at=now - timedelta(minutes=index)
        )
    first = agent_client.get(reverse("contacts:search"), {"q": "pager"})
    assert len(first.context["results"]) == 25
    more_url = first.context["more_url"]
    assert more_url and "after=" in more_url
    assert more_url.replace("&", "&amp;") in first.content.decode()
    second = agent_client.get(reverse("contacts:search") + more_url)
    assert _names(second) == [f"Pager Person{index:02d}" for index in range(25, 30)]
    assert second.context["more_url"] == ""


def test_a_bad_after_value_shows_the_first_page(agent_client, maria):
    response = agent_client.get(reverse("contacts:search"), {"q": "maria", "after": "nonsense"})
    assert _names(response) == ["Maria Schneider"]


def test_a_contact_named_script_is_escaped(agent_client):
    contact = ContactFactory(first_name="<script>alert(1)</script>", last_name="Evil")
    for url in (reverse("contacts:search") + "?q=evil", reverse("contacts:page", args=[contact.pk])):
        body = agent_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# --- the contact page ---------------------------------------------------------------------------------


def test_contact_page_shows_summary_and_activities_newest_first(agent_client, maria):
    older = closed_conversation(maria, opened_at=BASE, media=(Medium.VOICE,))
    newer = closed_conversation(
        maria, opened_at=BASE + timedelta(days=2), media=(Medium.SMS,), body="Where is my refund?"
    )
    response = agent_client.get(reverse("contacts:page", args=[maria.pk]))
    body = response.content.decode()
    assert [item.pk for item in response.context["activities"]] == [newer.pk, older.pk]
    for text in ("MS", "Maria Schneider", "Acme Travel", "+493023125417", "VIP", "gold"):
        assert text in body
    assert body.index(reverse("conversations:history", args=[newer.uuid])) < body.index(
        reverse("conversations:history", args=[older.uuid])
    )
    found = agent_client.get(reverse("contacts:page", args=[maria.pk]), {"text": "refund"})
    assert [item.pk for item in found.context["activities"]] == [newer.pk]


def test_unknown_contact_is_404(agent_client):
    assert agent_client.get(reverse("contacts:page", args=[999999])).status_code == 404


# --- create and edit ----------------------------------------------------------------------------------


def test_create_saves_the_contact_and_its_addresses(agent_client):
    response = agent_client.post(
        reverse("contacts:new"),
        {
            "first_name": "Neo",
            "last_name": "Anderson",
            "tags": "vip, Vip, night",
            "points-0-kind": "phone",
            "points-0-value": "030 1234567",
            "points-1-kind": "email",
            "points-1-value": "NEO@Example.com",
        },
    )
    contact = Contact.objects.get(first_name="Neo")
    assert response.status_code == 302 and response["Location"] == reverse("contacts:page", args=[contact.pk])
    assert contact.tags == ["vip", "night"]
    assert sorted(contact.points.values_list("value", flat=True)) == ["+49301234567", "neo@example.com"]


def test_create_with_an_invalid_phone_shows_the_error_and_saves_nothing(agent_client):
    response = agent_client.post(
        reverse("contacts:new"), {"first_name": "Bad", "points-0-kind": "phone", "points-0-value": "12ab"}
    )
    assert response.status_code == 422
    assert response.context["form"].errors["points-0-value"]
    assert 'class="form-error"' in response.content.decode()
    assert not Contact.objects.filter(first_name="Bad").exists()


def test_create_with_an_address_of_another_contact_warns_with_a_link(agent_client, maria):
    response = agent_client.post(
        reverse("contacts:new"),
        {
            "first_name": "Copy",
            "points-0-kind": "email",
            "points-0-value": "",
            "points-1-kind": "phone",
            "points-1-value": "+49 30 23125417",
        },
    )
    assert response.status_code == 422
    assert response.context["form"].errors["points-1-value"]
    body = response.content.decode()
    assert "Maria Schneider" in body
    assert reverse("contacts:page", args=[maria.pk]) in body
    assert not Contact.objects.filter(first_name="Copy").exists()


def test_edit_changes_fields(supervisor_client, maria):
    response = supervisor_client.post(
        reverse("contacts:edit", args=[maria.pk]),
        {"first_name": "Maria", "last_name": "Schmidt", "company": "", "notes": "", "tags": "a, b"},
    )
    assert response.status_code == 302
    maria.refresh_from_db()
    assert (maria.last_name, maria.company, maria.tags) == ("Schmidt", "", ["a", "b"])


def test_edit_with_a_too_long_name_shows_the_error(agent_client, maria):
    response = agent_client.post(reverse("contacts:edit", args=[maria.pk]), {"first_name": "x" * 200})
    assert response.status_code == 422
    assert response.context["form"].errors["first_name"]
    maria.refresh_from_db()
    assert maria.first_name == "Maria"


def test_adding_an_address_of_another_contact_is_refused(agent_client, maria):
    other = ContactFactory()
    response = agent_client.post(
        reverse("contacts:point-add", args=[other.pk]), {"kind": "email", "value": "maria@example.com"}, follow=True
    )
    assert "Maria Schneider" in response.content.decode()
    assert not other.points.exists()


# --- duplicates and merges ----------------------------------------------------------------------------


def test_duplicates_and_merge_need_the_permission(agent_client, maria):
    twin = ContactFactory(first_name="Maria", last_name="Schneider")
    assert agent_client.get(reverse("contacts:duplicates")).status_code == 403
    assert agent_client.get(reverse("contacts:merge", args=[maria.pk, twin.pk])).status_code == 403
    assert agent_client.post(reverse("contacts:merge", args=[maria.pk, twin.pk])).status_code == 403
    twin.refresh_from_db()
    assert twin.merged_into_id is None


def test_merge_preview_confirm_and_undo_round_trip(merger_client, agent_client, maria):
    twin = ContactFactory(first_name="Maria", last_name="Schneider")
    ContactPoint.objects.create(contact=twin, kind=ContactPoint.Kind.EMAIL, value="maria.private@example.com")
    listed = merger_client.get(reverse("contacts:duplicates"))
    merge_url = reverse("contacts:merge", args=[twin.pk, maria.pk])
    assert listed.status_code == 200
    assert {frozenset((p.first.pk, p.second.pk)) for p in listed.context["pairs"]} == {frozenset((maria.pk, twin.pk))}

    preview = merger_client.get(merge_url)
    assert preview.status_code == 200
    assert "maria@example.com" in preview.content.decode()
    assert not ContactMerge.objects.exists()

    confirmed = merger_client.post(merge_url)
    assert confirmed.status_code == 302 and confirmed["Location"] == reverse("contacts:page", args=[twin.pk])
    maria.refresh_from_db()
    assert maria.merged_into_id == twin.pk
    assert merger_client.get(reverse("contacts:page", args=[maria.pk]))["Location"] == reverse(
        "contacts:page", args=[twin.pk]
    )
    merge = ContactMerge.objects.get()
    page = merger_client.get(reverse("contacts:page", args=[twin.pk])).content.decode()
    assert reverse("contacts:merge-undo", args=[merge.pk]) in page

    undo_url = reverse("contacts:merge-undo", args=[merge.pk])
    assert agent_client.post(undo_url).status_code == 403
    assert merger_client.get(undo_url).status_code == 405
    assert merger_client.post(undo_url).status_code == 302
    maria.refresh_from_db()
    merge.refresh_from_db()
    assert maria.merged_into_id is None and merge.undone_at is not None
    assert set(maria.points.values_list("value", flat=True)) == {"+493023125417", "maria@example.com"}


def test_a_refused_merge_shows_why(merger_client, maria):
    response = merger_client.post(reverse("contacts:merge", args=[maria.pk, maria.pk]))
    assert response.status_code == 422
    assert "itself" in response.content.decode()


# --- privacy ------------------------------------------------------------------------------------------


def test_supervisor_exports_json_and_agent_is_refused(supervisor_client, agent_client, maria):
    response = supervisor_client.get(reverse("contacts:export", args=[maria.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert "maria@example.com" in json.dumps(data)
    assert "Schneider" in json.dumps(data)
    assert agent_client.get(reverse("contacts:export", args=[maria.pk])).status_code == 403


def test_erase_needs_post_confirmation_and_a_supervisor(supervisor_client, agent_client, maria):
    url = reverse("contacts:erase", args=[maria.pk])
    assert supervisor_client.get(url).status_code == 405
    assert agent_client.post(url, {"confirm": "erase"}).status_code == 403
    assert supervisor_client.post(url).status_code == 302
    maria.refresh_from_db()
    assert maria.erased_at is None
    assert supervisor_client.post(url, {"confirm": "erase"}).status_code == 302
    maria.refresh_from_db()
    assert maria.erased_at is not None and maria.first_name == "" and not maria.points.exists()


def test_posts_need_the_csrf_token(supervisor, maria):
    client = Client(enforce_csrf_checks=True)
    client.force_login(supervisor)
    for name, data in (
        ("erase", {"confirm": "erase"}),
        ("follow-up", {"medium": "sms"}),
        ("edit", {"first_name": "Z"}),
    ):
        assert client.post(reverse(f"contacts:{name}", args=[maria.pk]), data).status_code == 403, name
    assert client.post(reverse("contacts:new"), {"first_name": "Z"}).status_code == 403
    maria.refresh_from_db()
    assert maria.erased_at is None and maria.first_name == "Maria"
    assert not Contact.objects.filter(first_name="Z").exists()


# --- following up -------------------------------------------------------------------------------------


def test_follow_up_opens_a_conversation_and_sends_the_agent_there(agent, agent_client, maria):
    agent.state = AgentState.READY
    agent.save()
    response = agent_client.post(reverse("contacts:follow-up", args=[maria.pk]), {"medium": Medium.SMS})
    conversation = Conversation.objects.get(contact=maria)
    assert response.status_code == 302
    assert response["Location"] == reverse("conversations:page", args=[conversation.uuid])
    assert conversation.assigned_agent == agent.user


def test_follow_up_without_an_address_stays_on_the_contact_page(agent, agent_client):
    agent.state = AgentState.READY
    agent.save()
    contact = ContactPointFactory(kind=ContactPoint.Kind.EMAIL).contact
    response = agent_client.post(reverse("contacts:follow-up", args=[contact.pk]), {"medium": Medium.SMS}, follow=True)
    assert "no phone number" in response.content.decode()
    assert not Conversation.objects.filter(contact=contact).exists()


def test_follow_up_refuses_a_supervisor_without_an_agent_profile(supervisor_client, maria):
    assert supervisor_client.post(reverse("contacts:follow-up", args=[maria.pk]), {"medium": "sms"}).status_code == 403


def test_htmx_search_gets_only_the_results(agent_client, maria):
    response = agent_client.get(reverse("contacts:search"), {"q": "maria"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="contact-results">')
    assert "Maria Schneider" in body and "<html" not in body


def test_activities_page_with_an_earlier_link(agent_client, maria):
    conversations = [closed_conversation(maria, opened_at=BASE + timedelta(hours=index)) for index in range(22)]
    first = agent_client.get(reverse("contacts:page", args=[maria.pk]))
    assert [item.pk for item in first.context["activities"]] == [c.pk for c in reversed(conversations)][:20]
    earlier = agent_client.get(reverse("contacts:page", args=[maria.pk]) + first.context["earlier_url"])
    assert [item.pk for item in earlier.context["activities"]] == [conversations[1].pk, conversations[0].pk]
    assert earlier.context["earlier_url"] == ""


# --- the live "address taken" warning -----------------------------------------------------------------


def _check(client, **params):
    return client.get(reverse("contacts:address-check"), params)


def test_address_check_warns_while_typing_a_number_of_another_contact_in_any_format(agent_client, maria):
    response = _check(agent_client, prefix="points-1-", **{"points-1-kind": "phone", "points-1-value": "030 23125417"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="address-check-points-1"' in html
    assert "Maria Schneider" in html
    assert reverse("contacts:page", args=[maria.pk]) in html


def test_address_check_is_quiet_for_a_free_address_and_for_the_contacts_own(agent_client, maria):
    free = _check(agent_client, kind="email", value="someone.else@example.com").content.decode()
    own = _check(agent_client, kind="email", value="MARIA@example.com", exclude=maria.pk).content.decode()
    for html in (free, own):
        assert 'id="address-check-point"' in html
        assert "belongs to another contact" not in html


def test_address_check_explains_an_invalid_address(agent_client):
    html = _check(agent_client, kind="phone", value="call me").content.decode()
    assert "not a possible phone number" in html or "not a phone number" in html


def test_address_check_ignores_a_forged_prefix(agent_client, maria):
    html = _check(agent_client, prefix='"><script>', kind="phone", value="+493023125417").content.decode()
    assert "<script>" not in html
    assert 'id="address-check-point"' in html


def test_address_check_is_refused_to_plain_and_anonymous_users(plain_client, anonymous_client, maria):
    assert _check(plain_client, kind="phone", value="+493023125417").status_code == 403
    assert _check(anonymous_client, kind="phone", value="+493023125417").status_code == 302


def test_contact_forms_ask_for_the_check_while_typing(agent_client, maria):
    url = reverse("contacts:address-check")
    assert f'hx-get="{url}?prefix=points-0-"' in agent_client.get(reverse("contacts:new")).content.decode()
    page = agent_client.get(reverse("contacts:page", args=[maria.pk])).content.decode()
    assert f'hx-get="{url}?prefix=&amp;exclude={maria.pk}"' in page
