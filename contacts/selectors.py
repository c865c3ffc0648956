"""Every read the contacts section needs: search, the contact page, activities, duplicates."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import phonenumbers
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    F,
    Func,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    TextField,
    prefetch_related_objects,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from contacts import search_index
from contacts.models import Contact, ContactMerge, ContactPoint
from contacts.normalize import fold_name, normalize_phone, normalize_point
from conversations.models import Conversation, Interaction, Message, Note
from conversations.selectors import contact_activity_history

SEARCH_PREFIXES = ("email", "phone", "company")
# "phone:" may be followed by a number typed with spaces, so it is read before the other prefixes.
_PHONE_PREFIX_RE = re.compile(r"\bphone:(?:\"([^\"]*)\"|\s*(\+?\(?\d[\d\s\-()./]*\d\)?)|(\S*))", re.IGNORECASE)
_PREFIX_RE = re.compile(r"\b(email|company):(?:\"([^\"]*)\"|(\S*))", re.IGNORECASE)
# A number in free text, in any of the ways people type one: +49 (30) 123-45 67, 0049 30 1234567, 030/1234567.
_NUMBER_RUN_RE = re.compile(r"(?<![\w@.+])\+?\(?\d[\d\s\-()./]{4,}\d\)?(?![\w@])")
_WORD_RE = re.compile(r"\"([^\"]+)\"|(\S+)")
# Shorter digit strings match too much to be read as part of a phone number.
_MIN_NUMBER_DIGITS = 3


# --- search ---------------------------------------------------------------------------


def live_contacts() -> QuerySet[Contact]:
    """Contacts shown to agents: neither merged into another nor erased."""
    return Contact.objects.filter(merged_into__isnull=True, erased_at__isnull=True)


def _case_variants(text: str) -> list[str]:
    # SQLite's LIKE folds case for ASCII letters only, so "müller" would miss "Müller" there;
    # trying the usual spellings of a non-ASCII word makes both databases find the same rows.
    if text.isascii():
        return [text]
    return list(dict.fromkeys((text, text.lower(), text.upper(), text.capitalize(), text.title())))


def _point_exists(**lookups) -> Exists:
    return Exists(ContactPoint.objects.filter(contact=OuterRef("pk"), **lookups))


def _like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _indexed() -> bool:
    return connection.vendor in ("sqlite", "postgresql") and search_index.supported(connection)


# Index lookups return at most this many candidates. A page needs only the newest matches: up to this many
# are sorted; more (a common name) are not, the contacts are read newest first through
# contact_search_order_idx instead and the index only says which of them match, until the page is full.
SEARCH_CANDIDATES = 200
# The trigram index (SQLite FTS5, PostgreSQL pg_trgm) finds texts of three or more characters; a shorter one
# is checked in the documents the longer ones found, or in the newest contacts' documents when alone.
_MIN_INDEXED = 3


def _clean(groups: list[list[str]]) -> list[list[str]]:
    groups = [list(dict.fromkeys(text for text in group if text)) for group in groups]
    return [group for group in groups if group]


def _indexable(group: list[str]) -> bool:
    return all(len(text) >= _MIN_INDEXED for text in group)


def _match_expression(groups: list[list[str]]) -> str:
    """An FTS5 query: for every group one of its texts, each a quoted phrase (the trigram tokenizer folds
    case for every alphabet)."""
    return " AND ".join(
        "(" + " OR ".join('"' + text.replace('"', '""') + '"' for text in group) + ")" for group in groups
    )


def _doc_condition(groups: list[list[str]], *, doc: str) -> tuple[str, list[str]]:
    """SQL that is true when the document ``doc`` contains, for every group, one of its texts.

    On SQLite ``+doc`` keeps the condition away from FTS5, which would otherwise run it through the index
    once per row; LIKE folds ASCII only there, so a non-ASCII text is tried in its usual spellings.
    """
    clauses, params = [], []
    for group in groups:
        if connection.vendor == "sqlite":
            variants = [variant for text in group for variant in _case_variants(text)]
            clauses.append("(" + " OR ".join([f"+{doc} LIKE %s ESCAPE '\\'"] * len(variants)) + ")")
        else:
            # The documents are lower-cased (contacts.search_index): this is ILIKE, folded once per search.
            variants = group
            clauses.append("(" + " OR ".join([f"{doc} LIKE lower(%s)"] * len(variants)) + ")")
        params += [_like_pattern(variant) for variant in variants]
    return " AND ".join(clauses), params


def _index_candidates(groups: list[list[str]], *, limit: int) -> list[int]:
    """Up to ``limit`` ids of contacts whose document matches every group, in no particular order: one
    lookup of the substring index (contacts.search_index) for all the words that it can find, so a query
    of several words costs what their intersection costs; shorter words are checked in those documents."""
    indexed = [group for group in groups if _indexable(group)]
    rest = [group for group in groups if not _indexable(group)]
    if connection.vendor == "sqlite":
        sql, params = "SELECT rowid FROM contacts_search WHERE contacts_search MATCH %s", [_match_expression(indexed)]
        if rest:
            condition, more = _doc_condition(rest, doc="doc")
            sql, params = f"{sql} AND {condition}", params + more
    else:
        condition, params = _doc_condition(groups, doc="doc")
        sql = f"SELECT contact_id FROM contacts_search WHERE {condition}"  # noqa: S608 - placeholders only
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} LIMIT %s", [*params, limit])
        return [row[0] for row in cursor.fetchall()]


def _doc_filter(groups: list[list[str]]) -> Q:
    """The contacts whose document matches every group, as a condition the database checks for each contact
    it reads newest first (contact_search_order_idx), so the reading stops as soon as a page is full."""
    contact_id = f'"{Contact._meta.db_table}"."id"'
    if connection.vendor == "sqlite":
        # Each contact's document is read by rowid and tested with LIKE, which for ASCII text finds what the
        # trigram index finds. A non-ASCII word keeps the index's case folding for every alphabet: membership
        # in its matches, read from the index once (the unary + keeps SQLite from driving the query by them).
        folded = [group for group in groups if _indexable(group) and not all(text.isascii() for text in group)]
        tested = [group for group in groups if group not in folded]
        sql, params = "", []
        if folded:
            sql = f"+{contact_id} IN (SELECT rowid FROM contacts_search WHERE contacts_search MATCH %s)"  # noqa: S608
            params = [_match_expression(folded)]
        if tested:
            condition, more = _doc_condition(tested, doc="s.doc")
            exists = f"EXISTS (SELECT 1 FROM contacts_search s WHERE s.rowid = {contact_id} AND {condition})"  # noqa: S608
            sql, params = (f"{sql} AND {exists}" if sql else exists), params + more
    else:
        condition, params = _doc_condition(groups, doc="s.doc")
        sql = f"EXISTS (SELECT 1 FROM contacts_search s WHERE s.contact_id = {contact_id} AND {condition})"  # noqa: S608
    return Q(RawSQL(sql, params, output_field=BooleanField()))  # noqa: S611 - placeholders only


def _scan_q(group: list[str]) -> Q:
    """Without the index: one group's texts in names, company or any address (a scan)."""
    q = Q()
    for text in group:
        for variant in _case_variants(text):
            q |= (
                Q(first_name__icontains=variant)
                | Q(last_name__icontains=variant)
                | Q(company__icontains=variant)
                | _point_exists(value__icontains=variant)
            )
    return q


