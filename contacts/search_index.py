"""The substring index behind contact search (QUALITY.md DB2: search time must not grow with the contacts).

One search document per contact (names, company, every address), kept current
by database triggers, so every writer (services, the admin, bulk loads, test
factories) updates it. SQLite: an FTS5 table with the trigram tokenizer
(rowid = contact id). PostgreSQL: a table of lower-cased documents with a
pg_trgm GIN index. Other databases get nothing and search scans
(contacts.selectors). A change of the documents' form takes effect at the next
``migrate``, which rebuilds them.

``install`` is idempotent. It runs from the migration and again after every
``migrate`` (contacts.apps): SQLite rebuilds a table to alter it, which drops
its triggers, so a later migration of contacts must not leave the index stale.
Such a rebuild also fails while the triggers exist ("error in trigger
contacts_search_point_ins: no such table"): the rename that ends it checks
every trigger, and those of one table name the other. A migration that must
rebuild a contacts table on SQLite drops them first (``uninstall`` minus the
table); one that only changes indexes does it by name, without a rebuild
(``0004_contact_merged_into_partial_idx``).
"""

from __future__ import annotations

DOC_SQLITE = (
    "SELECT c.id, c.first_name || ' ' || c.last_name || ' ' || c.company || ' ' || "
    "coalesce((SELECT group_concat(p.value, ' ') FROM contacts_contactpoint p WHERE p.contact_id = c.id), '') "
    "FROM contacts_contact c WHERE c.id = {id}"
)


def _sqlite_refresh(contact_id: str) -> str:
    # contact_id is NEW.id / OLD.contact_id: trigger row references written here, never input.
    return (
        f"DELETE FROM contacts_search WHERE rowid = {contact_id}; "  # noqa: S608
        f"INSERT INTO contacts_search(rowid, doc) {DOC_SQLITE.format(id=contact_id)};"
    )


SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS contacts_search USING fts5(doc, tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS contacts_search_contact_ins AFTER INSERT ON contacts_contact BEGIN "
    + _sqlite_refresh("NEW.id")
    + " END",
    "CREATE TRIGGER IF NOT EXISTS contacts_search_contact_upd "
    "AFTER UPDATE OF first_name, last_name, company ON contacts_contact BEGIN " + _sqlite_refresh("NEW.id") + " END",
    "CREATE TRIGGER IF NOT EXISTS contacts_search_contact_del AFTER DELETE ON contacts_contact BEGIN "
    "DELETE FROM contacts_search WHERE rowid = OLD.id; END",
    "CREATE TRIGGER IF NOT EXISTS contacts_search_point_ins AFTER INSERT ON contacts_contactpoint BEGIN "
    + _sqlite_refresh("NEW.contact_id")
    + " END",
    "CREATE TRIGGER IF NOT EXISTS contacts_search_point_upd "
    "AFTER UPDATE OF value, contact_id ON contacts_contactpoint BEGIN "
    + _sqlite_refresh("OLD.contact_id")
    + " "
    + _sqlite_refresh("NEW.contact_id")
    + " END",
    "CREATE TRIGGER IF NOT EXISTS contacts_search_point_del AFTER DELETE ON contacts_contactpoint BEGIN "
    + _sqlite_refresh("OLD.contact_id")
    + " END",
]
SQLITE_REBUILD = [
    "DELETE FROM contacts_search",
    "INSERT INTO contacts_search(rowid, doc) " + DOC_SQLITE.replace(" WHERE c.id = {id}", ""),
]
SQLITE_BACKWARD = [
    *(
        f"DROP TRIGGER IF EXISTS contacts_search_{name}"
        for name in ("contact_ins", "contact_upd", "contact_del", "point_ins", "point_upd", "point_del")
    ),
    "DROP TABLE IF EXISTS contacts_search",
]

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE TABLE IF NOT EXISTS contacts_search (contact_id bigint PRIMARY KEY, doc text NOT NULL)",
    # Without fastupdate every write goes straight into the index. With it, writes collect in a pending list
    # that each search reads in full until a vacuum merges it, and that makes the planner cost the index far
    # above a sequential scan of the documents: rare words then read every document. Contacts change
    # seldom (not with each message), so the slower writes cost little.
    "CREATE INDEX IF NOT EXISTS contacts_search_doc_trgm ON contacts_search USING gin (doc gin_trgm_ops) "
    "WITH (fastupdate = off)",
    "ALTER INDEX contacts_search_doc_trgm SET (fastupdate = off)",
    # Documents are stored lower-cased and searched with LIKE lower(pattern): what ILIKE does, without
    # folding the case of every document it reads again (about five times faster per document).
    """
    CREATE OR REPLACE FUNCTION contacts_search_refresh(cid bigint) RETURNS void LANGUAGE sql AS $$
        DELETE FROM contacts_search WHERE contact_id = cid;
        INSERT INTO contacts_search (contact_id, doc)
        SELECT c.id, lower(concat_ws(' ', c.first_name, c.last_name, c.company,
               (SELECT string_agg(p.value, ' ') FROM contacts_contactpoint p WHERE p.contact_id = c.id)))
        FROM contacts_contact c WHERE c.id = cid;
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION contacts_search_contact_trg() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM contacts_search WHERE contact_id = OLD.id;
            RETURN OLD;
        END IF;
        PERFORM contacts_search_refresh(NEW.id);
        RETURN NEW;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION contacts_search_point_trg() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            PERFORM contacts_search_refresh(OLD.contact_id);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            PERFORM contacts_search_refresh(NEW.contact_id);
            RETURN NEW;
        END IF;
        RETURN OLD;
    END $$
    """,
    "DROP TRIGGER IF EXISTS contacts_search_contact ON contacts_contact",
    "DROP TRIGGER IF EXISTS contacts_search_point ON contacts_contactpoint",
    "CREATE TRIGGER contacts_search_contact AFTER INSERT OR DELETE OR UPDATE OF first_name, last_name, company "
    "ON contacts_contact FOR EACH ROW EXECUTE FUNCTION contacts_search_contact_trg()",
    "CREATE TRIGGER contacts_search_point AFTER INSERT OR DELETE OR UPDATE OF value, contact_id "
    "ON contacts_contactpoint FOR EACH ROW EXECUTE FUNCTION contacts_search_point_trg()",
]
POSTGRES_REBUILD = [
    "TRUNCATE contacts_search",
    "SELECT contacts_search_refresh(id) FROM contacts_contact",
    "ANALYZE contacts_search",
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS contacts_search_point ON contacts_contactpoint",
    "DROP TRIGGER IF EXISTS contacts_search_contact ON contacts_contact",
    "DROP FUNCTION IF EXISTS contacts_search_point_trg()",
    "DROP FUNCTION IF EXISTS contacts_search_contact_trg()",
    "DROP FUNCTION IF EXISTS contacts_search_refresh(bigint)",
    "DROP TABLE IF EXISTS contacts_search",
]


INSTALL = {"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}
REBUILD = {"sqlite": SQLITE_REBUILD, "postgresql": POSTGRES_REBUILD}
UNINSTALL = {"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}


def supported(connection) -> bool:
    return connection.vendor in INSTALL


def _execute(connection, statements) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(connection, *, rebuild: bool = True) -> None:
    """Create the index and its triggers where missing, and refill it from the contacts."""
    _execute(connection, INSTALL.get(connection.vendor, []))
    if rebuild:
        _execute(connection, REBUILD.get(connection.vendor, []))


def uninstall(connection) -> None:
    _execute(connection, UNINSTALL.get(connection.vendor, []))
