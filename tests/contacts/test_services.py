"""Contact services and the contact-point constraints they rely on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from contacts.models import Contact, ContactPoint
from contacts.services import contact_identify, contact_point_add, contact_touch
from tests.factories import ContactFactory, ContactPointFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _german_default_region(settings):
    settings.DEFAULT_PHONE_REGION = "DE"


def test_unknown_address_creates_contact_with_names():
    contact, created = contact_identify(
        kind=ContactPoint.Kind.EMAIL, value="Jo@Example.com", first_name="Jo", last_name="Park", company="Acme"
    )

    assert created is True
    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.company) == ("Jo", "Park", "Acme")
    assert list(contact.points.values_list("kind", "value")) == [("email", "jo@example.com")]


def test_known_address_returns_its_contact_and_keeps_names():
    point = ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+49301234567")

    contact, created = contact_identify(kind=ContactPoint.Kind.PHONE, value="030 1234567", first_name="Someone")

    assert (contact, created) == (point.contact, False)
    assert contact.first_name == point.contact.first_name
    assert Contact.objects.count() == 1


def test_same_value_on_another_kind_is_another_contact():
    webchat, _ = contact_identify(kind=ContactPoint.Kind.WEBCHAT, value="visitor-42")
    messenger, created = contact_identify(kind=ContactPoint.Kind.MESSENGER, value="visitor-42")

    assert created is True
    assert webchat != messenger


def test_invalid_address_creates_nothing():
    with pytest.raises(ValidationError):
        contact_identify(kind=ContactPoint.Kind.PHONE, value="not a number")

    assert not Contact.objects.exists()


def test_contact_identify_reads_the_winner_when_the_insert_loses_a_race(monkeypatch):
    """The unique constraint decides a race: the loser's insert fails and it reads the winner's row."""
    winner = ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+49301234567")
    real_first = QuerySet.first
    missed = []

    def first_misses_the_uncommitted_winner(queryset):
        # The look-up ran before the other arrival committed its contact point.
        if queryset.model is ContactPoint and not missed:
            missed.append(queryset)
            return None
        return real_first(queryset)

    monkeypatch.setattr(QuerySet, "first", first_misses_the_uncommitted_winner)

    contact, created = contact_identify(kind=ContactPoint.Kind.PHONE, value="+49 30 1234567")

    assert missed
    assert (contact, created) == (winner.contact, False)
    assert Contact.objects.count() == 1
    assert ContactPoint.objects.count() == 1


def test_contact_point_add_stores_normalised_value():
    contact = ContactFactory()

    point = contact_point_add(contact=contact, kind=ContactPoint.Kind.PHONE, value="030 1234567", label="work")

    assert (point.contact, point.value, point.label) == (contact, "+49301234567", "work")


def test_contact_point_add_is_idempotent_for_the_same_contact():
    contact = ContactFactory()

    first = contact_point_add(contact=contact, kind=ContactPoint.Kind.EMAIL, value="a@example.com")
    again = contact_point_add(contact=contact, kind=ContactPoint.Kind.EMAIL, value="A@EXAMPLE.COM")

    assert first == again
    assert contact.points.count() == 1


def test_contact_point_add_refuses_another_contacts_address():
    owner = ContactPointFactory(kind=ContactPoint.Kind.EMAIL, value="shared@example.com").contact
    other = ContactFactory()

    with pytest.raises(IntegrityError):
        contact_point_add(contact=other, kind=ContactPoint.Kind.EMAIL, value="Shared@Example.com")

    assert ContactPoint.objects.get(value="shared@example.com").contact == owner
    assert not other.points.exists()


def test_contact_point_add_refuses_invalid_value():
    with pytest.raises(ValidationError):
        contact_point_add(contact=ContactFactory(), kind=ContactPoint.Kind.EMAIL, value="nope")


def test_contact_touch_moves_last_activity_to_now():
    contact = ContactFactory(last_activity_at=timezone.now() - timedelta(days=3))
    before = timezone.now()

    contact_touch(contact=contact)

    contact.refresh_from_db()
    assert contact.last_activity_at >= before


# --- database constraints ------------------------------------------------------------------


def test_contact_point_is_unique_per_kind_and_value():
    ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+49301234567")

    with pytest.raises(IntegrityError), transaction.atomic():
        ContactPointFactory(kind=ContactPoint.Kind.PHONE, value="+49301234567")

    assert ContactPoint.objects.count() == 1


def test_contact_point_value_may_repeat_across_kinds():
    ContactPointFactory(kind=ContactPoint.Kind.WEBCHAT, value="abc")
    ContactPointFactory(kind=ContactPoint.Kind.MESSENGER, value="abc")

    assert ContactPoint.objects.filter(value="abc").count() == 2


def test_contact_point_value_cannot_be_empty():
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactPointFactory(kind=ContactPoint.Kind.WEBCHAT, value="")


def test_contact_point_kind_must_be_known():
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactPointFactory(kind="fax", value="+49301234567")


# --- row-local helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "display_name", "initials"),
    [
        ({"first_name": "Anna", "last_name": "Schmidt"}, "Anna Schmidt", "AS"),
        ({"first_name": "", "last_name": "Schmidt"}, "Schmidt", "S"),
        ({"first_name": "", "last_name": "", "company": "acme"}, "acme", "A"),
    ],
)
def test_contact_display_name_and_initials(fields, display_name, initials):
    contact = ContactFactory(**fields)

    assert contact.display_name == display_name
    assert str(contact) == display_name
    assert contact.initials == initials


def test_contact_without_name_shows_its_id():
    contact = ContactFactory(first_name="", last_name="")

    assert str(contact.pk) in contact.display_name
    assert contact.initials == "?"
