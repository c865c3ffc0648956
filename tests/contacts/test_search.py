"""Contact search: each field and prefix, any phone format, keyset pages, constant queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts import selectors
from contacts.models import Contact
from contacts.selectors import contact_point_owner, contacts_search
from tests.contacts.builders import BASE, EMAIL, PHONE, WEBCHAT, contact_with_points
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _ids(contacts) -> list[int]:
    return [contact.pk for contact in contacts]


@pytest.fixture
def people() -> dict[str, Contact]:
    """Three customers, the newest activity first: Anna, then Jürgen, then Bob."""
    anna = contact_with_points(
        (PHONE, "+49301234567"),
        (EMAIL, "anna.schmidt@example.com"),
        first_name="Anna",
        last_name="Schmidt",
        company="Acme Travel",
        last_activity_at=BASE + timedelta(days=3),
    )
    juergen = contact_with_points(
        (PHONE, "+4989987654"),
        (EMAIL, "j.mueller@example.org"),
        first_name="Jürgen",
        last_name="Müller",
        company="Globex",
        last_activity_at=BASE + timedelta(days=2),
    )
    bob = contact_with_points(
        (EMAIL, "bob@acme.example"),
        (WEBCHAT, "visitor-7f3a"),
        first_name="Bob",
        last_name="Park",
        company="Acme Travel",
        last_activity_at=BASE + timedelta(days=1),
    )
    return {"anna": anna, "juergen": juergen, "bob": bob}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("anna", ["anna"]),
        ("SCHMIDT", ["anna"]),
        ("acme", ["anna", "bob"]),
        ("globex", ["juergen"]),
        ("anna.schmidt@example.com", ["anna"]),
        ("example.org", ["juergen"]),
        ("visitor-7f3a", ["bob"]),
        ("+49301234567", ["anna"]),
    ],
)
def test_free_text_matches_names_company_and_any_address(people, query, expected):
    assert _ids(contacts_search(query=query)) == [people[name].pk for name in expected]


def test_free_text_words_must_all_match(people):
    assert _ids(contacts_search(query="acme bob")) == [people["bob"].pk]
    assert _ids(contacts_search(query="acme globex")) == []


@pytest.mark.parametrize(
    "typed",
    [
        "+49 30 1234567",
        "030 1234567",
        "0049301234567",
        "(030) 123-4567",
        "030/1234567",
        "+49-30-123 45 67",
        "+49 (30) 1234567",
    ],
)
def test_a_number_typed_in_any_format_finds_its_e164_value(people, typed):
    assert _ids(contacts_search(query=typed)) == [people["anna"].pk]


@pytest.mark.parametrize("typed", ["1234567", "30 1234", "030 1234", "0049 30 123"])
def test_part_of_a_number_finds_the_contacts_containing_it(people, typed):
    assert _ids(contacts_search(query=typed)) == [people["anna"].pk]


def test_a_number_and_a_name_combine(people):
    assert _ids(contacts_search(query="Anna 030 1234567")) == [people["anna"].pk]
    assert _ids(contacts_search(query="Bob 030 1234567")) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("email:anna.schmidt@example.com", ["anna"]),
        ("email:ANNA.Schmidt@Example.com", ["anna"]),
        ("email:@example", ["anna", "juergen"]),
        ("Email:acme", ["bob"]),
        ("phone:+49301234567", ["anna"]),
        ("phone:030 1234567", ["anna"]),
        ('phone:"030 1234567"', ["anna"]),
        ("phone:(089) 987654", ["juergen"]),
        ("phone:987654", ["juergen"]),
        ("company:acme", ["anna", "bob"]),
        ('company:"Acme Travel"', ["anna", "bob"]),
        ("company:acme bob", ["bob"]),
        ("company:GLOBEX", ["juergen"]),
    ],
)
def test_prefixes_look_in_one_field(people, query, expected):
    assert _ids(contacts_search(query=query)) == [people[name].pk for name in expected]


def test_a_prefix_does_not_look_in_other_fields(people):
    # "acme" is Anna's company, not in any of her email addresses.
    assert _ids(contacts_search(query="email:acme")) == [people["bob"].pk]
    # Bob's name is not a company.
    assert _ids(contacts_search(query="company:bob")) == []
    # A phone: prefix never matches an email address, even by digits.
    assert _ids(contacts_search(query="phone:visitor")) == []


@pytest.mark.parametrize("query", ["phone:", "email:", "company:"])
def test_an_empty_prefix_is_ignored(people, query):
    assert _ids(contacts_search(query=query)) == _ids(people.values())


@pytest.mark.parametrize("query", ["müller", "MÜLLER", "Müller", "jürgen müller"])
def test_non_ascii_names_match_whatever_their_case(people, query):
    # SQLite folds case for ASCII only; the search must still find Müller there.
    assert _ids(contacts_search(query=query)) == [people["juergen"].pk]


def test_an_empty_query_lists_every_contact_newest_activity_first(people):
    assert _ids(contacts_search(query="")) == [people["anna"].pk, people["juergen"].pk, people["bob"].pk]
    assert _ids(contacts_search(query="   ")) == _ids(contacts_search(query=""))


def test_merged_and_erased_contacts_are_not_listed(people):
    people["bob"].merged_into = people["anna"]
    people["bob"].save()
    Contact.objects.filter(pk=people["juergen"].pk).update(erased_at=timezone.now())

    assert _ids(contacts_search(query="")) == [people["anna"].pk]
    assert _ids(contacts_search(query="acme")) == [people["anna"].pk]
    assert _ids(contacts_search(query="globex")) == []


def test_results_are_newest_activity_first_then_highest_id():
    same_time = BASE + timedelta(hours=5)
    older = ContactFactory(last_name="Same", last_activity_at=BASE)
    first = ContactFactory(last_name="Same", last_activity_at=same_time)
    second = ContactFactory(last_name="Same", last_activity_at=same_time)

    assert _ids(contacts_search(query="same")) == [second.pk, first.pk, older.pk]


def _walk(query: str, *, limit: int) -> list[list[int]]:
    pages, after = [], None
    while True:
        page = contacts_search(query=query, after=after, limit=limit)
        if not page:
            return pages
        pages.append(_ids(page))
        after = (page[-1].last_activity_at, page[-1].pk)


def test_keyset_pages_return_every_contact_exactly_once_in_order():
    # Ties on last_activity_at across page boundaries are the hard case for keyset paging.
    contacts = [
        ContactFactory(last_name="Paged", last_activity_at=BASE + timedelta(hours=index // 3)) for index in range(10)
    ]
    ContactFactory(last_name="Other")
    expected = [c.pk for c in sorted(contacts, key=lambda c: (c.last_activity_at, c.pk), reverse=True)]

    for limit in (1, 3, 4, 10, 25):
        pages = _walk("paged", limit=limit)
        assert [pk for page in pages for pk in page] == expected
        assert all(len(page) <= limit for page in pages)


@pytest.fixture
def crowd() -> list[Contact]:
    """Fourteen contacts sharing a surname, numbered like the bulk seed ("Lange 7"), with ties in activity,
    one of them merged away and one erased; and a few others."""
    people = []
    for index in range(1, 15):
        people.append(
            contact_with_points(
                (PHONE, f"+4915100000{index:03d}"),
                (EMAIL, f"person{index}@crowd.example"),
                first_name="Jürgen" if index % 5 == 0 else "Anna",
                last_name=f"Lange {index}",
                company="Acme" if index % 3 == 0 else "",
                last_activity_at=BASE + timedelta(hours=index // 2),
            )
        )
    Contact.objects.filter(pk=people[3].pk).update(merged_into=people[4])
    Contact.objects.filter(pk=people[6].pk).update(erased_at=BASE)
    for name in ("Berg", "Kurz"):
        contact_with_points((EMAIL, f"{name.lower()}@elsewhere.example"), last_name=name)
    return people


@pytest.mark.parametrize(
    "query",
    [
        "lange",
        "Lange 1",
        "LANGE 11",
        "1",
        "ü",
        "jürgen",
        "Jürgen Lange",
        "email:crowd",
        "company:acme lange",
        "151000",
        "person1",
    ],
)
def test_a_common_word_pages_exactly_like_a_rare_one(monkeypatch, crowd, query):
    """Beyond SEARCH_CANDIDATES matches the contacts are read newest first and the index only tells which
    match, instead of sorting every match: the pages must be the same either way."""
    sorted_pages = _walk(query, limit=3)
    monkeypatch.setattr(selectors, "SEARCH_CANDIDATES", 2)
    walked_pages = _walk(query, limit=3)

    assert walked_pages == sorted_pages
    assert sorted_pages, query


def test_a_short_word_is_part_of_a_name_or_address():
    # Texts under three characters are not in the trigram index; they are still found as substrings.
    eleven = contact_with_points((EMAIL, "x@one.example"), last_name="Lange 11")
    phone = contact_with_points((PHONE, "+49301100999"), last_name="Lange")
    ContactFactory(last_name="Lange 2")
    assert set(_ids(contacts_search(query="Lange 11"))) == {eleven.pk, phone.pk}
    assert set(_ids(contacts_search(query="11"))) == {eleven.pk, phone.pk}


@pytest.mark.parametrize("size", [3, 30])
def test_search_runs_the_same_queries_whatever_the_number_of_contacts(django_assert_num_queries, size):
    for index in range(size):
        contact_with_points(
            (PHONE, f"+49301234{index:03d}"), (EMAIL, f"c{index}@example.com"), last_name="Counted", company="Acme"
        )

    # The index's candidates, the contacts, their points; a complete phone number costs one more, a seek for
    # its exact value; a query without a word of three characters has no candidates to look up.
    for query, queries in (
        ("counted", 3),
        ("phone:030 1234000 counted", 4),
        ("email:example company:acme", 3),
        ("co", 2),
    ):
        with django_assert_num_queries(queries):
            found = contacts_search(query=query, limit=25)
            assert all(len(contact.points.all()) == 2 for contact in found)
    with django_assert_num_queries(3):
        contacts_search(query="counted", after=(timezone.now(), 10**9), limit=25)


def test_a_phone_prefix_without_digits_finds_nothing(people):
    assert contacts_search(query="phone:abc") == []


def test_point_owner_names_the_contact_owning_an_address_in_any_spelling(people):
    anna = people["anna"]

    assert contact_point_owner(kind=PHONE, value="030 1234567") == anna
    assert contact_point_owner(kind=EMAIL, value="Anna.Schmidt@EXAMPLE.com") == anna
    assert contact_point_owner(kind=PHONE, value="030 1234567", exclude=anna) is None
    assert contact_point_owner(kind=PHONE, value="030 7654321") is None
    assert contact_point_owner(kind=PHONE, value="not a number") is None