def _valid_phone(raw: str) -> str | None:
    """The E.164 form of ``raw`` when it is a complete, valid number (not a fragment of one)."""
    try:
        value = normalize_phone(raw)
    except ValidationError:
        return None
    return value if phonenumbers.is_valid_number(phonenumbers.parse(value)) else None


def _digit_fragments(raw: str) -> list[str]:
    """Digits of a partial number, also without the zeros of a national "030 12…" or international
    "0049 30 12…" prefix, which the stored "+4930…" lacks."""
    digits = re.sub(r"\D", "", raw)
    return [fragment for fragment in dict.fromkeys((digits, digits.lstrip("0"))) if len(fragment) >= _MIN_NUMBER_DIGITS]


def _phone_exact_q(value: str) -> Q:
    # The unique (kind, value) index: one seek, whatever the number of contacts.
    return Q(pk__in=ContactPoint.objects.filter(kind=ContactPoint.Kind.PHONE, value=value).values("contact_id"))


def _search_q(query: str) -> Q | None:
    """Turn the search box into one filter; every term must match (AND).

    ``email:``, ``phone:`` and ``company:`` look in that field only; other
    words match names, company or any contact point; a complete phone number
    typed in any format matches its E.164 value, a partial one the digits of a
    stored number. Returns None when a term can match nothing (a ``phone:``
    without digits).
    """
    groups: list[list[str]] = []  # substring groups, answered together by the index
    filters: list[Q] = []  # further conditions (exact numbers, the field a prefix names)
    impossible = False

    def number(raw: str, *, kind: str | None = None, also_text: bool = False) -> bool:
        exact = _valid_phone(raw)
        fragments = _digit_fragments(raw)
        if exact is None and not fragments:
            return False
        alternatives = [*fragments, raw] if also_text else fragments
        in_kind = Q()
        if kind is not None:
            for fragment in fragments:
                in_kind |= _point_exists(kind=kind, value__contains=fragment)
        if exact is None:
            groups.append(alternatives)
            filters.append(in_kind)
            return True
        # A complete number: when a contact has exactly it, one seek of the address index answers (digit
        # runs such as "000" are in every number, so the substring index would read them all); otherwise
        # its digits may still be part of a longer stored number or of a name.
        if not alternatives or ContactPoint.objects.filter(kind=ContactPoint.Kind.PHONE, value=exact).exists():
            filters.append(_phone_exact_q(exact))
        else:
            if _indexed():
                groups.append(alternatives)
            else:
                filters.append(_scan_q(alternatives))
            filters.append(in_kind)
        return True

    def phone_prefix(match: re.Match) -> str:
        nonlocal impossible
        value = (match.group(1) or match.group(2) or match.group(3) or "").strip()
        if value and not number(value, kind=ContactPoint.Kind.PHONE):
            impossible = True
        return " "

    def other_prefix(match: re.Match) -> str:
        prefix, value = match.group(1).lower(), (match.group(2) or match.group(3) or "").strip()
        if value and prefix == "email":
            groups.append([value.lower()])
            filters.append(_point_exists(kind=ContactPoint.Kind.EMAIL, value__icontains=value.lower()))
        elif value:
            groups.append([value])
            in_company = Q()
            for variant in _case_variants(value):
                in_company |= Q(company__icontains=variant)
            filters.append(in_company)
        return " "

    def number_run(match: re.Match) -> str:
        raw = match.group(0).strip()
        # A run of digits may be a phone number or part of a name ("Meyer 1234").
        if not number(raw, also_text=True):
            groups.append([raw])
        return " "

    rest = _PHONE_PREFIX_RE.sub(phone_prefix, query)
    rest = _PREFIX_RE.sub(other_prefix, rest)
    rest = _NUMBER_RUN_RE.sub(number_run, rest)
    for quoted, word in _WORD_RE.findall(rest):
        text = (quoted or word).strip()
        if text:
            groups.append([text])
    if impossible:
        return None
    combined = Q()
    groups = _clean(groups)
    if groups and _indexed():
        if any(_indexable(group) for group in groups):
            candidates = _index_candidates(groups, limit=SEARCH_CANDIDATES + 1)
            combined &= Q(pk__in=candidates) if len(candidates) <= SEARCH_CANDIDATES else _doc_filter(groups)
        else:
            combined &= _doc_filter(groups)
    else:
        for group in groups:
            combined &= _scan_q(group)
    for condition in filters:
        combined &= condition
    return combined


