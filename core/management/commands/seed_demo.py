"""Seed a demo contact center: logins, services, reasons, dispositions and contacts with history.

Idempotent: rows are found by their natural keys (username, slug, code,
contact-point value), and a contact that already has any conversation gets no
demo history, so a second run changes nothing.

The demo history is played through the conversation services, so it has the
same timeline entries a real session would, on a virtual clock: every row a
service writes is then backdated with ``.update()`` to that clock, which puts
the history in the last few weeks in a consistent order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction
from django.db.models import Max, Min
from django.urls import reverse
from django.utils import timezone

from agents.models import NotReadyReason
from agents.services import agent_profile_ensure
from contacts.models import Contact, ContactPoint
from contacts.services import contact_identify, contact_point_add
from conversations.models import (
    CannedResponse,
    Conversation,
    Direction,
    Disposition,
    Interaction,
    Medium,
    Message,
    Note,
    Service,
    TimelineEntry,
)
from conversations.services import (
    conversation_close,
    conversation_open,
    interaction_answer,
    interaction_end,
    interaction_start,
    message_record,
    note_add,
)

# Published on purpose so anyone can log in to a demo; the DEBUG guard keeps it off production.
DEMO_PASSWORD = "parley-demo"  # noqa: S105

SUPERVISOR = "supervisor"
ROLE_SUPERVISOR = "supervisor"
ROLE_AGENT = "agent"


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    role: str
    services: tuple[str, ...] = ()


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser(SUPERVISOR, "Sabine", "Krüger", ROLE_SUPERVISOR),
    DemoUser("agent1", "Anna", "Becker", ROLE_AGENT, ("bookings", "support")),
    DemoUser("agent2", "Jonas", "Weber", ROLE_AGENT, ("bookings",)),
    DemoUser("agent3", "Leila", "Haddad", ROLE_AGENT, ("support",)),
)

# (slug, name, disposition codes offered for the service)
DEMO_SERVICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("bookings", "Bookings", ("problem-solved", "follow-up", "booking-changed", "no-action")),
    ("support", "Support", ("problem-solved", "follow-up", "no-action")),
)

# (code, name), in display order
DEMO_DISPOSITIONS: tuple[tuple[str, str], ...] = (
    ("problem-solved", "Problem solved"),
    ("follow-up", "Follow-up needed"),
    ("booking-changed", "Booking changed"),
    ("no-action", "No action needed"),
)

DEMO_REASONS: tuple[tuple[str, str], ...] = (
    ("break", "Break"),
    ("lunch", "Lunch"),
    ("training", "Training"),
    ("meeting", "Meeting"),
)

# Shared canned responses (owner empty): (shortcut, title, body).
DEMO_CANNED: tuple[tuple[str, str, str], ...] = (
    ("hello", "Greeting", "Hello {first_name}, thank you for contacting us. How can I help you today?"),
    ("moment", "One moment", "Thank you, {first_name}. Please give me a moment while I check this for you."),
    ("booking", "Booking reference", "Could you please tell me your booking reference? It has six letters and digits."),
    ("bye", "Goodbye", "Thank you for chatting with us, {first_name} {last_name}. Have a good day!"),
)


@dataclass
class Cast:
    """The rows the demo stories play with, looked up by natural key."""

    users: dict[str, object] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    dispositions: dict[str, Disposition] = field(default_factory=dict)


@dataclass
class Tally:
    users: int = 0
    services: int = 0
    dispositions: int = 0
    reasons: int = 0
    canned: int = 0
    contacts: int = 0
    conversations: int = 0

    def summary(self) -> str:
        parts = [
            (self.users, "users"),
            (self.services, "services"),
            (self.dispositions, "dispositions"),
            (self.reasons, "Not Ready reasons"),
            (self.canned, "canned responses"),
            (self.contacts, "contacts"),
            (self.conversations, "conversations"),
        ]
        return ", ".join(f"{count} {label}" for count, label in parts if count)


class Scene:
    """Plays one conversation through the services on a virtual clock.

    The services stamp rows with the real time; each step re-stamps what it
    wrote with ``self.now``. The clock only moves forward, so the database
    check constraints (answered/ended after created, closed after opened) hold
    after every single update.
    """

    def __init__(self, *, contact: Contact, service: Service, start: datetime, agent=None) -> None:
        self.now = start
        self._last_entry_id = 0
        conversation, created = conversation_open(contact=contact, service=service, agent=agent)
        if not created:
            raise CommandError(f"{contact} already has an open conversation; close it before seeding.")
        self.conversation = conversation
        Conversation.objects.filter(pk=conversation.pk).update(opened_at=self.now)
        self._stamp_entries()

    def wait(self, *, seconds: int = 0, minutes: int = 0, hours: int = 0) -> None:
        self.now += timedelta(seconds=seconds, minutes=minutes, hours=hours)

    def _stamp_entries(self) -> None:
        entries = TimelineEntry.objects.filter(conversation=self.conversation, pk__gt=self._last_entry_id)
        entries.update(created_at=self.now)
        self._last_entry_id = (
            TimelineEntry.objects.filter(conversation=self.conversation).aggregate(last=Max("pk"))["last"] or 0
        )

    def arrive(self, medium: str) -> Interaction:
        """The customer gets in touch; the interaction waits in the queue."""
        interaction = interaction_start(conversation=self.conversation, medium=medium, direction=Direction.INBOUND)
        Interaction.objects.filter(pk=interaction.pk).update(created_at=self.now)
        self._stamp_entries()
        return interaction

    def dial(self, *, agent) -> Interaction:
        """The agent calls the customer; the call rings until ``answer``."""
        call = interaction_start(
            conversation=self.conversation,
            medium=Medium.VOICE,
            direction=Direction.OUTBOUND,
            agent=agent,
            state=Interaction.State.OFFERED,
        )
        Interaction.objects.filter(pk=call.pk).update(created_at=self.now)
        self._stamp_entries()
        return call

    def reach_out(self, medium: str, *, agent) -> Interaction:
        """The agent starts an SMS or email; it is live as soon as it starts."""
        interaction = interaction_start(
            conversation=self.conversation,
            medium=medium,
            direction=Direction.OUTBOUND,
            agent=agent,
            state=Interaction.State.ACTIVE,
        )
        Interaction.objects.filter(pk=interaction.pk).update(created_at=self.now, answered_at=self.now)
        self._stamp_entries()
        return interaction

    def answer(self, interaction: Interaction, *, agent) -> Interaction:
        interaction = interaction_answer(interaction=interaction, agent=agent)
        Interaction.objects.filter(pk=interaction.pk).update(answered_at=self.now)
        self._stamp_entries()
        return interaction

    def customer_says(self, interaction: Interaction, body: str, *, subject: str = "") -> Message:
        message = message_record(
            interaction=interaction,
            direction=Direction.INBOUND,
            author_kind=Message.Author.CUSTOMER,
            body=body,
            subject=subject,
        )
        return self._stamp_message(message)

    def agent_says(self, interaction: Interaction, body: str, *, agent, subject: str = "") -> Message:
        # Email has no delivery receipt; chat and SMS providers report delivery.
        status = Message.Status.SENT if interaction.medium == Medium.EMAIL else Message.Status.DELIVERED
        message = message_record(
            interaction=interaction,
            direction=Direction.OUTBOUND,
            author_kind=Message.Author.AGENT,
            author_agent=agent,
            body=body,
            subject=subject,
            delivery_status=status,
        )
        return self._stamp_message(message)

    def _stamp_message(self, message: Message) -> Message:
        Message.objects.filter(pk=message.pk).update(created_at=self.now)
        self._stamp_entries()
        return message

    def note(self, body: str, *, author) -> Note:
        note = note_add(conversation=self.conversation, author=author, body=body)
        Note.objects.filter(pk=note.pk).update(created_at=self.now)
        self._stamp_entries()
        return note

    def end(self, interaction: Interaction, *, reason: str, actor=None) -> Interaction:
        interaction = interaction_end(interaction=interaction, reason=reason, actor=actor)
        Interaction.objects.filter(pk=interaction.pk).update(ended_at=self.now)
        self._stamp_entries()
        return interaction

    def close(self, *, disposition: Disposition, notes: str, closed_by) -> None:
        still_live = list(self.conversation.interactions.live().values_list("pk", flat=True))
        conversation_close(conversation=self.conversation, disposition=disposition, notes=notes, closed_by=closed_by)
        Interaction.objects.filter(pk__in=still_live).update(ended_at=self.now)
        Conversation.objects.filter(pk=self.conversation.pk).update(closed_at=self.now)
        self._stamp_entries()


Story = Callable[[Cast, Contact, datetime], None]


# --- The demo stories ------------------------------------------------------------
# Each plays one closed conversation. The first three are the worked examples of
# DOMAIN.md; the others give the history screens the everyday cases.


def booking_changed_on_call_with_email(cast: Cast, contact: Contact, start: datetime) -> None:
    """DOMAIN.md example 1: a caller changes a flight; the agent emails the new booking during the call."""
    anna = cast.users["agent1"]
    scene = Scene(contact=contact, service=cast.services["bookings"], start=start)
    call = scene.arrive(Medium.VOICE)
    scene.wait(seconds=42)
    call = scene.answer(call, agent=anna)
    scene.wait(minutes=3, seconds=10)
    scene.note("Wants to move LH 2034 FRA→HAM from 14 to 16 May, same fare class. Booking ref PX7K2Q.", author=anna)
    scene.wait(minutes=2, seconds=30)
    email = scene.reach_out(Medium.EMAIL, agent=anna)
    scene.agent_says(
        email,
        subject="Your updated booking PX7K2Q",
        body=(
            "Dear Ms Schneider,\n\n"
            "as discussed on the phone, your booking PX7K2Q has been changed:\n\n"
            "  Flight LH 2034, Frankfurt (FRA) → Hamburg (HAM)\n"
            "  Thursday 16 May, departure 07:15, arrival 08:20\n"
            "  Seat 14C, 1 checked bag\n\n"
            "The change fee has been waived. Your new e-ticket is attached to the confirmation "
            "you will receive from the airline.\n\n"
            "Kind regards,\nAnna Becker\nParley Bookings"
        ),
        agent=anna,
    )
    email = scene.end(email, reason="sent", actor=anna)
    scene.wait(minutes=1, seconds=20)
    scene.end(call, reason="customer_hung_up")
    scene.wait(minutes=1, seconds=5)
    scene.close(
        disposition=cast.dispositions["booking-changed"],
        notes="Rebooked to 16 May while on the call; confirmation emailed and received by the customer.",
        closed_by=anna,
    )


def chat_continues_by_call_and_sms_summary(cast: Cast, contact: Contact, start: datetime) -> None:
    """DOMAIN.md example 2: a chat moves to a call on the way to work and ends with an SMS summary."""
    jonas = cast.users["agent2"]
    scene = Scene(contact=contact, service=cast.services["bookings"], start=start)
    chat = scene.arrive(Medium.CHAT)
    scene.customer_says(
        chat, "Good morning, I need to move our team's hotel booking in Hamburg (HX-4471) by one night."
    )
    scene.wait(seconds=25)
    chat = scene.answer(chat, agent=jonas)
    scene.wait(seconds=20)
    scene.agent_says(
        chat, "Good morning Mr Müller, I'm Jonas. Let me open HX-4471 — later check-in, same checkout?", agent=jonas
    )
    scene.wait(minutes=1, seconds=5)
    scene.customer_says(
        chat, "Both one night later, 3 to 5 June, still four rooms. Sorry, I have to leave for work now."
    )
    scene.wait(seconds=30)
    scene.agent_says(chat, "No problem — I'll call you on your work number right away, then we finish it.", agent=jonas)
    scene.wait(seconds=40)
    call = scene.dial(agent=jonas)
    scene.wait(seconds=12)
    call = scene.answer(call, agent=jonas)
    scene.wait(seconds=30)
    scene.end(chat, reason="customer_left")
    scene.wait(minutes=5, seconds=40)
    scene.note("Hotel Alster confirmed 4 rooms for 3-5 June; rate unchanged.", author=jonas)
    scene.wait(seconds=50)
    scene.end(call, reason="customer_hung_up")
    scene.wait(minutes=1, seconds=15)
    sms = scene.reach_out(Medium.SMS, agent=jonas)
    scene.agent_says(
        sms,
        "Hello Mr Müller, as discussed: booking HX-4471 at Hotel Alster Hamburg is now 3-5 June, "
        "4 rooms, same rate. Confirmation follows by email. Jonas, Parley Bookings",
        agent=jonas,
    )
    scene.wait(minutes=4, seconds=10)
    scene.customer_says(sms, "Perfect, thanks a lot!")
    scene.wait(minutes=1)
    scene.end(sms, reason="agent_closed", actor=jonas)
    scene.wait(seconds=45)
    scene.close(
        disposition=cast.dispositions["booking-changed"],
        notes="Chat → call → SMS. Booking moved by one night; summary sent by SMS.",
        closed_by=jonas,
    )


def call_switches_to_sms(cast: Cast, contact: Contact, start: datetime) -> None:
    """DOMAIN.md example 3: the caller can no longer talk, so the agent carries on by SMS."""
    leila = cast.users["agent3"]
    scene = Scene(contact=contact, service=cast.services["support"], start=start)
    call = scene.arrive(Medium.VOICE)
    scene.wait(seconds=25)
    call = scene.answer(call, agent=leila)
    scene.wait(seconds=50)
    sms = scene.reach_out(Medium.SMS, agent=leila)
    scene.agent_says(
        sms, "Hi Aylin, Leila from Parley Support here. Text me your question and I'll reply right away.", agent=leila
    )
    scene.wait(seconds=15)
    scene.end(call, reason="customer_hung_up")
    scene.note("Customer went into a meeting; continued by SMS.", author=leila)
    scene.wait(minutes=1, seconds=40)
    scene.customer_says(sms, "Thanks! The app says my card expired, but I added the new one yesterday.")
    scene.wait(minutes=2, seconds=5)
    scene.agent_says(
        sms, "The old card was still set as default. I've switched it to the new one — please try again.", agent=leila
    )
    scene.wait(minutes=3)
    scene.customer_says(sms, "Works now, thank you!")
    scene.wait(seconds=40)
    scene.end(sms, reason="agent_closed", actor=leila)
    scene.wait(seconds=30)
    scene.close(
        disposition=cast.dispositions["problem-solved"],
        notes="Default payment card switched to the new one; customer confirmed by SMS.",
        closed_by=leila,
    )


def luggage_question_by_email(cast: Cast, contact: Contact, start: datetime) -> None:
    jonas = cast.users["agent2"]
    scene = Scene(contact=contact, service=cast.services["bookings"], start=start)
    email = scene.arrive(Medium.EMAIL)
    scene.customer_says(
        email,
        subject="Extra bag for my Lisbon trip",
        body=(
            "Hello,\n\nI'm flying to Lisbon on booking PX2M8D next month. Can I add a second checked "
            "bag, and what does it cost?\n\nThanks,\nMaria Schneider"
        ),
    )
    scene.wait(minutes=47)
    email = scene.answer(email, agent=jonas)
    scene.wait(minutes=6)
    scene.agent_says(
        email,
        subject="Re: Extra bag for my Lisbon trip",
        body=(
            "Dear Ms Schneider,\n\nI've added a second checked bag (23 kg) to booking PX2M8D for both "
            "flights. It costs EUR 35 per direction and was charged to the card on file.\n\n"
            "Kind regards,\nJonas Weber\nParley Bookings"
        ),
        agent=jonas,
    )
    scene.wait(minutes=1)
    scene.end(email, reason="agent_closed", actor=jonas)
    scene.wait(minutes=2)
    scene.close(
        disposition=cast.dispositions["problem-solved"],
        notes="Second bag added to both flights, EUR 70 charged.",
        closed_by=jonas,
    )


def password_reset_by_chat(cast: Cast, contact: Contact, start: datetime) -> None:
    leila = cast.users["agent3"]
    scene = Scene(contact=contact, service=cast.services["support"], start=start)
    chat = scene.arrive(Medium.CHAT)
    scene.customer_says(chat, "Hi, the password reset email never arrives.")
    scene.wait(seconds=50)
    chat = scene.answer(chat, agent=leila)
    scene.wait(seconds=15)
    scene.agent_says(chat, "Hi Aylin, I'm Leila. Which address do you use to log in?", agent=leila)
    scene.wait(seconds=35)
    scene.customer_says(chat, "aylin.yildiz@example.net")
    scene.wait(minutes=1, seconds=10)
    scene.agent_says(
        chat,
        "Your account still had an old address with a typo. I've corrected it and sent a new reset link.",
        agent=leila,
    )
    scene.wait(minutes=2)
    scene.customer_says(chat, "Got it and I'm in. Thanks!")
    scene.wait(seconds=20)
    scene.end(chat, reason="customer_left")
    scene.wait(seconds=40)
    scene.close(
        disposition=cast.dispositions["problem-solved"],
        notes="Login email had a typo; corrected and reset link resent.",
        closed_by=leila,
    )


def invoice_correction_by_email(cast: Cast, contact: Contact, start: datetime) -> None:
    anna = cast.users["agent1"]
    scene = Scene(contact=contact, service=cast.services["support"], start=start)
    email = scene.arrive(Medium.EMAIL)
    scene.customer_says(
        email,
        subject="Invoice 2024-0318: wrong VAT number",
        body=(
            "Hello,\n\nour invoice 2024-0318 shows an old VAT number. Please reissue it with "
            "GB 123 4567 89.\n\nBest regards,\nJames Whitfield\nWhitfield & Partners Ltd"
        ),
    )
    scene.wait(minutes=22)
    email = scene.answer(email, agent=anna)
    scene.wait(minutes=9)
    scene.agent_says(
        email,
        subject="Re: Invoice 2024-0318: wrong VAT number",
        body=(
            "Dear Mr Whitfield,\n\nthank you. Could you confirm whether the new VAT number should also "
            "apply to invoices issued earlier this year?\n\nKind regards,\nAnna Becker\nParley Support"
        ),
        agent=anna,
    )
    scene.wait(hours=17, minutes=35)
    scene.customer_says(
        email,
        subject="Re: Invoice 2024-0318: wrong VAT number",
        body="Good morning,\n\nonly invoice 2024-0318 please; the earlier ones are fine.\n\nJames",
    )
    scene.wait(minutes=14)
    scene.note("Finance ticket FIN-2291 opened to reissue 2024-0318 with the new VAT number.", author=anna)
    scene.wait(minutes=3)
    scene.agent_says(
        email,
        subject="Re: Invoice 2024-0318: wrong VAT number",
        body=(
            "Dear Mr Whitfield,\n\nour finance team will reissue invoice 2024-0318 within two working days; "
            "you will receive it by email.\n\nKind regards,\nAnna Becker\nParley Support"
        ),
        agent=anna,
    )
    scene.wait(minutes=1)
    scene.end(email, reason="agent_closed", actor=anna)
    scene.wait(minutes=2)
    scene.close(
        disposition=cast.dispositions["follow-up"],
        notes="Check on FIN-2291 in two days that the corrected invoice went out.",
        closed_by=anna,
    )


def missing_confirmation_by_sms(cast: Cast, contact: Contact, start: datetime) -> None:
    jonas = cast.users["agent2"]
    scene = Scene(contact=contact, service=cast.services["bookings"], start=start)
    sms = scene.arrive(Medium.SMS)
    scene.customer_says(sms, "Hi, I booked a room in Munich for Friday but never got a confirmation email?")
    scene.wait(minutes=1, seconds=30)
    sms = scene.answer(sms, agent=jonas)
    scene.wait(minutes=1, seconds=10)
    scene.agent_says(
        sms,
        "Hi Emily, your booking MU-2280 is confirmed. The email went out on Monday — could you check your spam folder?",
        agent=jonas,
    )
    scene.wait(minutes=5)
    scene.customer_says(sms, "Found it in spam, all good. Thanks!")
    scene.wait(seconds=50)
    scene.end(sms, reason="agent_closed", actor=jonas)
    scene.wait(seconds=30)
    scene.close(
        disposition=cast.dispositions["no-action"],
        notes="Confirmation was in the customer's spam folder.",
        closed_by=jonas,
    )


def abandoned_call_and_callback(cast: Cast, contact: Contact, start: datetime) -> None:
    anna = cast.users["agent1"]
    scene = Scene(contact=contact, service=cast.services["support"], start=start)
    first_call = scene.arrive(Medium.VOICE)
    scene.wait(minutes=1, seconds=20)
    scene.end(first_call, reason="customer_left")
    scene.wait(minutes=6)
    callback = scene.dial(agent=anna)
    scene.wait(seconds=9)
    callback = scene.answer(callback, agent=anna)
    scene.wait(minutes=4, seconds=30)
    scene.note("Customer's new phone had no 2FA device; removed the old one so he could enrol again.", author=anna)
    scene.wait(minutes=2, seconds=15)
    scene.end(callback, reason="agent_hung_up", actor=anna)
    scene.wait(minutes=1)
    scene.close(
        disposition=cast.dispositions["problem-solved"],
        notes="Called back after an abandoned call; 2FA re-enrolled on the new phone.",
        closed_by=anna,
    )


@dataclass(frozen=True)
class Visit:
    days_ago: int
    at: time
    story: Story


@dataclass(frozen=True)
class DemoContact:
    first_name: str
    last_name: str
    company: str
    # (kind, value, label); the first one identifies the contact.
    points: tuple[tuple[str, str, str], ...]
    history: tuple[Visit, ...]


PHONE, EMAIL, WEBCHAT = ContactPoint.Kind.PHONE, ContactPoint.Kind.EMAIL, ContactPoint.Kind.WEBCHAT

# Phone numbers are from ranges reserved for fiction (Bundesnetzagentur, Ofcom, NANP 555-01xx).
DEMO_CONTACTS: tuple[DemoContact, ...] = (
    DemoContact(
        first_name="Maria",
        last_name="Schneider",
        company="",
        points=((PHONE, "+49 30 23125417", "home"), (EMAIL, "maria.schneider@example.com", "")),
        history=(
            Visit(26, time(10, 5), luggage_question_by_email),
            Visit(12, time(9, 14), booking_changed_on_call_with_email),
        ),
    ),
    DemoContact(
        first_name="Thomas",
        last_name="Müller",
        company="Müller Logistik GmbH",
        points=(
            (PHONE, "+49 40 66969231", "work"),
            (EMAIL, "t.mueller@example.org", "work"),
            (WEBCHAT, "visitor-8c41f0d2", ""),
        ),
        history=(Visit(5, time(7, 52), chat_continues_by_call_and_sms_summary),),
    ),
    DemoContact(
        first_name="Aylin",
        last_name="Yıldız",  # noqa: RUF001 - Turkish dotless i on purpose: names are not ASCII
        company="",
        points=(
            (PHONE, "+49 152 28817386", "mobile"),
            (EMAIL, "aylin.yildiz@example.net", ""),
            (WEBCHAT, "visitor-2b7e91aa", ""),
        ),
        history=(
            Visit(19, time(20, 10), password_reset_by_chat),
            Visit(2, time(17, 40), call_switches_to_sms),
        ),
    ),
    DemoContact(
        first_name="James",
        last_name="Whitfield",
        company="Whitfield & Partners Ltd",
        points=((EMAIL, "james.whitfield@example.com", "work"), (PHONE, "+44 20 7946 0321", "office")),
        history=(Visit(9, time(15, 20), invoice_correction_by_email),),
    ),
    DemoContact(
        first_name="Emily",
        last_name="Carter",
        company="",
        points=((PHONE, "+1 202 555 0147", "mobile"), (EMAIL, "emily.carter@example.net", "")),
        history=(Visit(15, time(13, 30), missing_confirmation_by_sms),),
    ),
    DemoContact(
        first_name="Lukas",
        last_name="Hoffmann",
        company="",
        points=((PHONE, "+49 89 99998120", "mobile"), (EMAIL, "lukas.hoffmann@example.com", "")),
        history=(Visit(7, time(11, 2), abandoned_call_and_callback),),
    ),
)


def _day_at(now: datetime, *, days_ago: int, at: time) -> datetime:
    day = timezone.localtime(now) - timedelta(days=days_ago)
    return day.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)


class Command(BaseCommand):
    help = "Create demo logins, services, reasons, dispositions and contacts with past conversations (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=os.environ.get("PORT") or "8000",
            help="Port shown in the printed URLs (default: $PORT or 8000).",
        )
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Seed even with DEBUG off. The demo users have a published password.",
        )

    def handle(self, *args, port: int, allow_production: bool, **options) -> None:
        if not settings.DEBUG and not allow_production:
            raise CommandError(
                "Refusing to seed demo data with DEBUG off: it creates users whose password "
                f"({DEMO_PASSWORD!r}) is published. Pass --allow-production if this is really what you want."
            )
        tally = Tally()
        with transaction.atomic():
            cast = Cast()
            self._seed_dispositions(cast, tally)
            self._seed_services(cast, tally)
            self._seed_reasons(tally)
            self._seed_canned(tally)
            self._seed_users(cast, tally)
            self._seed_contacts(cast, tally)
        self._report(tally, port=port)

    def _seed_dispositions(self, cast: Cast, tally: Tally) -> None:
        for position, (code, name) in enumerate(DEMO_DISPOSITIONS, start=1):
            disposition, created = Disposition.objects.get_or_create(
                code=code, defaults={"name": name, "position": position}
            )
            cast.dispositions[code] = disposition
            tally.dispositions += created

    def _seed_services(self, cast: Cast, tally: Tally) -> None:
        for slug, name, disposition_codes in DEMO_SERVICES:
            service, created = Service.objects.get_or_create(slug=slug, defaults={"name": name})
            service.dispositions.add(*(cast.dispositions[code] for code in disposition_codes))
            cast.services[slug] = service
            tally.services += created

    def _seed_reasons(self, tally: Tally) -> None:
        for position, (code, name) in enumerate(DEMO_REASONS, start=1):
            _reason, created = NotReadyReason.objects.get_or_create(
                code=code, defaults={"name": name, "position": position, "is_system": False}
            )
            tally.reasons += created

    def _seed_canned(self, tally: Tally) -> None:
        for shortcut, title, body in DEMO_CANNED:
            _canned, created = CannedResponse.objects.get_or_create(
                owner=None, shortcut=shortcut, defaults={"title": title, "body": body}
            )
            tally.canned += created

    def _seed_users(self, cast: Cast, tally: Tally) -> None:
        user_model = get_user_model()
        for demo in DEMO_USERS:
            is_supervisor = demo.role == ROLE_SUPERVISOR
            user, created = user_model.objects.get_or_create(
                username=demo.username,
                defaults={
                    "first_name": demo.first_name,
                    "last_name": demo.last_name,
                    "email": f"{demo.username}@example.com",
                    "is_staff": is_supervisor,
                    "is_superuser": is_supervisor,
                },
            )
            if created:
                # Only a new user gets the demo password: a changed one is kept.
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
                tally.users += 1
            if demo.role == ROLE_AGENT:
                profile = agent_profile_ensure(user=user)
                profile.services.add(*(cast.services[slug] for slug in demo.services))
            cast.users[demo.username] = user

    def _seed_contacts(self, cast: Cast, tally: Tally) -> None:
        now = timezone.now()
        for demo in DEMO_CONTACTS:
            first_kind, first_value, first_label = demo.points[0]
            contact, created = contact_identify(
                kind=first_kind,
                value=first_value,
                first_name=demo.first_name,
                last_name=demo.last_name,
                company=demo.company,
                label=first_label,
            )
            tally.contacts += created
            for kind, value, label in demo.points:
                try:
                    contact_point_add(contact=contact, kind=kind, value=value, label=label)
                except IntegrityError:
                    self.stderr.write(f"Skipped {kind} {value}: it belongs to another contact.")
            # Any conversation, demo or real, means this contact's history is not ours to fill.
            if contact.conversations.exists():
                continue
            last_activity_before = Contact.objects.values_list("last_activity_at", flat=True).get(pk=contact.pk)
            for visit in demo.history:
                visit.story(cast, contact, _day_at(now, days_ago=visit.days_ago, at=visit.at))
                tally.conversations += 1
            self._backdate_contact(contact, created=created, last_activity_before=last_activity_before)

    def _backdate_contact(self, contact: Contact, *, created: bool, last_activity_before: datetime) -> None:
        """Put the contact's own timestamps in line with its backdated history."""
        span = contact.conversations.aggregate(first=Min("opened_at"), last=Max("closed_at"))
        if created:
            Contact.objects.filter(pk=contact.pk).update(created_at=span["first"], last_activity_at=span["last"])
            contact.points.update(created_at=span["first"])
        else:
            # conversation_close touched the contact with the real time; keep only genuine activity.
            last = max(last_activity_before, span["last"])
            Contact.objects.filter(pk=contact.pk).update(last_activity_at=last)

    def _report(self, tally: Tally, *, port: int) -> None:
        write = self.stdout.write
        created = tally.summary()
        if created:
            write(self.style.SUCCESS(f"Demo data created: {created}."))
        else:
            write(self.style.SUCCESS("Demo data already present; nothing changed."))

        services = {slug: name for slug, name, _codes in DEMO_SERVICES}
        write("")
        write(self.style.MIGRATE_HEADING("Demo logins"))
        write(f"  {'username':<12} {'password':<13} role")
        for demo in DEMO_USERS:
            if demo.role == ROLE_SUPERVISOR:
                role = "supervisor (admin)"
            else:
                role = "agent: " + ", ".join(services[slug] for slug in demo.services)
            write(f"  {demo.username:<12} {DEMO_PASSWORD:<13} {role}")

        base = f"http://127.0.0.1:{port}"
        write("")
        write(self.style.MIGRATE_HEADING("Open"))
        write(f"  Agent desktop: {base}{reverse('desktop')}")
        write(f"  Admin:         {base}{reverse('admin:index')}")
