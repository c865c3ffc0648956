"""DB1 and DB2 page benchmark (docs: ../../shared/QUALITY.md, results: ../docs/PERFORMANCE.md).

DB1: the agent pages run the same number of queries at 1 thousand and 1 million messages, at most 10.
DB2: p95 at 1 M ÷ p95 at 1 k ≤ 1.5 on SQLite and PostgreSQL; keyset pagination, no COUNT(*) or OFFSET
over messages.

    .venv/bin/python bench/pages.py                       # SQLite, 1 k then 1 M messages
    .venv/bin/python bench/pages.py --messages 100000     # a quicker run (small set stays 1 k)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/parley .venv/bin/python bench/pages.py

Its own test database (as routing.py). The small set is seeded with ``seed_bulk`` (1,000 messages,
20 conversations, 10 contacts) and measured; then the large set (``--messages``, with contacts and
conversations in QUALITY.md's proportions) is seeded into the same database and measured. Each set has
its own agent with three open conversations holding 1 % of the set's messages each, at least 150 (a
full timeline page at 1 k; 10,000 at 1 M), so the long timelines grow with the data too. Pages, through
the Django test Client against the real views, logged in as that agent: the desktop (Active Conversations List), the
workspace of an open conversation (timeline tail, contact panel, history), the history record of one
of the contact's earlier conversations; plus contact search and a contact's activities through their
selectors (the contact screens are being built). Exits non-zero on a miss.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import statistics
import sys
import time

import _support
from _support import create_database, database_version, ms, percentile

_support.setup_django("pages")

import django  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment, teardown_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

MAX_QUERIES = 10
MAX_RATIO = 1.5
BIG_TABLES = ("conversations_message", "conversations_timelineentry")


def seed(tag: str, messages: int) -> object:
    from agents.models import AgentProfile

    user = get_user_model().objects.create_user(username=f"bench-{tag}", first_name="Bench", last_name=tag)
    AgentProfile.objects.create(user=user)
    contacts, conversations = max(10, messages // 100), max(20, messages // 50)
    out = io.StringIO()
    started = time.perf_counter()
    call_command(
        "seed_bulk",
        contacts=contacts,
        conversations=conversations,
        messages=messages,
        agent=user.username,
        open=3,
        open_messages=max(150, messages // 100),
        allow_production=True,
        stdout=out,
    )
    print(f"  seeded {tag}: {out.getvalue().strip()} (wall {time.perf_counter() - started:.1f} s)")
    return user


def pages(user) -> dict:
    from contacts.selectors import contact_activities, contacts_search
    from conversations.models import Conversation

    client = Client()
    client.force_login(user)
    conversation = Conversation.objects.open().filter(assigned_agent=user).order_by("id").first()
    contact = conversation.contact
    earlier = Conversation.objects.closed().filter(contact=contact).order_by("-opened_at", "-id").first()
    phone = contact.points.filter(kind="phone").values_list("value", flat=True).first() or "+4930000000"
    phone_national = "0" + phone.removeprefix("+49")

    def get(url: str):
        def request() -> None:
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"GET {url}: {response.status_code}")

        return request

    return (
        {
            "desktop (ACL)": get(reverse("desktop")),
            "workspace": get(reverse("conversations:page", args=[conversation.uuid])),
            "history record": get(reverse("conversations:history", args=[earlier.uuid])),
            # An agent looks up one customer: by name (the bulk names carry a number, "Meyer 1234") and by a
            # fragment of their phone number typed in national format.
            "contact search": lambda: contacts_search(query=contact.last_name),
            "contact search (phone)": lambda: contacts_search(query=phone_national),
            # Informational, not gated: a surname shared by a tenth of all contacts matches 1 contact in the
            # small set and 1,000 in the large one; the work grows with the matches, not the table.
            "search, 10 % match *": lambda: contacts_search(query=contact.last_name.split()[0]),
            "contact activities": lambda: contact_activities(contact=contact),
        },
        conversation,
        contact,
    )


def measure(user, rounds: int) -> tuple[dict, dict, list[str]]:
    found, _conversation, _contact = pages(user)
    counts, p95s, sqls = {}, {}, []
    for name, request in found.items():
        request()
        with CaptureQueriesContext(connection) as captured:
            request()
        counts[name] = len(captured.captured_queries)
        sqls += [query["sql"] for query in captured.captured_queries]
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            request()
            times.append(time.perf_counter() - start)
        p95s[name] = (statistics.median(times), percentile(times, 95))
    return counts, p95s, sqls


def forbidden(sqls: list[str]) -> list[str]:
    """COUNT(*) or OFFSET in a query over messages or the timeline."""
    bad = []
    for sql in sqls:
        if any(table in sql for table in BIG_TABLES) and (
            "COUNT(*)" in sql.upper() or re.search(r"\bOFFSET\b", sql, re.IGNORECASE)
        ):
            bad.append(sql[:200])
    return bad


def plans(user) -> tuple[list[str], list[str]]:
    """EXPLAIN of the timeline and history queries; problems when a big table is scanned without an index."""
    from conversations.models import Conversation, TimelineEntry
    from conversations.selectors import _entries_for_display

    conversation = Conversation.objects.open().filter(assigned_agent=user).order_by("id").first()
    queries = {
        "timeline tail": _entries_for_display().filter(conversation=conversation).order_by("-created_at", "-id")[:101],
        "timeline before": _entries_for_display()
        .filter(conversation=conversation, created_at__lt=timezone.now())
        .order_by("-created_at", "-id")[:101],
        "history record entries": TimelineEntry.objects.filter(conversation=conversation, id__gt=0).order_by("id")[
            :201
        ],
        "activity history": Conversation.objects.filter(contact=conversation.contact).order_by("-opened_at", "-id")[
            :21
        ],
        "last message (ACL)": conversation.messages.order_by("-created_at", "-id")[:1],
    }
    lines, problems = [], []
    for name, queryset in queries.items():
        plan = queryset.explain()
        lines.append(f"  {name}:")
        lines += [f"      {line}" for line in plan.splitlines()]
        for line in plan.splitlines():
            scanned = any(table in line for table in (*BIG_TABLES, "conversations_conversation"))
            if connection.vendor == "sqlite" and scanned and "SCAN" in line and "INDEX" not in line:
                problems.append(f"{name}: {line.strip()}")
            if connection.vendor == "postgresql" and scanned and "Seq Scan" in line:
                problems.append(f"{name}: {line.strip()}")
            if "TEMP B-TREE" in line or line.strip().startswith("Sort "):
                lines.append(f"      ^ sorts the rows it read ({name})")
    return lines, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the large set (1,000,000)")
    parser.add_argument("--small", type=int, default=1_000, help="messages in the small set (1,000)")
    parser.add_argument("--rounds", type=int, default=100, help="requests per page and set (100)")
    args = parser.parse_args()

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    create_database()
    failures: list[str] = []
    try:
        import sqlite3

        print("DB1/DB2 page benchmark")
        print(f"  date      {timezone.now():%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs")
        print(
            f"  versions  Python {platform.python_version()}, Django {django.get_version()}, {database_version()}"
            f" (sqlite3 module {sqlite3.sqlite_version})"
        )
        print(f"  rounds    {args.rounds} requests per page and set, after one warm-up and one counted request")

        small_user = seed("small", args.small)
        small_counts, small_times, small_sql = measure(small_user, args.rounds)
        large_user = seed("large", args.messages)
        if connection.vendor == "postgresql":
            # Steady state after a bulk load: statistics and visibility map up to date, so autovacuum does not
            # start on the new million rows in the middle of the measurement.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE)")
        large_counts, large_times, large_sql = measure(large_user, args.rounds)

        print(
            f"\n{'page':<20} {'queries':>9} {'p50 small':>11} {'p95 small':>11} "
            f"{'p50 large':>11} {'p95 large':>11} ratio"
        )
        for name in small_counts:
            ratio = large_times[name][1] / small_times[name][1]
            print(
                f"{name:<20} {small_counts[name]:>4}/{large_counts[name]:<4} "
                f"{ms(small_times[name][0]):>11} {ms(small_times[name][1]):>11} "
                f"{ms(large_times[name][0]):>11} {ms(large_times[name][1]):>11} {ratio:5.2f}"
            )
            if small_counts[name] != large_counts[name]:
                failures.append(
                    f"DB1 {name}: {small_counts[name]} queries at {args.small}, {large_counts[name]} at {args.messages}"
                )
            if large_counts[name] > MAX_QUERIES:
                failures.append(f"DB1 {name}: {large_counts[name]} queries > {MAX_QUERIES}")
            if ratio > MAX_RATIO and not name.endswith("*"):
                failures.append(f"DB2 {name}: p95 ratio {ratio:.2f} > {MAX_RATIO}")
        bad = forbidden(small_sql + large_sql)
        for sql in bad:
            failures.append(f"DB2 COUNT(*)/OFFSET over messages: {sql}")
        counted = sorted({s[:120] for s in large_sql if "COUNT(" in s.upper() and any(t in s for t in BIG_TABLES)})
        print(f"\nCOUNT(*)/OFFSET over messages or the timeline: {'none' if not bad else len(bad)}")
        if counted:
            print("  (bounded COUNT(id) subqueries, after the read marker, in the ACL:)")
            for sql in counted:
                print(f"    {sql}…")

        lines, problems = plans(large_user)
        print("\nEXPLAIN at the large set:")
        print("\n".join(lines))
        failures += [f"plan: {problem}" for problem in problems]
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=False)
        teardown_test_environment()
        _support.cleanup_run("bench-pages-")

    if failures:
        print("\nMISSED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("\nall goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