def contacts_search(*, query: str, after: tuple[datetime, int] | None = None, limit: int = 25) -> list[Contact]:
    """Contacts matching ``query``, newest activity first, keyset-paged after ``(last_activity_at, id)``.

    Merged-away and erased contacts are never listed. A constant number of
    queries whatever the number of contacts or results: the index's candidates
    (when a word of three or more characters was typed), the contacts, their
    points; plus one seek when a complete phone number was typed.
    """
    condition = _search_q(query or "")
    if condition is None:
        return []
    contacts = live_contacts().filter(condition)
    if after is not None:
        last_activity_at, contact_id = after
        contacts = contacts.filter(
            Q(last_activity_at__lt=last_activity_at) | Q(last_activity_at=last_activity_at, id__lt=contact_id)
        )
    return list(
        contacts.order_by("-last_activity_at", "-id").prefetch_related(
            Prefetch("points", queryset=ContactPoint.objects.order_by("kind", "value"))
        )[:limit]
    )


def contact_points_loaded(*, contact: Contact) -> list[ContactPoint]:
    """The contact's addresses, oldest first, read once per contact object and then kept on it.

    The workspace asks for them several times (the contact panel, each composer channel's check);
    the first call loads them, later calls reuse the prefetched list.
    """
    if "points" not in getattr(contact, "_prefetched_objects_cache", {}):
        prefetch_related_objects(
            [contact], Prefetch("points", queryset=ContactPoint.objects.order_by("created_at", "id"))
        )
    return list(contact.points.all())


