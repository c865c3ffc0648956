"""Creating and editing contacts: validation, normalised addresses, warnings about another contact's address."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.utils import timezone

from contacts.models import Contact, ContactPoint
from contacts.services import (
    clean_tags,
    contact_create,
    contact_point_create,
    contact_point_remove,
    contact_update,
)
from conversations.models import Medium
from conversations.services import conversation_close, inbound_contact_receive
from tests.contacts.builders import EMAIL, PHONE, WEBCHAT, contact_with_points
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _errors(exc: pytest.ExceptionInfo) -> dict[str, list[str]]:
    return exc.value.message_dict


def test_create_normalises_every_address(agent):
    contact = contact_create(
        actor=agent.user,
        first_name="  Anna ",
        last_name="Schmidt",
        company="Acme",
        notes="Window seat.",
        tags=["VIP", " vip ", "press"],
        points=[(PHONE, "030 123-4567", "work"), (EMAIL, "Anna@Example.COM")],
    )

    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.company, contact.notes) == (
        "Anna",
        "Schmidt",
        "Acme",
        "Window seat.",
    )
    assert contact.tags == ["VIP", "press"]
    assert list(contact.points.values_list("kind", "value", "label")) == [
        ("email", "anna@example.com", ""),
        ("phone", "+49301234567", "work"),
    ]


def test_create_reports_each_problem_under_its_field(agent):
    with pytest.raises(ValidationError) as exc:
        contact_create(
            actor=agent.user,
            first_name="x" * 151,
            points=[(PHONE, "call me"), (EMAIL, "anna@"), ("fax", "123"), (EMAIL, "ok@example.com", "l" * 51)],
        )

    assert set(_errors(exc)) == {"first_name", "points-0-value", "points-1-value", "points-2-kind", "points-3-label"}
    assert not Contact.objects.exists()


def test_create_refuses_an_address_of_another_contact_and_names_it(agent):
    owner = contact_with_points((PHONE, "+49301234567"), first_name="Bob", last_name="Park")

    with pytest.raises(ValidationError) as exc:
        contact_create(actor=agent.user, first_name="Anna", points=[(EMAIL, "a@example.com"), (PHONE, "030 1234567")])

    assert _errors(exc) == {"points-1-value": [f"+49301234567 already belongs to Bob Park (contact #{owner.pk})."]}
    assert Contact.objects.get() == owner


def test_create_refuses_one_address_listed_twice_in_two_spellings(agent):
    with pytest.raises(ValidationError) as exc:
        contact_create(actor=agent.user, points=[(PHONE, "+49 30 1234567"), (PHONE, "030 1234567")])

    assert _errors(exc) == {"points-1-value": ["This address is listed twice."]}


def test_create_needs_a_name_company_or_address(agent):
    with pytest.raises(ValidationError) as exc:
        contact_create(actor=agent.user, first_name="  ", notes="only a note")

    assert NON_FIELD_ERRORS in _errors(exc)


@pytest.mark.parametrize(
    ("tags", "error"),
    [
        ("vip", "list of words"),
        ([1, 2], "list of words"),
        (["t" * 41], "at most 40"),
        ([f"t{i}" for i in range(21)], "at most 20"),
    ],
)
def test_tags_are_checked(tags, error):
    with pytest.raises(ValidationError, match=error):
        clean_tags(tags)


def test_update_changes_only_the_fields_given(agent):
    contact = ContactFactory(first_name="Anna", last_name="Schmidt", company="Acme", notes="n", tags=["VIP"])

    contact_update(actor=agent.user, contact=contact, company=" Globex ", tags=[])

    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.company, contact.notes, contact.tags) == (
        "Anna",
        "Schmidt",
        "Globex",
        "n",
        [],
    )


def test_update_of_a_merged_or_erased_contact_is_refused(agent):
    kept = ContactFactory()
    merged = ContactFactory(merged_into=kept)
    erased = ContactFactory(erased_at=timezone.now())

    with pytest.raises(ValidationError, match="merged into"):
        contact_update(actor=agent.user, contact=merged, first_name="X")
    with pytest.raises(ValidationError, match="erased"):
        contact_update(actor=agent.user, contact=erased, first_name="X")


def test_point_create_adds_a_normalised_address(agent):
    contact = ContactFactory()

    point = contact_point_create(actor=agent.user, contact=contact, kind=PHONE, value="(030) 1234567", label="home")

    assert (point.contact, point.value, point.label) == (contact, "+49301234567", "home")


def test_point_create_returns_the_contacts_own_address(agent):
    point = contact_with_points((EMAIL, "anna@example.com")).points.get()

    again = contact_point_create(actor=agent.user, contact=point.contact, kind=EMAIL, value="ANNA@example.com")

    assert again == point


def test_point_create_refuses_another_contacts_address_naming_it(agent):
    owner = contact_with_points((EMAIL, "anna@example.com"), first_name="Anna", last_name="Schmidt")
    other = ContactFactory()

    with pytest.raises(ValidationError) as exc:
        contact_point_create(actor=agent.user, contact=other, kind=EMAIL, value="Anna@Example.com")

    assert _errors(exc) == {"value": [f"anna@example.com already belongs to Anna Schmidt (contact #{owner.pk})."]}
    assert not other.points.exists()


def test_point_create_reports_an_invalid_value(agent):
    with pytest.raises(ValidationError) as exc:
        contact_point_create(actor=agent.user, contact=ContactFactory(), kind=PHONE, value="call me")

    assert set(_errors(exc)) == {"value"}


def test_point_remove_deletes_the_address_even_the_last_one(agent):
    contact = contact_with_points((PHONE, "+49301234567"))
    closed = inbound_contact_receive(point_kind=PHONE, address="+49301234567", medium=Medium.SMS).conversation
    conversation_close(conversation=closed)

    contact_point_remove(actor=agent.user, point=contact.points.get())

    assert not contact.points.exists()
    assert contact.conversations.count() == 1


def test_point_remove_is_refused_while_a_live_interaction_uses_that_kind_of_address(agent):
    contact = contact_with_points((PHONE, "+49301234567"), (EMAIL, "anna@example.com"))
    inbound_contact_receive(point_kind=PHONE, address="+49301234567", medium=Medium.VOICE)

    with pytest.raises(ValidationError, match="in use"):
        contact_point_remove(actor=agent.user, point=contact.points.get(kind=PHONE))

    contact_point_remove(actor=agent.user, point=contact.points.get(kind=EMAIL))
    assert list(contact.points.values_list("kind", flat=True)) == [PHONE]


def test_point_remove_on_a_webchat_address_during_a_chat_is_refused(agent):
    contact = contact_with_points((WEBCHAT, "visitor-1"))
    inbound_contact_receive(point_kind=WEBCHAT, address="visitor-1", medium=Medium.CHAT)

    with pytest.raises(ValidationError):
        contact_point_remove(actor=agent.user, point=contact.points.get())

    assert ContactPoint.objects.count() == 1


@pytest.mark.parametrize("who", ["plain_user", "anonymous", "none"])
def test_only_agents_and_supervisors_edit_contacts(who, request):
    actor = (
        {"anonymous": AnonymousUser(), "none": None}[who]
        if who in ("anonymous", "none")
        else request.getfixturevalue(who)
    )
    contact = contact_with_points((EMAIL, "anna@example.com"), first_name="Anna")

    with pytest.raises(PermissionDenied):
        contact_create(actor=actor, first_name="New")
    with pytest.raises(PermissionDenied):
        contact_update(actor=actor, contact=contact, first_name="Changed")
    with pytest.raises(PermissionDenied):
        contact_point_create(actor=actor, contact=contact, kind=PHONE, value="030 1234567")
    with pytest.raises(PermissionDenied):
        contact_point_remove(actor=actor, point=contact.points.get())

    contact.refresh_from_db()
    assert contact.first_name == "Anna"
    assert Contact.objects.count() == 1
    assert ContactPoint.objects.count() == 1


def test_a_supervisor_can_edit_contacts(supervisor):
    contact = contact_create(actor=supervisor, first_name="Anna")

    contact_update(actor=supervisor, contact=contact, last_name="Schmidt")

    assert Contact.objects.get().display_name == "Anna Schmidt"


class _RecordingLayer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message))


def test_changing_the_contact_of_an_open_conversation_tells_its_agent_after_commit(
    agent, monkeypatch, django_capture_on_commit_callbacks
):
    """Adding a number during a chat makes SMS available in the agent's composer without a reload."""
    from core import realtime
    from core.groups import agent_group

    layer = _RecordingLayer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda *args, **kwargs: layer)
    contact = contact_with_points((WEBCHAT, "visitor-1"))
    conversation = inbound_contact_receive(point_kind=WEBCHAT, address="visitor-1", medium=Medium.CHAT).conversation
    conversation.assigned_agent = agent.user
    conversation.save(update_fields=["assigned_agent"])
    closed_elsewhere = contact_with_points((EMAIL, "other@example.com"))
    expected = (
        agent_group(agent.user.pk),
        {"type": "conversation.contact", "conversation": str(conversation.uuid)},
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        point = contact_point_create(actor=agent.user, contact=contact, kind=PHONE, value="030 1234567")
    assert layer.sent == []
    for callback in callbacks:
        callback()
    assert layer.sent == [expected]

    for change in (
        lambda: contact_update(actor=agent.user, contact=contact, first_name="Anna"),
        lambda: contact_point_remove(actor=agent.user, point=point),
    ):
        layer.sent.clear()
        with django_capture_on_commit_callbacks(execute=True):
            change()
        assert layer.sent == [expected]

    layer.sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        contact_update(actor=agent.user, contact=closed_elsewhere, company="Acme")
    assert layer.sent == []
