"""Report figures against a hand-built data set whose answers are worked out by hand.

Time zone Europe/Berlin (UTC+1 in January). The range is Mon 5 to Wed 7 January 2026 local:
- 5 Jan: a chat (answered after 20 s, 300 s long, Anna), a call (40 s, 600 s, Ben), a missed chat,
  and an SMS created at 23:30 UTC on the 4th — 00:30 local on the 5th — that the customer abandoned;
- 6 Jan: a chat created at 23:30 UTC on the 5th (00:30 local on the 6th): 10 s, 100 s, Anna;
- 7 Jan: nothing at all;
- outside: a chat at 22:59 UTC on the 4th (23:59 local, the 4th), one at 23:00 UTC on the 7th
  (midnight local, the 8th), and an outbound call on the 5th (not an arrival).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import override_settings
from django.urls import reverse

from agents.models import AgentState, AgentStateLog
from conversations.models import Conversation, Interaction, Medium, Offer
from supervisor.reports import report_build, report_csv
from tests.factories import AgentFactory, ConversationFactory, DispositionFactory, ServiceFactory

BERLIN = "Europe/Berlin"
START, END = date(2026, 1, 5), date(2026, 1, 7)


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


def _interaction(*, service, medium, created, agent=None, wait=None, talk=None, state=None, direction="inbound"):
    conversation = ConversationFactory(service=service, opened_at=created, assigned_agent=agent)
    answered = created + timedelta(seconds=wait) if wait is not None else None
    ended = (answered + timedelta(seconds=talk)) if answered and talk is not None else created + timedelta(seconds=60)
    return Interaction.objects.create(
        conversation=conversation,
        medium=medium,
        direction=direction,
        service=service,
        agent=agent,
        state=state or (Interaction.State.ENDED if answered else Interaction.State.MISSED),
        created_at=created,
        answered_at=answered,
        ended_at=ended,
    )


def _close(interaction, disposition, closed_at):
    Conversation.objects.filter(pk=interaction.conversation_id).update(
        status=Conversation.Status.CLOSED, closed_at=closed_at, disposition=disposition
    )


def _offer(interaction, agent, state, after=2):
    created = interaction.created_at + timedelta(seconds=after)
    return Offer.objects.create(
        interaction=interaction,
        agent=agent.user,
        state=state,
        created_at=created,
        expires_at=created + timedelta(seconds=30),
        responded_at=created + timedelta(seconds=5),
    )


def _wrapup(agent, started, seconds):
    return AgentStateLog.objects.create(
        agent=agent,
        state=AgentState.AFTER_CALL_WORK,
        started_at=started,
        ended_at=started + timedelta(seconds=seconds),
    )


@pytest.fixture
def data_set(db):
    bookings = ServiceFactory(name="Bookings", slug="bookings")
    support = ServiceFactory(name="Support", slug="support")
    anna = AgentFactory(user__first_name="Anna", user__last_name="Becker")
    ben = AgentFactory(user__first_name="Ben", user__last_name="Berg")
    solved = DispositionFactory(name="Solved", code="solved")
    callback = DispositionFactory(name="Callback", code="callback")

    chat = _interaction(service=bookings, medium=Medium.CHAT, created=utc(5, 9), agent=anna.user, wait=20, talk=300)
    call = _interaction(service=bookings, medium=Medium.VOICE, created=utc(5, 10), agent=ben.user, wait=40, talk=600)
    missed = _interaction(service=support, medium=Medium.CHAT, created=utc(5, 11))
    sms = _interaction(service=bookings, medium=Medium.SMS, created=utc(4, 23, 30), state=Interaction.State.ABANDONED)
    late_chat = _interaction(
        service=support, medium=Medium.CHAT, created=utc(5, 23, 30), agent=anna.user, wait=10, talk=100
    )
    _interaction(service=bookings, medium=Medium.CHAT, created=utc(4, 22, 59), agent=anna.user, wait=5, talk=50)
    _interaction(service=bookings, medium=Medium.CHAT, created=utc(7, 23), agent=ben.user, wait=5, talk=50)
    _interaction(
        service=bookings, medium=Medium.VOICE, created=utc(5, 12), agent=ben.user, wait=0, talk=90, direction="outbound"
    )

    _offer(chat, anna, Offer.State.ACCEPTED)
    _offer(call, ben, Offer.State.ACCEPTED)
    _offer(missed, anna, Offer.State.EXPIRED)
    _offer(sms, ben, Offer.State.CANCELLED)
    _offer(late_chat, anna, Offer.State.ACCEPTED)

    _wrapup(anna, chat.ended_at, 45)
    _wrapup(ben, call.ended_at, 75)
    _wrapup(anna, late_chat.ended_at, 30)

    _close(chat, solved, utc(5, 9, 6))
    _close(call, solved, utc(5, 10, 12))
    _close(late_chat, callback, utc(5, 23, 33))
    return {"bookings": bookings, "support": support, "anna": anna, "ben": ben}


def _rows(rows) -> dict:
    return {row.label: row.figures for row in rows}


@override_settings(TIME_ZONE=BERLIN)
def test_days_follow_the_local_calendar_including_a_day_without_data(data_set):
    report = report_build(start=START, end=END)

    days = _rows(report.days)
    assert list(days) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    first, second, empty = days.values()
    assert (first.offered, first.handled, first.missed, first.abandoned) == (4, 2, 1, 1)
    assert (first.asa, first.aht, first.wrapup) == (30, 450, 60)
    assert dict(first.dispositions) == {"Solved": 2}
    assert (second.offered, second.handled, second.asa, second.aht, second.wrapup) == (1, 1, 10, 100, 30)
    assert dict(second.dispositions) == {"Callback": 1}
    assert (empty.offered, empty.handled, empty.missed, empty.abandoned) == (0, 0, 0, 0)
    assert (empty.asa, empty.aht, empty.wrapup, empty.dispositions_text) == (None, None, None, "")


@override_settings(TIME_ZONE=BERLIN)
def test_totals_services_channels_and_agents(data_set):
    report = report_build(start=START, end=END)

    total = report.total
    assert (total.offered, total.handled, total.missed, total.abandoned) == (5, 3, 1, 1)
    assert total.asa == pytest.approx(70 / 3)
    assert total.aht == pytest.approx(1000 / 3)
    assert total.wrapup == 50
    assert report.dispositions == [("Solved", 2), ("Callback", 1)]

    services = _rows(report.services)
    bookings, support = services["Bookings"], services["Support"]
    assert (bookings.offered, bookings.handled, bookings.abandoned, bookings.asa, bookings.aht) == (3, 2, 1, 30, 450)
    assert (bookings.wrapup, bookings.dispositions_text) == (60, "Solved: 2")
    assert (support.offered, support.handled, support.missed, support.asa, support.aht) == (2, 1, 1, 10, 100)
    assert (support.wrapup, support.dispositions_text) == (30, "Callback: 1")

    channels = _rows(report.channels)
    # Every medium Parley knows is listed, with or without data.
    assert list(channels) == ["Chat", "Voice", "Video", "SMS", "Email"]
    chat, voice, sms = channels["Chat"], channels["Voice"], channels["SMS"]
    assert (chat.offered, chat.handled, chat.missed, chat.asa, chat.aht, chat.wrapup) == (3, 2, 1, 15, 200, 37.5)
    assert chat.dispositions_text == "Callback: 1; Solved: 1"
    assert (voice.offered, voice.handled, voice.asa, voice.aht, voice.wrapup) == (1, 1, 40, 600, 75)
    assert (sms.offered, sms.handled, sms.abandoned, sms.asa) == (1, 0, 1, None)
    assert channels["Email"].offered == 0

    agents = _rows(report.agents)
    anna, ben = agents["Anna Becker"], agents["Ben Berg"]
    assert (anna.offered, anna.handled, anna.missed, anna.abandoned) == (3, 2, 1, 0)
    assert (anna.asa, anna.aht, anna.wrapup) == (15, 200, 37.5)
    assert anna.dispositions_text == "Callback: 1; Solved: 1"
    assert (ben.offered, ben.handled, ben.missed, ben.abandoned) == (2, 1, 0, 1)
    assert (ben.asa, ben.aht, ben.wrapup) == (40, 600, 75)


@override_settings(TIME_ZONE="UTC")
def test_the_same_data_in_utc_moves_the_midnight_arrivals(data_set):
    report = report_build(start=START, end=END)

    days = _rows(report.days)
    # The abandoned SMS is on the 4th in UTC (out of range); the late chat on the 5th; the 23:00 one on the 7th.
    assert (days["2026-01-05"].offered, days["2026-01-06"].offered, days["2026-01-07"].offered) == (4, 0, 1)
    assert (report.total.offered, report.total.abandoned) == (5, 0)


@override_settings(TIME_ZONE=BERLIN)
def test_csv_export_holds_every_table(data_set, supervisor_client):
    response = supervisor_client.get(reverse("supervisor:reports-csv"), {"start": "2026-01-05", "end": "2026-01-07"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="parley-report-all-2026-01-05-2026-01-07.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["table"] for row in rows} == {"day", "service", "agent", "channel"}
    by_key = {(row["table"], row["name"]): row for row in rows}
    assert by_key[("service", "Bookings")] == {
        "table": "service",
        "key": str(data_set["bookings"].pk),
        "name": "Bookings",
        "offered": "3",
        "handled": "2",
        "missed": "0",
        "abandoned": "1",
        "asa_seconds": "30.0",
        "aht_seconds": "450.0",
        "wrapup_avg_seconds": "60.0",
        "wrapups": "2",
        "dispositions": "Solved: 2",
    }
    empty_day = by_key[("day", "2026-01-07")]
    assert (empty_day["offered"], empty_day["asa_seconds"], empty_day["aht_seconds"]) == ("0", "", "")
    assert by_key[("channel", "Email")]["offered"] == "0"


@override_settings(TIME_ZONE=BERLIN)
def test_csv_export_of_one_table_and_names_that_look_like_formulas(data_set, supervisor_client):
    ServiceFactory(name="=HYPERLINK(1)", slug="evil")

    response = supervisor_client.get(
        reverse("supervisor:reports-csv"), {"start": "2026-01-05", "end": "2026-01-05", "table": "service"}
    )

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["table"] for row in rows} == {"service"}
    assert "'=HYPERLINK(1)" in {row["name"] for row in rows}


@override_settings(TIME_ZONE=BERLIN)
def test_report_page_shows_tables_and_charts(data_set, supervisor_client):
    response = supervisor_client.get(reverse("supervisor:reports"), {"start": "2026-01-05", "end": "2026-01-07"})

    html = response.content.decode()
    assert response.status_code == 200
    assert '<dd id="total-offered">5</dd>' in html
    assert '<dd id="total-asa">0:23</dd>' in html
    assert '<dd id="total-aht">5:33</dd>' in html
    assert html.count("<svg") == 2
    assert 'id="report-channel"' in html
    assert "Callback: 1; Solved: 1" in html


@override_settings(TIME_ZONE=BERLIN)
def test_report_csv_is_the_same_function_the_page_uses(data_set):
    report = report_build(start=START, end=START)
    text = report_csv(report=report, tables=("day",))
    assert text.splitlines()[1].startswith("day,2026-01-05,2026-01-05,4,2,1,1,30.0,450.0,60.0,2,Solved: 2")
