"""Reports for a date range per day, service, agent and channel, computed from recorded times.

Nothing here reads a counter: every figure is derived from interaction,
offer, agent-state-log and conversation rows, so figures cannot drift from
what happened. Days are calendar days in the current time zone (the
supervisor's ``TIME_ZONE``), so an interaction at 23:30 UTC lands on the next
day in Berlin. The channel list comes from ``conversations.Medium``: a new
channel appears in the reports without changes here.

Definitions (inbound interactions created in the range):
- offered: interactions that arrived; handled: answered by an agent;
  missed: ended unanswered without the customer leaving; abandoned: the
  customer left before an answer;
- ASA: mean of answered - created over handled interactions;
- AHT: mean of ended - answered over handled interactions that have ended;
- wrap-up: mean length of After Call Work stretches (agent state log)
  started in the range, credited to the interaction the agent ended last;
- dispositions: conversations closed in the range, by recorded outcome.
Per agent, offered and missed count the offers the agent received and let
expire, abandoned those withdrawn because the customer left.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import AgentState, AgentStateLog
from conversations.models import Conversation, Direction, Interaction, Offer, Service
from supervisor.selectors import local_day_bounds, media_choices

MAX_DAYS = 366
# After Call Work starts right after the interaction ends, in the same transaction or the next.
WRAPUP_MATCH = timedelta(seconds=5)


@dataclass
class Figures:
    offered: int = 0
    handled: int = 0
    missed: int = 0
    abandoned: int = 0
    wait_seconds: float = 0.0
    handle_seconds: float = 0.0
    handle_count: int = 0
    wrapup_seconds: float = 0.0
    wrapup_count: int = 0
    dispositions: Counter = field(default_factory=Counter)

    @property
    def asa(self) -> float | None:
        return self.wait_seconds / self.handled if self.handled else None

    @property
    def aht(self) -> float | None:
        return self.handle_seconds / self.handle_count if self.handle_count else None

    @property
    def wrapup(self) -> float | None:
        return self.wrapup_seconds / self.wrapup_count if self.wrapup_count else None

    @property
    def dispositions_text(self) -> str:
        return "; ".join(f"{name}: {count}" for name, count in sorted(self.dispositions.items()))


@dataclass
class Row:
    key: str
    label: str
    figures: Figures


@dataclass
class Report:
    start: date
    end: date
    days: list[Row]
    services: list[Row]
    agents: list[Row]
    channels: list[Row]
    total: Figures
    dispositions: list[tuple[str, int]]

    def table(self, name: str) -> list[Row]:
        return {"day": self.days, "service": self.services, "agent": self.agents, "channel": self.channels}[name]


TABLES = ("day", "service", "agent", "channel")


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def report_build(*, start: date, end: date, tz=None) -> Report:
    """Figures for the local days ``start`` … ``end`` (inclusive)."""
    if end < start:
        start, end = end, start
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
    tz = tz or timezone.get_current_timezone()
    since, until = local_day_bounds(start, tz)[0], local_day_bounds(end, tz)[1]

    def day_of(moment: datetime) -> str:
        return timezone.localtime(moment, tz).date().isoformat()

    days: dict[str, Figures] = {}
    cursor = start
    while cursor <= end:
        days[cursor.isoformat()] = Figures()
        cursor += timedelta(days=1)
    services: dict[str, Figures] = defaultdict(Figures)
    agents: dict[str, Figures] = defaultdict(Figures)
    channels: dict[str, Figures] = defaultdict(Figures)
    total = Figures()

    interactions = Interaction.objects.filter(
        direction=Direction.INBOUND, created_at__gte=since, created_at__lt=until
    ).values_list("service_id", "agent_id", "medium", "state", "created_at", "answered_at", "ended_at")
    for service_id, agent_id, medium, state, created_at, answered_at, ended_at in interactions.iterator():
        targets = [days[day_of(created_at)], services[str(service_id or "")], channels[medium], total]
        for figures in targets:
            figures.offered += 1
            figures.missed += state == Interaction.State.MISSED
            figures.abandoned += state == Interaction.State.ABANDONED
        if answered_at is None:
            continue
        answered = [*targets, agents[str(agent_id or "")]]
        for figures in answered:
            figures.handled += 1
            figures.wait_seconds += _seconds(answered_at - created_at)
            if ended_at is not None:
                figures.handle_count += 1
                figures.handle_seconds += _seconds(ended_at - answered_at)

    offers = Offer.objects.filter(
        created_at__gte=since, created_at__lt=until, interaction__direction=Direction.INBOUND
    ).values_list("agent_id", "state", "interaction__state")
    for agent_id, state, interaction_state in offers.iterator():
        figures = agents[str(agent_id)]
        figures.offered += 1
        figures.missed += state == Offer.State.EXPIRED
        figures.abandoned += state == Offer.State.CANCELLED and interaction_state == Interaction.State.ABANDONED

    _add_wrapups(since, until, day_of, days, services, agents, channels, total)
    _add_dispositions(since, until, day_of, days, services, agents, channels, total)

    return Report(
        start=start,
        end=end,
        days=[Row(key=day, label=day, figures=figures) for day, figures in days.items()],
        services=_service_rows(services),
        agents=_agent_rows(agents),
        channels=_channel_rows(channels),
        total=total,
        dispositions=sorted(total.dispositions.items(), key=lambda item: (-item[1], item[0])),
    )


def _add_wrapups(since, until, day_of, days, services, agents, channels, total) -> None:
    stretches = list(
        AgentStateLog.objects.filter(
            state=AgentState.AFTER_CALL_WORK, started_at__gte=since, started_at__lt=until, ended_at__isnull=False
        ).values_list("agent__user_id", "started_at", "ended_at")
    )
    if not stretches:
        return
    # The interaction each stretch follows: the one its agent ended last, just before.
    ended: dict[int, list[tuple[datetime, int | None, str]]] = defaultdict(list)
    for agent_id, ended_at, service_id, medium in Interaction.objects.filter(
        agent_id__in={user_id for user_id, _s, _e in stretches},
        answered_at__isnull=False,
        ended_at__gte=since - timedelta(days=1),
        ended_at__lt=until + WRAPUP_MATCH,
    ).values_list("agent_id", "ended_at", "service_id", "medium"):
        ended[agent_id].append((ended_at, service_id, medium))
    for rows in ended.values():
        rows.sort(key=lambda row: row[0])
    for user_id, started_at, ended_at in stretches:
        seconds = _seconds(ended_at - started_at)
        targets = [days[day_of(started_at)], agents[str(user_id)], total]
        rows = ended.get(user_id, [])
        index = bisect.bisect_right([row[0] for row in rows], started_at + WRAPUP_MATCH) - 1
        if index >= 0:
            _ended_at, service_id, medium = rows[index]
            targets += [services[str(service_id or "")], channels[medium]]
        for figures in targets:
            figures.wrapup_count += 1
            figures.wrapup_seconds += seconds


def _add_dispositions(since, until, day_of, days, services, agents, channels, total) -> None:
    closed = list(
        Conversation.objects.filter(closed_at__gte=since, closed_at__lt=until, disposition__isnull=False).values_list(
            "pk", "closed_at", "service_id", "assigned_agent_id", "disposition__name"
        )
    )
    media: dict[int, set[str]] = defaultdict(set)
    for conversation_id, medium in Interaction.objects.filter(
        conversation_id__in=[row[0] for row in closed]
    ).values_list("conversation_id", "medium"):
        media[conversation_id].add(medium)
    for conversation_id, closed_at, service_id, agent_id, name in closed:
        targets = [days[day_of(closed_at)], services[str(service_id or "")], agents[str(agent_id or "")], total]
        targets += [channels[medium] for medium in sorted(media[conversation_id])]
        for figures in targets:
            figures.dispositions[name] += 1


def _service_rows(found: dict[str, Figures]) -> list[Row]:
    names = {str(pk): name for pk, name in Service.objects.values_list("pk", "name")}
    active = [str(pk) for pk in Service.objects.filter(is_active=True).values_list("pk", flat=True)]
    keys = sorted(set(found) | set(active), key=lambda key: (key == "", names.get(key, "").lower()))
    return [Row(key=key, label=names.get(key) or _("No service"), figures=found.get(key) or Figures()) for key in keys]


def _agent_rows(found: dict[str, Figures]) -> list[Row]:
    users = {str(user.pk): user for user in get_user_model().objects.filter(pk__in=[k for k in found if k])}

    def label(key: str) -> str:
        user = users.get(key)
        return (user.get_full_name() or user.get_username()) if user else _("No agent")

    rows = [Row(key=key, label=label(key), figures=figures) for key, figures in found.items()]
    return sorted(rows, key=lambda row: (row.key == "", row.label.lower()))


def _channel_rows(found: dict[str, Figures]) -> list[Row]:
    known = media_choices()
    rows = [Row(key=value, label=label, figures=found.get(value) or Figures()) for value, label in known]
    # A medium stored but no longer (or not yet) among the choices still counts.
    rows += [Row(key=key, label=key, figures=found[key]) for key in sorted(set(found) - {v for v, _l in known})]
    return rows


CSV_HEADER = (
    "table",
    "key",
    "name",
    "offered",
    "handled",
    "missed",
    "abandoned",
    "asa_seconds",
    "aht_seconds",
    "wrapup_avg_seconds",
    "wrapups",
    "dispositions",
)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def report_csv(*, report: Report, tables: tuple[str, ...] = TABLES) -> str:
    """The report's tables as CSV (one header, a ``table`` column says which table a row belongs to)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for name in tables:
        for row in report.table(name):
            f = row.figures
            writer.writerow(
                [
                    name,
                    row.key,
                    _csv_safe(row.label),
                    f.offered,
                    f.handled,
                    f.missed,
                    f.abandoned,
                    _number(f.asa),
                    _number(f.aht),
                    _number(f.wrapup),
                    f.wrapup_count,
                    _csv_safe(f.dispositions_text),
                ]
            )
    return out.getvalue()


def _csv_safe(text: str) -> str:
    """Names come from admins and agents: keep spreadsheets from running them as formulas."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
