"""Normalisation of contact-point values: one spelling per address."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from contacts.models import Contact, ContactPoint
from contacts.normalize import (
    MAX_POINT_LENGTH,
    normalize_email,
    normalize_opaque,
    normalize_phone,
    normalize_point,
)
from contacts.services import contact_identify

BERLIN_E164 = "+49301234567"
# One Berlin number as a customer might type it: international, national, with the 00 prefix.
BERLIN_SPELLINGS = ["+49 30 1234567", "030 1234567", "0049301234567"]


@pytest.fixture(autouse=True)
def _german_default_region(settings):
    settings.DEFAULT_PHONE_REGION = "DE"


@pytest.mark.parametrize("raw", [*BERLIN_SPELLINGS, "(030) 123-4567", "  +49-30-123 45 67  "])
def test_phone_spellings_normalise_to_one_e164_value(raw):
    assert normalize_phone(raw) == BERLIN_E164


def test_national_phone_is_read_in_the_default_region(settings):
    settings.DEFAULT_PHONE_REGION = "GB"

    assert normalize_phone("020 7946 0018") == "+442079460018"
    assert normalize_phone("030 1234567", region="DE") == BERLIN_E164


@pytest.mark.django_db
def test_same_phone_in_three_formats_identifies_one_contact():
    results = [contact_identify(kind=ContactPoint.Kind.PHONE, value=raw) for raw in BERLIN_SPELLINGS]

    contacts = {contact.pk for contact, _created in results}
    assert [created for _contact, created in results] == [True, False, False]
    assert len(contacts) == 1
    assert Contact.objects.count() == 1
    point = ContactPoint.objects.get()
    assert (point.kind, point.value) == (ContactPoint.Kind.PHONE, BERLIN_E164)


@pytest.mark.parametrize("raw", ["Anna.Schmidt@Example.COM", "  anna.schmidt@example.com ", "ANNA.SCHMIDT@EXAMPLE.COM"])
def test_email_is_case_folded_and_trimmed(raw):
    assert normalize_email(raw) == "anna.schmidt@example.com"


@pytest.mark.django_db
def test_email_in_other_case_identifies_the_same_contact():
    first, created = contact_identify(kind=ContactPoint.Kind.EMAIL, value="Anna.Schmidt@Example.com")
    again, created_again = contact_identify(kind=ContactPoint.Kind.EMAIL, value="anna.schmidt@EXAMPLE.com")

    assert (created, created_again) == (True, False)
    assert again == first
    assert ContactPoint.objects.get().value == "anna.schmidt@example.com"


@pytest.mark.parametrize("raw", ["", "   ", "abc", "call me", "+1 2", "+49 30 1234567890123456789"])
def test_invalid_phone_raises_validation_error(raw):
    with pytest.raises(ValidationError):
        normalize_phone(raw)


@pytest.mark.parametrize("raw", ["", "anna", "anna@", "@example.com", "anna schmidt@example.com", "anna@@example.com"])
def test_invalid_email_raises_validation_error(raw):
    with pytest.raises(ValidationError):
        normalize_email(raw)


def test_email_longer_than_the_column_is_refused():
    too_long = "a" * (MAX_POINT_LENGTH - len("@example.com") + 1) + "@example.com"

    with pytest.raises(ValidationError):
        normalize_email(too_long)


@pytest.mark.parametrize("kind", [ContactPoint.Kind.WEBCHAT, ContactPoint.Kind.MESSENGER])
@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_opaque_identifier_is_refused(kind, raw):
    with pytest.raises(ValidationError):
        normalize_point(kind, raw)


def test_opaque_identifier_is_trimmed_but_keeps_its_case():
    assert normalize_opaque("  Visitor-AbC123 ") == "Visitor-AbC123"


def test_opaque_identifier_longer_than_the_column_is_refused():
    assert normalize_opaque("x" * MAX_POINT_LENGTH) == "x" * MAX_POINT_LENGTH
    with pytest.raises(ValidationError):
        normalize_opaque("x" * (MAX_POINT_LENGTH + 1))


def test_unknown_kind_is_refused():
    with pytest.raises(ValidationError):
        normalize_point("fax", "+49 30 1234567")


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        (ContactPoint.Kind.PHONE, "030 1234567", BERLIN_E164),
        (ContactPoint.Kind.EMAIL, "Anna@Example.com", "anna@example.com"),
        (ContactPoint.Kind.WEBCHAT, " visitor-1 ", "visitor-1"),
        (ContactPoint.Kind.MESSENGER, "whatsapp:4930", "whatsapp:4930"),
    ],
)
def test_normalize_point_dispatches_on_kind(kind, raw, expected):
    assert normalize_point(kind, raw) == expected


@pytest.mark.django_db
def test_empty_webchat_id_creates_no_contact():
    with pytest.raises(ValidationError):
        contact_identify(kind=ContactPoint.Kind.WEBCHAT, value="  ")

    assert not Contact.objects.exists()
    assert not ContactPoint.objects.exists()
