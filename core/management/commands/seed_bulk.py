"""Seed a large, consistent data set fast: the reference data set of QUALITY.md for the page goals (DB1, DB2).

    manage.py seed_bulk                                   # 10,000 contacts, 20,000 conversations, 1,000,000 messages
    manage.py seed_bulk --contacts 50 --conversations 100 --messages 2000

Rows are written with ``bulk_create`` in batches (one transaction per batch), not through
the services: no routing, no events, no per-row signals. What it writes is still what the
services would have written:

- contacts, each with one phone and one email contact point;
- conversations spread round-robin over the contacts, oldest first, every one closed
  (``--open`` of them, the newest, stay open and assigned to ``--agent``, one per contact);
- per conversation one chat, SMS or email interaction carrying its messages, and on every
  fourth conversation a voice call too (media: chat, voice, SMS, email);
- messages alternating customer / agent, with a ``message`` timeline entry each, framed by
  ``opened`` and (closed conversations) ``closed`` entries; times increase with ids.

Primary keys are assigned here (after the current highest), so a message and its timeline
entry are linked without reading ids back; PostgreSQL sequences are reset at the end. Run it on
a database nobody else is writing to at the same time.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.color import no_style
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from contacts.models import Contact, ContactPoint
from conversations.models import Conversation, Direction, Interaction, Medium, Message, Service, TimelineEntry
from conversations.services import counts_unread_for_agent

BATCH = 5000
# Media that carry messages, in turn; every fourth conversation also has a voice call.
TEXT_MEDIA = (Medium.CHAT, Medium.SMS, Medium.EMAIL)
FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannes", "Ida", "Jan", "Lena", "Malik")
LAST_NAMES = ("Schmidt", "Meyer", "Wagner", "Becker", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Neumann")
CONVERSATION_STEP = timedelta(minutes=10)
MESSAGE_STEP = timedelta(seconds=2)


def _next_id(model) -> int:
    return (model.objects.aggregate(top=Max("pk"))["top"] or 0) + 1


def _write(model, rows: list) -> None:
    if rows:
        with transaction.atomic():
            model.objects.bulk_create(rows, batch_size=BATCH)


class Command(BaseCommand):
    help = "Seed contacts, conversations and messages in bulk (the page benchmarks' data set)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=10_000)
        parser.add_argument("--conversations", type=int, default=20_000)
        parser.add_argument("--messages", type=int, default=1_000_000)
        parser.add_argument("--agent", default="", help="Username of the agent the open conversations belong to.")
        parser.add_argument("--open", type=int, default=0, help="How many of the conversations stay open (--agent).")
        parser.add_argument(
            "--open-messages", type=int, default=0, help="Messages in each open conversation (out of --messages)."
        )
        parser.add_argument("--allow-production", action="store_true", help="Seed even with DEBUG off.")

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG and not options["allow_production"]:
            raise CommandError(
                "Refusing to seed bulk data with DEBUG off; pass --allow-production if this is really what you want."
            )
        n_contacts, n_conversations, n_messages = options["contacts"], options["conversations"], options["messages"]
        n_open, open_messages = options["open"], options["open_messages"]
        if n_contacts < 1 or n_conversations < 1 or n_messages < 0:
            raise CommandError("--contacts and --conversations must be at least 1, --messages at least 0.")
        if n_open > min(n_contacts, n_conversations):
            raise CommandError("--open cannot exceed --contacts or --conversations (one open conversation each).")
        if n_open * open_messages > n_messages:
            raise CommandError("--open times --open-messages cannot exceed --messages.")
        agent = None
        if n_open:
            if not options["agent"]:
                raise CommandError("--open needs --agent.")
            agent = get_user_model().objects.filter(username=options["agent"]).first()
            if agent is None:
                raise CommandError(f"No user named {options['agent']!r}.")

        started = time.perf_counter()
        pragma = None
        if connection.vendor == "sqlite" and not connection.in_atomic_block:
            # Only this command's connection, and not inside a transaction (SQLite refuses); restored at the end.
            with connection.cursor() as cursor:
                pragma = cursor.execute("PRAGMA synchronous").fetchone()[0]
                cursor.execute("PRAGMA synchronous=OFF")
        try:
            counts = self._seed(n_contacts, n_conversations, n_messages, n_open, open_messages, agent)
        finally:
            if pragma is not None:
                with connection.cursor() as cursor:
                    cursor.execute(f"PRAGMA synchronous={int(pragma)}")
        if connection.vendor == "postgresql":
            models = [Contact, ContactPoint, Conversation, Interaction, Message, TimelineEntry]
            with connection.cursor() as cursor:
                for sql in connection.ops.sequence_reset_sql(no_style(), models):
                    cursor.execute(sql)
        elapsed = time.perf_counter() - started
        summary = ", ".join(f"{value:,} {name}" for name, value in counts.items())
        self.stdout.write(f"Seeded {summary} in {elapsed:.1f} s.")

    def _seed(self, n_contacts, n_conversations, n_messages, n_open, open_messages, agent) -> dict[str, int]:
        service, _ = Service.objects.get_or_create(slug="bulk", defaults={"name": "Bulk"})
        n_closed = n_conversations - n_open
        # Conversation i (0-based, oldest first) belongs to contact i % n_contacts; the open ones are the
        # newest and belong to contacts 0 .. n_open-1 (i = n_closed + k, k < n_open).
        end = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
        longest = max(open_messages, -(-max(n_messages - n_open * open_messages, 0) // max(n_closed, 1)))
        span = CONVERSATION_STEP + MESSAGE_STEP * (longest + 4)
        start = end - span * n_conversations

        def opened_at(i: int) -> datetime:
            return start + span * i

        def contact_index(i: int) -> int:
            return (i - n_closed) if i >= n_closed else i % n_contacts

        def closed_at(i: int, count: int) -> datetime:
            return opened_at(i) + MESSAGE_STEP * (count + 2)

        def messages_in(i: int) -> int:
            if i >= n_closed:
                return open_messages
            rest = n_messages - n_open * open_messages
            return rest // n_closed + (1 if i < rest % n_closed else 0)

        # The newest conversation of each contact gives its last activity.
        last_activity: dict[int, datetime] = {}
        for i in range(n_conversations):
            c = contact_index(i)
            moment = opened_at(i) if i >= n_closed else closed_at(i, messages_in(i))
            if c not in last_activity or moment > last_activity[c]:
                last_activity[c] = moment

        contact_base = _next_id(Contact)
        point_base = _next_id(ContactPoint)
        contacts, points = [], []
        for c in range(n_contacts):
            pk = contact_base + c
            first, last = FIRST_NAMES[c % len(FIRST_NAMES)], LAST_NAMES[(c // len(FIRST_NAMES)) % len(LAST_NAMES)]
            contacts.append(
                Contact(
                    pk=pk,
                    first_name=first,
                    last_name=f"{last} {pk}",
                    created_at=start,
                    last_activity_at=last_activity.get(c, start),
                )
            )
            points.append(
                ContactPoint(
                    pk=point_base + 2 * c,
                    contact_id=pk,
                    kind=ContactPoint.Kind.PHONE,
                    value=f"+4915{pk:09d}",
                    label="mobile",
                    created_at=start,
                )
            )
            points.append(
                ContactPoint(
                    pk=point_base + 2 * c + 1,
                    contact_id=pk,
                    kind=ContactPoint.Kind.EMAIL,
                    value=f"bulk-{pk}@bulk.example",
                    created_at=start,
                )
            )
            if len(contacts) >= BATCH:
                _write(Contact, contacts)
                _write(ContactPoint, points)
                contacts, points = [], []
        _write(Contact, contacts)
        _write(ContactPoint, points)

        conversation_base = _next_id(Conversation)
        interaction_id = _next_id(Interaction)
        message_id = _next_id(Message)
        entry_id = _next_id(TimelineEntry)
        counts = {
            "contacts": n_contacts,
            "contact points": 2 * n_contacts,
            "conversations": 0,
            "interactions": 0,
            "messages": 0,
            "timeline entries": 0,
        }
        conversations, interactions, messages, entries = [], [], [], []

        def flush() -> None:
            with transaction.atomic():
                Conversation.objects.bulk_create(conversations, batch_size=BATCH)
                Interaction.objects.bulk_create(interactions, batch_size=BATCH)
                Message.objects.bulk_create(messages, batch_size=BATCH)
                TimelineEntry.objects.bulk_create(entries, batch_size=BATCH)
            counts["conversations"] += len(conversations)
            counts["interactions"] += len(interactions)
            counts["messages"] += len(messages)
            counts["timeline entries"] += len(entries)
            for rows in (conversations, interactions, messages, entries):
                rows.clear()

        for i in range(n_conversations):
            is_open = i >= n_closed
            conversation_id = conversation_base + i
            count = messages_in(i)
            opened = opened_at(i)
            closed = None if is_open else closed_at(i, count)
            medium = Medium.CHAT if is_open else TEXT_MEDIA[i % len(TEXT_MEDIA)]
            conversations.append(
                Conversation(
                    pk=conversation_id,
                    contact_id=contact_base + contact_index(i),
                    service=service,
                    status=Conversation.Status.OPEN if is_open else Conversation.Status.CLOSED,
                    assigned_agent=agent if is_open else None,
                    opened_at=opened,
                    closed_at=closed,
                )
            )
            entries.append(
                TimelineEntry(
                    pk=entry_id, conversation_id=conversation_id, kind=TimelineEntry.Kind.OPENED, created_at=opened
                )
            )
            entry_id += 1
            text_interaction = interaction_id
            interactions.append(
                Interaction(
                    pk=interaction_id,
                    conversation_id=conversation_id,
                    medium=medium,
                    direction=Direction.INBOUND,
                    state=Interaction.State.ACTIVE if is_open else Interaction.State.ENDED,
                    service=service,
                    agent=agent if is_open else None,
                    created_at=opened,
                    answered_at=opened,
                    ended_at=closed,
                    end_reason="" if is_open else "completed",
                )
            )
            interaction_id += 1
            if not is_open and i % 4 == 3:
                interactions.append(
                    Interaction(
                        pk=interaction_id,
                        conversation_id=conversation_id,
                        medium=Medium.VOICE,
                        direction=Direction.OUTBOUND,
                        state=Interaction.State.ENDED,
                        service=service,
                        created_at=opened,
                        answered_at=opened,
                        ended_at=closed,
                        end_reason="completed",
                    )
                )
                interaction_id += 1
            for j in range(count):
                moment = opened + MESSAGE_STEP * (j + 1)
                from_customer = j % 2 == 0
                messages.append(
                    Message(
                        pk=message_id,
                        conversation_id=conversation_id,
                        interaction_id=text_interaction,
                        medium=medium,
                        direction=Direction.INBOUND if from_customer else Direction.OUTBOUND,
                        author_kind=Message.Author.CUSTOMER if from_customer else Message.Author.AGENT,
                        author_agent=None if from_customer else agent,
                        subject=f"Conversation {conversation_id}" if medium == Medium.EMAIL else "",
                        body=f"Message {j + 1} of conversation {conversation_id}: "
                        + ("I have a question about my booking." if from_customer else "Let me check that for you."),
                        delivery_status=Message.Status.RECEIVED if from_customer else Message.Status.DELIVERED,
                        created_at=moment,
                    )
                )
                entries.append(
                    TimelineEntry(
                        pk=entry_id,
                        conversation_id=conversation_id,
                        kind=TimelineEntry.Kind.MESSAGE,
                        message_id=message_id,
                        interaction_id=text_interaction,
                        created_at=moment,
                        unread_for_agent=counts_unread_for_agent(messages[-1]),
                    )
                )
                message_id += 1
                entry_id += 1
                if len(messages) >= BATCH:
                    flush()
            if closed is not None:
                entries.append(
                    TimelineEntry(
                        pk=entry_id, conversation_id=conversation_id, kind=TimelineEntry.Kind.CLOSED, created_at=closed
                    )
                )
                entry_id += 1
            if len(conversations) >= BATCH:
                flush()
        flush()
        if n_open:
            # The agent has read the open conversations up to their last entry, as on a working desktop.
            for conversation in Conversation.objects.filter(
                pk__gte=conversation_base + n_closed, pk__lt=conversation_base + n_conversations
            ):
                last = (
                    TimelineEntry.objects.filter(conversation=conversation)
                    .order_by("-id")
                    .values_list("id", flat=True)
                    .first()
                )
                Conversation.objects.filter(pk=conversation.pk).update(
                    agent_read_upto=last or 0, customer_read_upto=last or 0
                )
        return counts