def contact_addresses(*, contact: Contact, kind: str) -> list[str]:
    return [point.value for point in contact_points_loaded(contact=contact) if point.kind == kind]


def contact_point_owner(*, kind: str, value: str, exclude: Contact | None = None) -> Contact | None:
    """The contact that already owns this address, if any; for a warning while an agent types it.

    Returns None for an address nobody owns, one owned by ``exclude``, and one that is not valid.
    """
    try:
        normalized = normalize_point(kind, value)
    except ValidationError:
        return None
    point = ContactPoint.objects.select_related("contact").filter(kind=kind, value=normalized).first()
    if point is None or (exclude is not None and point.contact_id == exclude.pk):
        return None
    return point.contact


# --- the contact page --------------------------------------------------------------


@dataclass(frozen=True)
class ContactDetail:
    """What the contact page's summary shows."""

    contact: Contact
    points: list[ContactPoint]
    conversation_count: int
    open_conversation: Conversation | None
    # Interactions per medium over the whole history, e.g. {"chat": 3, "voice": 1}.
    interaction_counts: dict[str, int] = field(default_factory=dict)
    # Merges into this contact that can still be undone, newest first.
    merges: list[ContactMerge] = field(default_factory=list)


def contact_detail(*, contact_id: int) -> ContactDetail | None:
    """The contact's summary with its points and counts, in a constant number of queries.

    Also returns merged-away and erased contacts (``contact.merged_into`` tells
    the page where to send the agent); None for an unknown id.
    """
    contact = (
        Contact.objects.filter(pk=contact_id)
        .select_related("merged_into")
        .prefetch_related(Prefetch("points", queryset=ContactPoint.objects.order_by("kind", "value")))
        .first()
    )
    if contact is None:
        return None
    conversations = list(
        Conversation.objects.filter(contact=contact)
        .order_by()
        .values("status")
        .annotate(total=Count("id"))
        .values_list("status", "total")
    )
    open_conversation = None
    if any(status == Conversation.Status.OPEN for status, _total in conversations):
        open_conversation = (
            Conversation.objects.open().filter(contact=contact).select_related("service", "assigned_agent").first()
        )
    interaction_counts = dict(
        Interaction.objects.filter(conversation__contact=contact)
        .order_by()
        .values("medium")
        .annotate(total=Count("id"))
        .values_list("medium", "total")
    )
    return ContactDetail(
        contact=contact,
        points=list(contact.points.all()),
        conversation_count=sum(total for _status, total in conversations),
        open_conversation=open_conversation,
        interaction_counts=interaction_counts,
        merges=contact_merges_undoable(contact=contact),
    )


