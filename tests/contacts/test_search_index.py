"""The contact search index (contacts.search_index) follows every writer and survives migrations."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from contacts import search_index
from contacts.models import Contact, ContactPoint
from contacts.selectors import contacts_search
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _found(query: str) -> set[int]:
    return {contact.pk for contact in contacts_search(query=query)}


def test_the_index_exists_on_sqlite_and_postgresql():
    assert search_index.supported(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM contacts_search")
        assert cursor.fetchone()[0] == Contact.objects.count()


def test_every_writer_keeps_the_index_current():
    contact = ContactFactory(first_name="Jörg", last_name="Brandt", company="Fernweh Reisen")
    assert _found("brandt") == {contact.pk}

    Contact.objects.filter(pk=contact.pk).update(last_name="Kranich")
    assert _found("brandt") == set()
    assert _found("kranich") == {contact.pk}

    point = ContactPoint.objects.create(contact=contact, kind=ContactPoint.Kind.EMAIL, value="joerg@fernweh.example")
    assert _found("fernweh.example") == {contact.pk}

    ContactPoint.objects.filter(pk=point.pk).update(value="j.kranich@elsewhere.example")
    assert _found("fernweh.example") == set()
    assert _found("elsewhere") == {contact.pk}

    other = ContactFactory(first_name="Ida")
    ContactPoint.objects.filter(pk=point.pk).update(contact=other)
    assert _found("elsewhere") == {other.pk}

    point.delete()
    assert _found("elsewhere") == set()

    contact_id = contact.pk
    contact.delete()
    with connection.cursor() as cursor:
        key = "rowid" if connection.vendor == "sqlite" else "contact_id"
        cursor.execute(f"SELECT count(*) FROM contacts_search WHERE {key} = %s", [contact_id])  # noqa: S608
        assert cursor.fetchone()[0] == 0


@pytest.mark.parametrize("query", ["müller", "MÜLLER", "Müll", "ül"])
def test_search_folds_case_in_every_alphabet(query):
    contact = ContactFactory(first_name="Jürgen", last_name="MÜLLER")
    ContactFactory(first_name="Hans", last_name="Mayer")
    assert _found(query) == {contact.pk}


def test_short_terms_and_special_characters_are_matched_literally():
    percent = ContactFactory(company="100% Travel_Co")
    ContactFactory(company="1000 Travels")
    assert _found('"0%"') == {percent.pk}
    assert _found("l_C") == {percent.pk}
    assert _found('zq"zq') == set()  # a quote inside a term cannot break the index's phrase syntax


def test_the_index_is_restored_after_a_migration_dropped_its_triggers():
    # SQLite rebuilds a table to alter it, which drops the table's triggers; post_migrate re-creates them.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER contacts_search_contact_ins")
        else:
            cursor.execute("DROP TRIGGER contacts_search_contact ON contacts_contact")
    stale = ContactFactory(last_name="Unindexed")
    assert _found("unindexed") == set()

    call_command("migrate", verbosity=0)

    assert _found("unindexed") == {stale.pk}
    fresh = ContactFactory(last_name="Reindexed")
    assert _found("reindexed") == {fresh.pk}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's GIN index")
def test_the_postgresql_index_has_no_pending_list():
    # A GIN pending list is read in full by every search until a vacuum merges it (contacts.search_index).
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'contacts_search_doc_trgm'")
        assert "fastupdate=off" in cursor.fetchone()[0]
