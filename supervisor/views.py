"""The supervisor's live views, linked from the admin: boards, conversations, reports, audit.

Thin views: parse, call one selector or service, render. The boards and the
monitored conversation are template partials that the supervisor consumers
render too, so the same HTML arrives by HTTP and over the websocket.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from conversations import selectors as conversation_selectors
from conversations.views import ENTRIES
from supervisor import charts, reports, selectors
from supervisor.access import supervisor_required
from supervisor.forms import (
    AuditFilterForm,
    BoardFilterForm,
    ConversationFilterForm,
    DateRangeForm,
    ForceStateForm,
    ReassignForm,
)
from supervisor.services import agent_state_force, conversation_reassign

AGENTS_BOARD = "supervisor/agents.html#agents-board"
QUEUES_BOARD = "supervisor/queues.html#queues-board"
MONITOR_HEADER = "supervisor/monitor.html#monitor-header"
MONITOR_TIMELINE_PAGE = 200


# --- context builders, shared with supervisor.consumers -----------------------------------------------------------


def agents_board_context(*, team_id=None, service_id=None, errors: dict | None = None) -> dict:
    return {
        "rows": selectors.agents_board(team_id=team_id, service_id=service_id),
        "media": selectors.media_choices(),
        "state_form": ForceStateForm(),
        "errors": errors or {},
    }


def queues_board_context(*, team_id=None, service_id=None) -> dict:
    return {"rows": selectors.queues_board(team_id=team_id, service_id=service_id), "media": selectors.media_choices()}


def monitor_header_context(*, conversation, user, error: str = "") -> dict:
    live = selectors.conversation_live_interactions(conversation=conversation)
    reassignable = conversation.is_open and any(
        i.agent_id == conversation.assigned_agent_id and i.state in ("active", "on_hold") for i in live
    )
    return {
        "conversation": conversation,
        "contact": conversation.contact,
        "live": live,
        "reassignable": reassignable,
        "reassign_form": ReassignForm(agents=selectors.agents_for_reassign(conversation=conversation))
        if reassignable
        else None,
        "reassign_error": error,
        "me": user,
    }


def monitor_entries_context(*, conversation, user, entries) -> dict:
    return {
        "conversation": conversation,
        "contact": conversation.contact,
        "me": user,
        "entries": entries,
        "read_only": True,
    }


def _filters(request: HttpRequest) -> tuple[BoardFilterForm, dict]:
    form = BoardFilterForm(request.GET or None)
    return form, form.ids()


# --- pages ------------------------------------------------------------------------------------------------------


@supervisor_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("supervisor:agents")


@supervisor_required
@require_GET
def agents_page(request: HttpRequest) -> HttpResponse:
    form, ids = _filters(request)
    context = agents_board_context(**ids)
    if request.htmx:
        return render(request, AGENTS_BOARD, context)
    context.update(filter_form=form, socket_query=request.GET.urlencode(), section="agents")
    return render(request, "supervisor/agents.html", context)


@supervisor_required
@require_POST
def agent_state(request: HttpRequest, agent_id: int) -> HttpResponse:
    agent = selectors.agent_profile_for_board(agent_id=agent_id)
    if agent is None:
        raise Http404(_("No such agent."))
    form = ForceStateForm(request.POST)
    error = ""
    if not form.is_valid():
        error = _("Choose a state from the list.")
    else:
        state, reason = form.state_and_reason()
        try:
            agent_state_force(agent=agent, state=state, reason=reason, supervisor=request.user)
        except ValidationError as exc:
            error = " ".join(exc.messages)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(f"{reverse('supervisor:agents')}?{request.GET.urlencode()}")
    _form, ids = _filters(request)
    context = agents_board_context(**ids, errors={agent.pk: error} if error else None)
    return render(request, AGENTS_BOARD, context, status=422 if error else 200)


@supervisor_required
@require_GET
def queues_page(request: HttpRequest) -> HttpResponse:
    form, ids = _filters(request)
    context = queues_board_context(**ids)
    if request.htmx:
        return render(request, QUEUES_BOARD, context)
    context.update(filter_form=form, socket_query=request.GET.urlencode(), section="queues")
    return render(request, "supervisor/queues.html", context)


@supervisor_required
@require_GET
def conversations_page(request: HttpRequest) -> HttpResponse:
    form = ConversationFilterForm(request.GET or None)
    found = selectors.conversations_search(criteria=form.criteria())
    page = found[: selectors.CONVERSATION_PAGE]
    more = len(found) > selectors.CONVERSATION_PAGE
    query = request.GET.copy()
    if more:
        query["before"] = page[-1].pk
    return render(
        request,
        "supervisor/conversations.html",
        {
            "form": form,
            "conversations": page,
            "next_query": query.urlencode() if more else "",
            "section": "conversations",
        },
    )


@supervisor_required
@require_GET
def conversation_monitor(request: HttpRequest, conversation_uuid) -> HttpResponse:
    conversation = selectors.conversation_for_supervisor(conversation_uuid=conversation_uuid)
    if conversation is None:
        raise Http404(_("No such conversation."))
    entries, has_more = conversation_selectors.conversation_timeline_tail(
        conversation=conversation, limit=MONITOR_TIMELINE_PAGE
    )
    context = monitor_header_context(conversation=conversation, user=request.user)
    context.update(entries=entries, has_more=has_more, read_only=True, section="conversations", entries_partial=ENTRIES)
    return render(request, "supervisor/monitor.html", context)


@supervisor_required
@require_POST
def conversation_reassign_view(request: HttpRequest, conversation_uuid) -> HttpResponse:
    conversation = selectors.conversation_for_supervisor(conversation_uuid=conversation_uuid)
    if conversation is None:
        raise Http404(_("No such conversation."))
    form = ReassignForm(request.POST, agents=selectors.agents_for_reassign(conversation=conversation))
    error = ""
    if not form.is_valid():
        error = _("Choose an agent or the queue.")
    else:
        target = form.target_agent_user()
        try:
            conversation = conversation_reassign(
                conversation=conversation,
                supervisor=request.user,
                to_agent=target,
                to_queue=target is None,
                note=form.cleaned_data["note"],
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, _("The conversation was reassigned."))
        return redirect("supervisor:conversation", conversation_uuid=conversation.uuid)
    conversation = selectors.conversation_for_supervisor(conversation_uuid=conversation.uuid)
    context = monitor_header_context(conversation=conversation, user=request.user, error=error)
    return render(request, MONITOR_HEADER, context, status=422 if error else 200)


@supervisor_required
@require_GET
def reports_page(request: HttpRequest) -> HttpResponse:
    form = DateRangeForm(request.GET or None)
    start, end = form.range()
    report = reports.report_build(start=start, end=end)
    days_chart = charts.bar_chart(
        labels=[row.label[5:] for row in report.days],
        series=[
            (_("Offered"), [row.figures.offered for row in report.days]),
            (_("Handled"), [row.figures.handled for row in report.days]),
        ],
    )
    channel_chart = charts.bar_chart(
        labels=[row.label for row in report.channels],
        series=[
            (_("Offered"), [row.figures.offered for row in report.channels]),
            (_("Handled"), [row.figures.handled for row in report.channels]),
        ],
        height=180,
    )
    return render(
        request,
        "supervisor/reports.html",
        {
            "form": form,
            "report": report,
            "tables": [
                ("day", _("Per day"), report.days),
                ("service", _("Per service"), report.services),
                ("agent", _("Per agent"), report.agents),
                ("channel", _("Per channel"), report.channels),
            ],
            "days_chart": days_chart,
            "channel_chart": channel_chart,
            "range_query": f"start={start.isoformat()}&end={end.isoformat()}",
            "section": "reports",
        },
    )


@supervisor_required
@require_GET
def reports_csv(request: HttpRequest) -> HttpResponse:
    form = DateRangeForm(request.GET or None)
    start, end = form.range()
    table = request.GET.get("table", "")
    tables = (table,) if table in reports.TABLES else reports.TABLES
    report = reports.report_build(start=start, end=end)
    response = HttpResponse(reports.report_csv(report=report, tables=tables), content_type="text/csv; charset=utf-8")
    name = f"parley-report-{'-'.join(tables) if len(tables) == 1 else 'all'}-{start}-{end}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@supervisor_required
@require_GET
def audit_page(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    items = selectors.audit_trail(day_from=data.get("start"), day_to=data.get("end"), actor=data.get("actor", "") or "")
    return render(request, "supervisor/audit.html", {"form": form, "items": items, "section": "audit"})