def contact_merges_undoable(*, contact: Contact) -> list[ContactMerge]:
    """Merges into ``contact`` not undone yet, newest first (the contact page offers to undo them)."""
    return list(
        ContactMerge.objects.filter(target=contact, undone_at__isnull=True)
        .select_related("source", "performed_by")
        .order_by("-performed_at", "-id")
    )


def contact_activities(
    *, contact: Contact, before: tuple[datetime, int] | None = None, limit: int = 20
) -> list[Conversation]:
    """The Activities tab: every conversation of the contact across channels, newest first, keyset-paged.

    Each comes with its interactions (the channel icons); a conversation's full
    timeline is ``conversations.selectors.conversation_timeline``.
    """
    conversations = contact_activity_history(contact=contact, before=before, limit=limit)
    prefetch_related_objects(
        conversations, Prefetch("interactions", queryset=Interaction.objects.order_by("created_at", "id"))
    )
    return conversations


def contact_timeline_search(*, contact: Contact, text: str, limit: int = 50) -> list[Conversation]:
    """The contact's conversations whose messages (subject or body), notes or wrap-up notes contain ``text``.

    Newest first. The scan is bounded by one contact's history.
    """
    text = (text or "").strip()
    if not text:
        return contact_activity_history(contact=contact, limit=limit)
    in_messages = Q()
    in_notes = Q()
    in_wrapup = Q()
    for variant in _case_variants(text):
        in_messages |= Q(body__icontains=variant) | Q(subject__icontains=variant)
        in_notes |= Q(body__icontains=variant)
        in_wrapup |= Q(notes__icontains=variant)
    matching = (
        Exists(Message.objects.filter(in_messages, conversation=OuterRef("pk")))
        | Exists(Note.objects.filter(in_notes, conversation=OuterRef("pk")))
        | in_wrapup
    )
    return list(
        Conversation.objects.filter(matching, contact=contact)
        .select_related("service", "assigned_agent", "disposition")
        .order_by("-opened_at", "-id")[:limit]
    )


# --- likely duplicates ------------------------------------------------------------


class DuplicateReason:
    SHARED_EMAIL = "shared_email"
    SHARED_PHONE = "shared_phone"
    SHARED_VISITOR = "shared_visitor"
    SAME_NAME = "same_name"
    SAME_LAST_NAME_AND_COMPANY = "same_last_name_company"


# Strongest evidence first: an address both used is nearly certain, a name alone is a guess.
_REASON_RANK = {
    DuplicateReason.SHARED_EMAIL: 0,
    DuplicateReason.SHARED_PHONE: 1,
    DuplicateReason.SHARED_VISITOR: 2,
    DuplicateReason.SAME_NAME: 3,
    DuplicateReason.SAME_LAST_NAME_AND_COMPANY: 4,
}


class DuplicatePair(NamedTuple):
    first: Contact
    second: Contact
    reason: str


class _UUIDText(Func):
    """A UUID column as the text ``str(uuid)`` gives, so it compares with a web-chat point's value."""

    output_field = TextField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return Cast(self.source_expressions[0], TextField()).as_sql(compiler, connection, **extra_context)

    def as_sqlite(self, compiler, connection, **extra_context):
        # Django stores a UUID in SQLite as 32 hex digits without hyphens.
        sql, params = compiler.compile(self.source_expressions[0])
        parts = " || '-' || ".join(f"substr({sql}, {start}, {length})" for start, length in _UUID_GROUPS)
        return f"lower({parts})", params * len(_UUID_GROUPS)


