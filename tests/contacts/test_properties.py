"""Properties of recognition: any spelling of one address is one contact; different addresses never collide."""

from __future__ import annotations

import phonenumbers
from django.test import override_settings
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from contacts.models import ContactPoint
from contacts.normalize import normalize_email, normalize_phone
from contacts.selectors import contacts_search
from contacts.services import contact_identify

# Regions whose numbers are written with a trunk "0" at home, shown as "(0)" in international spellings.
TRUNK_ZERO_REGIONS = ("DE", "GB", "FR", "AT", "CH", "NL")
REGIONS = (*TRUNK_ZERO_REGIONS, "US", "IT")
SEPARATORS = ("", " ", "-", ".", "/", "  ")


@st.composite
def phone_numbers(draw) -> tuple[str, str, str]:
    """A possible mobile number: (region, E.164 country code digits, national significant number)."""
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    national = str(example.national_number)
    tail = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    national = national[:-4] + tail
    number = phonenumbers.parse(f"+{example.country_code}{national}")
    assume(phonenumbers.is_possible_number(number))
    return region, str(example.country_code), national


@st.composite
def grouped(draw, digits: str) -> str:
    """The digits split into groups by the separators people type."""
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=len(digits) - 1), max_size=4)))
    parts = [digits[start:end] for start, end in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + part
    return text


@st.composite
def spellings(draw, number: tuple[str, str, str]) -> str:
    """One way to write ``number``: +49…, 0049…, +49 (0)…, or national 0… for a German number."""
    region, country_code, national = number
    styles = ["plus", "double_zero"]
    if region in TRUNK_ZERO_REGIONS:
        styles.append("plus_trunk")
    if region == "DE":
        styles += ["national", "national_parentheses"]
    style = draw(st.sampled_from(styles))
    body = draw(grouped(national))
    separator = draw(st.sampled_from((" ", "-", "", " ")))
    if style == "plus":
        text = f"+{country_code}{separator}{body}"
    elif style == "double_zero":
        text = f"00{country_code}{separator}{body}"
    elif style == "plus_trunk":
        text = f"+{country_code} (0){body}"
    elif style == "national":
        text = f"0{body}"
    else:
        split = draw(st.integers(min_value=2, max_value=4))
        area, rest = national[:split], national[split:]
        text = f"(0{area}) {draw(grouped(rest)) if len(rest) > 1 else rest}"
    padding = draw(st.sampled_from(("", " ", "\t")))
    return f"{padding}{text}{padding}"


@st.composite
def number_with_two_spellings(draw):
    number = draw(phone_numbers())
    return number, draw(spellings(number)), draw(spellings(number))


LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
emails = st.builds(
    lambda local, extra, domain, tld: f"{local}{extra}@{domain}.{tld}",
    LOCAL,
    st.sampled_from(("", ".x", "+tag", "_y", "-z")),
    LOCAL,
    st.sampled_from(("com", "de", "example", "co.uk")),
)


@st.composite
def in_any_case(draw, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(char.upper() if flip else char for char, flip in zip(text, flips, strict=True))


# --- pure normalisation ---------------------------------------------------------------------------------


# tests/contacts/conftest.py sets the default region to Germany for every test here.
@given(number_with_two_spellings())
@settings(max_examples=300)
def test_every_spelling_of_a_number_normalises_to_its_e164_value(case):
    (_region, country_code, national), first, second = case

    assert normalize_phone(first) == normalize_phone(second) == f"+{country_code}{national}"


@given(phone_numbers(), phone_numbers(), st.data())
@settings(max_examples=300)
def test_different_numbers_never_normalise_to_the_same_value(first, second, data):
    assume(first[1:] != second[1:])

    assert normalize_phone(data.draw(spellings(first))) != normalize_phone(data.draw(spellings(second)))


@given(emails, st.data())
@settings(max_examples=300)
def test_an_email_in_any_case_normalises_to_lower_case(email, data):
    assert normalize_email(data.draw(in_any_case(email))) == email.lower()


@given(emails, emails)
def test_different_emails_never_normalise_to_the_same_value(first, second):
    assume(first.lower() != second.lower())

    assert normalize_email(first) != normalize_email(second)


# --- recognition against the database -------------------------------------------------------------------


@override_settings(DEFAULT_PHONE_REGION="DE")
class RecognitionProperties(TestCase):
    """Each example runs in its own transaction, rolled back afterwards."""

    @given(number_with_two_spellings())
    @settings(max_examples=60, deadline=None)
    def test_any_spelling_of_a_number_resolves_to_the_same_contact(self, case):
        (_region, country_code, national), first, second = case

        contact, created = contact_identify(kind=ContactPoint.Kind.PHONE, value=first)
        again, created_again = contact_identify(kind=ContactPoint.Kind.PHONE, value=second)

        assert (created, created_again) == (True, False)
        assert again == contact
        assert contact.points.get().value == f"+{country_code}{national}"
        assert [found.pk for found in contacts_search(query=second)] == [contact.pk]
        assert [found.pk for found in contacts_search(query=f"phone:{second.strip()}")] == [contact.pk]

    @given(phone_numbers(), phone_numbers(), st.data())
    @settings(max_examples=60, deadline=None)
    def test_different_numbers_resolve_to_different_contacts(self, first, second, data):
        assume(first[1:] != second[1:])

        one, _ = contact_identify(kind=ContactPoint.Kind.PHONE, value=data.draw(spellings(first)))
        other, created = contact_identify(kind=ContactPoint.Kind.PHONE, value=data.draw(spellings(second)))

        assert created is True
        assert one != other

    @given(emails, st.data())
    @settings(max_examples=60, deadline=None)
    def test_an_email_in_any_case_resolves_to_the_same_contact(self, email, data):
        contact, _ = contact_identify(kind=ContactPoint.Kind.EMAIL, value=data.draw(in_any_case(email)))
        again, created = contact_identify(kind=ContactPoint.Kind.EMAIL, value=data.draw(in_any_case(email)))

        assert created is False
        assert again == contact
        assert [found.pk for found in contacts_search(query=f"email:{data.draw(in_any_case(email))}")] == [contact.pk]