_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _shared_address_pairs() -> list[tuple[int, int, str]]:
    """Contacts whose chat used an address that another contact owns.

    Contact points are unique, so two contacts never hold the same address;
    but a customer who chats anonymously and later gives their email, or gives
    a phone number known under another contact, leaves a chat session of one
    contact naming another contact's address. That is the "shared phone or
    email" evidence.
    """
    from channels_app.webchat.models import ChatSession

    def owner(kind: str, value) -> Subquery:
        return Subquery(ContactPoint.objects.filter(kind=kind, value=value).values("contact_id")[:1])

    sessions = (
        ChatSession.objects.annotate(
            email_owner=owner(ContactPoint.Kind.EMAIL, OuterRef("email")),
            phone_owner=owner(ContactPoint.Kind.PHONE, OuterRef("phone")),
            visitor_owner=owner(ContactPoint.Kind.WEBCHAT, _UUIDText(OuterRef("visitor_id"))),
        )
        .filter(
            (Q(email_owner__isnull=False) & ~Q(email_owner=F("contact_id")))
            | (Q(phone_owner__isnull=False) & ~Q(phone_owner=F("contact_id")))
            | (Q(visitor_owner__isnull=False) & ~Q(visitor_owner=F("contact_id")))
        )
        .values_list("contact_id", "email_owner", "phone_owner", "visitor_owner")
        .distinct()
    )
    pairs = []
    for contact_id, email_owner, phone_owner, visitor_owner in sessions:
        for other, reason in (
            (email_owner, DuplicateReason.SHARED_EMAIL),
            (phone_owner, DuplicateReason.SHARED_PHONE),
            (visitor_owner, DuplicateReason.SHARED_VISITOR),
        ):
            if other is not None and other != contact_id:
                pairs.append((contact_id, other, reason))
    return pairs


def _same_name_pairs() -> list[tuple[int, int, str]]:
    """Contacts with the same full name, or the same last name at the same company.

    Compared without case, accents or extra spaces. Within a group of equal
    names each contact is paired with the group's most recently active one,
    so a common name gives n-1 pairs, not n².
    """
    rows = (
        live_contacts()
        .exclude(last_name="")
        .order_by("-last_activity_at", "-id")
        .values_list("id", "first_name", "last_name", "company")
    )
    by_name: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_company: dict[tuple[str, str], list[int]] = defaultdict(list)
    for contact_id, first_name, last_name, company in rows.iterator():
        last = fold_name(last_name)
        if not last:
            continue
        first = fold_name(first_name)
        if first:
            by_name[(first, last)].append(contact_id)
        company_key = fold_name(company)
        if company_key:
            by_company[(last, company_key)].append(contact_id)
    pairs = []
    for groups, reason in (
        (by_name, DuplicateReason.SAME_NAME),
        (by_company, DuplicateReason.SAME_LAST_NAME_AND_COMPANY),
    ):
        for ids in groups.values():
            newest, *others = ids
            pairs.extend((newest, other, reason) for other in others)
    return pairs


def contact_duplicates(*, limit: int = 50) -> list[DuplicatePair]:
    """Likely duplicate contacts, as ``(contact, contact, reason)``, strongest evidence first.

    Nothing is merged: an agent with the merge permission previews and confirms
    each merge. Reasons: an address one contact used in a chat belongs to the
    other (``shared_email``, ``shared_phone``, ``shared_visitor``), the same
    full name (``same_name``), the same last name at the same company
    (``same_last_name_company``). A pair appears once, with its strongest
    reason; pairs of one reason come newest contact first. Four queries
    whatever the number of contacts; the name comparison reads every live
    contact's name once, so this is a list page's work, not a hot path.
    """
    best: dict[frozenset[int], tuple[int, int, str]] = {}
    for first, second, reason in [*_shared_address_pairs(), *_same_name_pairs()]:
        key = frozenset((first, second))
        if key not in best or _REASON_RANK[reason] < _REASON_RANK[best[key][2]]:
            best[key] = (first, second, reason)
    ranked = sorted(best.values(), key=lambda pair: (_REASON_RANK[pair[2]], -max(pair[0], pair[1])))[:limit]
    if not ranked:
        return []
    contacts = live_contacts().in_bulk(
        {contact_id for first, second, _reason in ranked for contact_id in (first, second)}
    )
    prefetch_related_objects(
        list(contacts.values()), Prefetch("points", queryset=ContactPoint.objects.order_by("kind", "value"))
    )
    return [
        DuplicatePair(contacts[first], contacts[second], reason)
        for first, second, reason in ranked
        if first in contacts and second in contacts
    ]
