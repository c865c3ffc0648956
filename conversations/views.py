"""The agent desktop's conversation views: offers, the Active Conversations List, the workspace.

Every live region is a template partial with a stable id and ``hx-swap-oob``.
These views return them to htmx, and the agent consumer renders the very same
partials (with the same context builders below) to push them over the
websocket. Writes return the partials they changed; new timeline entries also
arrive through the websocket, and the client inserts an entry only once.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import push_url, reswap

from agents.models import AgentProfile
from agents.selectors import agent_for_request
from agents.views import state_partial_context
from channels_app.webchat.services import chat_agent_message, chat_attachment_send, chat_end, live_chat_for
from contacts.selectors import contact_points_loaded
from conversations import outbox, routing, selectors
from conversations.channels import composer_channel, composer_channels_for, composer_send
from conversations.forms import (
    CHANNEL_CHAT,
    CHANNEL_NOTE,
    AttachmentForm,
    CannedResponseForm,
    ComposeForm,
    NoteForm,
    TransferForm,
    WrapUpForm,
)
from conversations.models import CannedResponse, Conversation, Direction, Interaction, Medium, Message, TimelineEntry
from conversations.services import canned_response_delete, canned_response_save, conversation_close, note_add

OFFERS = "conversations/partials/offers.html#offers"
ACL = "conversations/partials/acl.html#acl"
ACL_ROW = "conversations/partials/acl.html#acl-row"
WORKSPACE = "conversations/partials/workspace.html#workspace"
WORKSPACE_EMPTY = "conversations/partials/workspace.html#workspace-empty"
WORKSPACE_HEADER = "conversations/partials/workspace.html#workspace-header"
COMPOSER = "conversations/partials/workspace.html#composer"
COMPOSER_ERROR = "conversations/partials/workspace.html#composer-error"
TYPING = "conversations/partials/workspace.html#typing"
ENTRIES = "conversations/partials/timeline.html#entries"
TIMELINE_MORE = "conversations/partials/timeline.html#timeline-more"
CONTACT_PANEL = "conversations/partials/contact.html#contact-panel"
CANNED = "conversations/partials/canned.html#suggestions"
TRANSFER_FORM = "conversations/partials/transfer.html#transfer-form"

TIMELINE_PAGE = 100


# --- context builders, shared with agents.consumers ---------------------------------------------------


def offers_context(*, user, error: str = "") -> dict:
    return {"offers": selectors.offers_pending_for_agent(agent=user), "offers_error": error}


def acl_context(*, user, selected: str = "", acl: list[Conversation] | None = None) -> dict:
    if acl is None:
        acl = selectors.acl_for_agent(agent=user)
    return {"acl": acl, "selected": str(selected or "")}


def acl_row_context(*, row: Conversation, selected: str = "") -> dict:
    """One row of the list, pushed alone: ``row`` from ``selectors.acl_row_for_agent``."""
    return {"conversation": row, "selected": str(selected or ""), "row_alone": True}


def workspace_state(*, conversation: Conversation, user, live: list[Interaction] | None = None) -> dict:
    """What the header and the composer show: live media, the chat, wrap-up, the channels to write on.

    ``live`` may come from the caller (the Active Conversations List has read it already).
    """
    if not conversation.is_open:
        live = []
    elif live is None:
        live = selectors.conversation_live_interactions(conversation=conversation)
    chat = next((i for i in reversed(live) if i.medium == Medium.CHAT), None)
    chat_active = chat is not None and chat.state == Interaction.State.ACTIVE and chat.agent_id == user.pk
    wrapup = conversation.is_open and not live
    base = dict(ComposeForm.base_fields["channel"].choices)
    channels = [(CHANNEL_CHAT, base[CHANNEL_CHAT])] if chat_active else []
    unavailable = []
    for channel, reason in composer_channels_for(conversation=conversation, user=user):
        if reason:
            unavailable.append((channel.medium, channel.label, reason))
        else:
            channels.append((channel.medium, channel.label))
    channels.append((CHANNEL_NOTE, base[CHANNEL_NOTE]))
    # Write on the medium the customer last used, by default: an SMS conversation answers by SMS.
    usable = [value for value, _label in channels]
    default = next((i.medium for i in reversed(live) if i.medium in usable), usable[0])
    extra = [composer_channel(value) for value in usable if composer_channel(value) is not None]
    can_transfer = any(
        i.agent_id == user.pk and i.state in (Interaction.State.ACTIVE, Interaction.State.ON_HOLD) for i in live
    )
    return {
        "conversation": conversation,
        "contact": conversation.contact,
        "me": user,
        "live": live,
        "live_chat": chat,
        "live_chat_active": chat_active,
        "can_transfer": can_transfer,
        "wrapup": wrapup,
        "channels": channels,
        "channels_unavailable": unavailable,
        "channel_default": default,
        "channel_fields": [(channel.medium, channel.fields_template) for channel in extra if channel.fields_template],
        "channel_placeholders": {channel.medium: channel.placeholder for channel in extra},
        "max_chars": max([settings.CHAT_MAX_MESSAGE_CHARS, *(channel.max_chars for channel in extra)]),
        # The client keeps a region whose key is unchanged, so a draft survives pushes.
        "header_key": "|".join([conversation.status, *(f"{i.medium}:{i.state}" for i in live)]),
        "composer_key": "|".join(
            [
                conversation.status,
                "wrapup" if wrapup else "live",
                *usable,
                *(f"{medium}!{reason}" for medium, _label, reason in unavailable),
            ]
        ),
    }


def wrapup_form_for(conversation: Conversation, data=None) -> WrapUpForm:
    return WrapUpForm(
        data,
        dispositions=selectors.dispositions_for(conversation=conversation),
        auto_id=f"wrapup-{conversation.uuid}-%s",
    )


def workspace_context(*, conversation: Conversation, user) -> dict:
    entries, has_more = selectors.conversation_timeline_tail(conversation=conversation, limit=TIMELINE_PAGE)
    context = workspace_state(
        conversation=conversation, user=user, live=getattr(conversation, "live_interactions", None)
    )
    context.update(entries=entries, has_more=has_more, first_entry=entries[0] if entries else None)
    if context["wrapup"]:
        context["wrapup_form"] = wrapup_form_for(conversation)
    return context


def entries_context(*, conversation: Conversation, user, entries: list[TimelineEntry], update_only=False) -> dict:
    return {
        "conversation": conversation,
        "contact": conversation.contact,
        "me": user,
        "entries": entries,
        "update_only": update_only,
    }


def contact_context(*, conversation: Conversation | None) -> dict:
    if conversation is None:
        return {"contact": None}
    contact = conversation.contact
    return {
        "contact": contact,
        "conversation": conversation,
        "points": sorted(contact_points_loaded(contact=contact), key=lambda point: (point.kind, point.value)),
        "history": selectors.contact_previous_conversations(contact=contact, exclude=conversation),
    }


def desktop_context(
    *, agent: AgentProfile, conversation: Conversation | None = None, acl: list[Conversation] | None = None
) -> dict:
    """Everything the full desktop page shows, optionally with one conversation open."""
    user = agent.user
    context = state_partial_context(agent=agent)
    context.update(offers_context(user=user))
    context.update(acl_context(user=user, selected=conversation.uuid if conversation else "", acl=acl))
    # The workspace and the contact panel name the same conversation and contact.
    context.update(contact_context(conversation=conversation))
    if conversation is not None:
        context.update(workspace_context(conversation=conversation, user=user))
    return context


def fill_placeholders(body: str, contact) -> str:
    """Fill ``{first_name}`` and ``{last_name}``; plain replacement, never ``str.format`` on stored text."""
    if contact is None:
        return body
    return body.replace("{first_name}", contact.first_name).replace("{last_name}", contact.last_name)


# --- helpers --------------------------------------------------------------------------------------------


def _agent(request: HttpRequest) -> AgentProfile:
    """The requesting agent's profile (looked up once per request); others are refused."""
    if not hasattr(request, "_parley_agent"):
        request._parley_agent = agent_for_request(request=request)
    if request._parley_agent is None:
        raise PermissionDenied(_("This page is for agents."))
    return request._parley_agent


def _agent_user(request: HttpRequest):
    return _agent(request).user


def _conversation_or_404(request: HttpRequest, conversation_uuid) -> tuple[object, Conversation]:
    user = _agent_user(request)
    conversation = selectors.conversation_for_agent(agent=user, conversation_uuid=conversation_uuid)
    if conversation is None:
        raise Http404(_("No such conversation in your list."))
    return user, conversation


def _partials(*parts: tuple[str, dict], request: HttpRequest, status: int = 200) -> HttpResponse:
    html = "".join(render_to_string(name, context, request=request) for name, context in parts)
    return HttpResponse(html, status=status)


def _composer_error(request: HttpRequest, conversation: Conversation, message: str) -> HttpResponse:
    context = {"conversation": conversation, "composer_error": message}
    return _partials((COMPOSER_ERROR, context), request=request, status=422)


def _page_or_partials(request: HttpRequest, conversation: Conversation, *parts: tuple[str, dict]) -> HttpResponse:
    """htmx gets the partials; a plain form post goes back to the conversation's page."""
    if not request.htmx:
        return redirect("conversations:page", conversation_uuid=conversation.uuid)
    return _partials(*parts, request=request)


def _entry_appended(request: HttpRequest, user, conversation: Conversation, entry_id: int) -> HttpResponse:
    entry = selectors.timeline_entry_for(conversation=conversation, entry_id=entry_id)
    return _page_or_partials(
        request,
        conversation,
        (ENTRIES, entries_context(conversation=conversation, user=user, entries=[entry] if entry else [])),
        (COMPOSER_ERROR, {"conversation": conversation, "composer_error": ""}),
    )


def _left_workspace(request: HttpRequest, user, notice: str) -> HttpResponse:
    """The conversation left the agent's list (closed, transferred): back to the empty desktop."""
    if not request.htmx:
        return redirect("desktop")
    response = _partials(
        (ACL, acl_context(user=user)),
        (WORKSPACE_EMPTY, {"notice": notice}),
        (CONTACT_PANEL, contact_context(conversation=None)),
        request=request,
    )
    return reswap(push_url(response, reverse("desktop")), "none")


# --- pages and reads -------------------------------------------------------------------------------------


@login_required
@require_GET
def conversation_page(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The desktop with one conversation open; htmx gets the workspace and the contact panel."""
    if request.htmx and not request.htmx.history_restore_request:
        user, conversation = _conversation_or_404(request, conversation_uuid)
        return _partials(
            (WORKSPACE, workspace_context(conversation=conversation, user=user)),
            (CONTACT_PANEL, contact_context(conversation=conversation)),
            request=request,
        )
    agent = _agent(request)
    # The full page lists the agent's conversations anyway; an open one of theirs comes from that list,
    # with its live media, instead of being read twice.
    acl = selectors.acl_for_agent(agent=agent.user)
    conversation = next((row for row in acl if row.uuid == conversation_uuid), None)
    if conversation is None:
        _user, conversation = _conversation_or_404(request, conversation_uuid)
    return render(request, "agents/desktop.html", desktop_context(agent=agent, conversation=conversation, acl=acl))


@login_required
@require_GET
def timeline_earlier(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The page of entries before ``?before=<entry id>``."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    try:
        before_id = int(request.GET.get("before", ""))
    except ValueError:
        return HttpResponse(status=400)
    entries, has_more = selectors.conversation_timeline_before(
        conversation=conversation, before_id=before_id, limit=TIMELINE_PAGE
    )
    more = {"conversation": conversation, "has_more": has_more, "first_entry": entries[0] if entries else None}
    return _partials(
        (TIMELINE_MORE, more),
        (ENTRIES, entries_context(conversation=conversation, user=user, entries=entries)),
        request=request,
    )


@login_required
@require_GET
def canned_search(request: HttpRequest) -> HttpResponse:
    """Canned responses matching ``?q=``, the agent's own and the shared ones, names filled in."""
    user = _agent_user(request)
    contact = None
    target = request.GET.get("conversation", "")
    if target:
        try:
            conversation = selectors.conversation_for_agent(agent=user, conversation_uuid=target)
        except ValidationError:
            conversation = None
        contact = conversation.contact if conversation else None
    query = request.GET.get("q", "")[:100]
    responses = selectors.canned_responses_for(user=user, query=query)
    for response in responses:
        response.filled = fill_placeholders(response.body, contact)
    return _partials((CANNED, {"responses": responses, "target": target}), request=request)


@login_required
@require_GET
def attachment_download(request: HttpRequest, attachment_id: int) -> FileResponse:
    """A file of a conversation, for its agents and supervisors only; never rendered inline."""
    attachment = selectors.attachment_for_user(user=request.user, attachment_id=attachment_id)
    if attachment is None:
        raise Http404(_("No such file."))
    try:
        handle = attachment.file.open("rb")
    except (FileNotFoundError, ValueError) as exc:
        raise Http404(_("No such file.")) from exc
    response = FileResponse(
        handle, as_attachment=True, filename=attachment.filename, content_type=attachment.content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "private, no-store"
    return response


# --- writes in the workspace ---------------------------------------------------------------------------------


@login_required
@require_POST
def message_send(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The composer: a chat message to the customer, or an internal note."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    medium = request.POST.get("channel", "")
    channel = composer_channel(medium)
    if channel is not None:
        reason = (
            channel.unavailable_reason(conversation, user) if conversation.is_open else _("The conversation is closed.")
        )
        if reason:
            return _composer_error(request, conversation, reason)
        try:
            message = composer_send(
                medium=medium, conversation=conversation, agent_user=user, data=request.POST, files=request.FILES
            )
        except ValidationError as exc:
            return _composer_error(request, conversation, " ".join(exc.messages))
        return _entry_appended(request, user, conversation, message.entry.pk)
    form = ComposeForm(request.POST)
    if not form.is_valid():
        errors = form.errors.get("text") or form.errors.get("channel") or [_("Write a message first.")]
        return _composer_error(request, conversation, " ".join(errors))
    try:
        if form.cleaned_data["channel"] == CHANNEL_NOTE:
            note = note_add(conversation=conversation, author=user, body=form.cleaned_data["text"])
            entry_id = note.entry.pk
        else:
            message = chat_agent_message(conversation=conversation, agent_user=user, text=form.cleaned_data["text"])
            entry_id = message.entry.pk
    except ValidationError as exc:
        return _composer_error(request, conversation, " ".join(exc.messages))
    return _entry_appended(request, user, conversation, entry_id)


@login_required
@require_POST
def note_create(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """An internal note: on the timeline for agents and supervisors, never shown to the customer."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _composer_error(request, conversation, _("A note cannot be empty."))
    try:
        note = note_add(conversation=conversation, author=user, body=form.cleaned_data["body"])
    except ValidationError as exc:
        return _composer_error(request, conversation, " ".join(exc.messages))
    return _entry_appended(request, user, conversation, note.entry.pk)


@login_required
@require_POST
def attachment_upload(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The agent sends a file in the conversation's live chat."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    form = AttachmentForm(request.POST, request.FILES)
    if not form.is_valid():
        return _composer_error(request, conversation, _("Choose a file to send."))
    chat = live_chat_for(conversation=conversation)
    if chat is None or chat.state != Interaction.State.ACTIVE or chat.agent_id != user.pk:
        return _composer_error(request, conversation, _("There is no live chat in this conversation."))
    try:
        message = chat_attachment_send(
            interaction=chat,
            upload=form.cleaned_data["file"],
            direction=Direction.OUTBOUND,
            author_kind=Message.Author.AGENT,
            agent_user=user,
        )
    except ValidationError as exc:
        return _composer_error(request, conversation, " ".join(exc.messages))
    return _entry_appended(request, user, conversation, message.entry.pk)


@login_required
@require_POST
def message_retry(request: HttpRequest, conversation_uuid, message_id: int) -> HttpResponse:
    """Send a failed SMS or email again."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    message = conversation.messages.filter(pk=message_id, direction=Direction.OUTBOUND).first()
    if message is None:
        raise Http404(_("No such message in this conversation."))
    try:
        outbox.outbox_retry(message=message, actor=user)
    except ValidationError as exc:
        return _composer_error(request, conversation, " ".join(exc.messages))
    return _entry_appended(request, user, conversation, message.entry.pk)


def _controls(user, conversation: Conversation, *, wrapup_form=None) -> list:
    state = workspace_state(conversation=conversation, user=user)
    if state["wrapup"]:
        state["wrapup_form"] = wrapup_form or wrapup_form_for(conversation)
    return [(WORKSPACE_HEADER, state), (COMPOSER, state)]


@login_required
@require_POST
def chat_end_view(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """The agent ends the chat; the conversation stays open for wrap-up."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    chat = live_chat_for(conversation=conversation)
    if chat is None:
        return _composer_error(request, conversation, _("There is no live chat in this conversation."))
    chat_end(interaction=chat, reason="agent_ended", actor=user)
    conversation.refresh_from_db()
    return _page_or_partials(
        request, conversation, *_controls(user, conversation), (ACL, acl_context(user=user, selected=conversation.uuid))
    )


@login_required
@require_POST
def wrapup_submit(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """Disposition and notes recorded: the conversation closes into the contact's history."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    if not conversation.is_open:
        return _composer_error(request, conversation, _("The conversation is already closed."))
    if conversation.interactions.live().exists():
        return _composer_error(request, conversation, _("End the live interactions before wrapping up."))
    form = wrapup_form_for(conversation, request.POST)
    if not form.is_valid():
        parts = _controls(user, conversation, wrapup_form=form)
        return _partials(*parts, request=request, status=422)
    try:
        conversation_close(
            conversation=conversation,
            disposition=form.cleaned_data["disposition"],
            notes=form.cleaned_data["notes"],
            closed_by=user,
        )
    except ValidationError as exc:
        return _composer_error(request, conversation, " ".join(exc.messages))
    notice = _("The conversation with %(name)s is closed.") % {"name": conversation.contact.display_name}
    return _left_workspace(request, user, notice)


@login_required
@require_http_methods(["GET", "POST"])
def transfer(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """GET: the transfer form with current agents and services. POST: hand the conversation over."""
    user, conversation = _conversation_or_404(request, conversation_uuid)
    agents, services = selectors.transfer_targets_for(conversation=conversation, agent=user)
    data = request.POST if request.method == "POST" else None
    form = TransferForm(data, agents=agents, services=services, auto_id=f"transfer-{conversation.uuid}-%s")
    context = {"conversation": conversation, "form": form}
    if request.method == "GET":
        return _partials((TRANSFER_FORM, context), request=request)
    if not form.is_valid():
        return _partials((TRANSFER_FORM, context), request=request, status=422)
    to_agent, to_service = form.destination()
    try:
        routing.conversation_transfer(
            conversation=conversation,
            from_agent=user,
            to_agent=to_agent,
            to_service=to_service,
            note=form.cleaned_data["note"],
        )
    except ValidationError as exc:
        context["transfer_error"] = " ".join(exc.messages)
        return _partials((TRANSFER_FORM, context), request=request, status=422)
    where = str(form.agents[str(to_agent.pk)]) if to_agent else to_service.name
    notice = _("The conversation with %(name)s was transferred to %(target)s.") % {
        "name": conversation.contact.display_name,
        "target": where,
    }
    return _left_workspace(request, user, notice)


# --- offers --------------------------------------------------------------------------------------------------


def _offer_or_404(request: HttpRequest, offer_id: int):
    user = _agent_user(request)
    offer = selectors.offer_for_agent(agent=user, offer_id=offer_id)
    if offer is None:
        raise Http404(_("No such offer."))
    return user, offer


@login_required
@require_POST
def offer_accept(request: HttpRequest, offer_id: int) -> HttpResponse:
    """The agent takes the offer; the conversation opens in the workspace."""
    user, _offer = _offer_or_404(request, offer_id)
    try:
        interaction = routing.offer_accept(offer_id=offer_id, agent_user=user)
    except ValidationError as exc:
        if not request.htmx:
            return redirect("desktop")
        return _partials((OFFERS, offers_context(user=user, error=" ".join(exc.messages))), request=request, status=422)
    conversation = selectors.conversation_for_agent(agent=user, conversation_uuid=interaction.conversation.uuid)
    if not request.htmx:
        return redirect("conversations:page", conversation_uuid=conversation.uuid)
    response = _partials(
        (OFFERS, offers_context(user=user)),
        (ACL, acl_context(user=user, selected=conversation.uuid)),
        (WORKSPACE, workspace_context(conversation=conversation, user=user)),
        (CONTACT_PANEL, contact_context(conversation=conversation)),
        request=request,
    )
    return push_url(response, reverse("conversations:page", kwargs={"conversation_uuid": conversation.uuid}))


@login_required
@require_POST
def offer_reject(request: HttpRequest, offer_id: int) -> HttpResponse:
    """The agent declines; the interaction goes back to its queue."""
    user, _offer = _offer_or_404(request, offer_id)
    error = ""
    status = 200
    try:
        routing.offer_reject(offer_id=offer_id, agent_user=user)
    except ValidationError as exc:
        error, status = " ".join(exc.messages), 422
    if not request.htmx:
        return redirect("desktop")
    return _partials((OFFERS, offers_context(user=user, error=error)), request=request, status=status)


# --- activity history (read-only) ----------------------------------------------------------------------

HISTORY_PAGE = 200


@login_required
@require_GET
def history_page(request: HttpRequest, conversation_uuid) -> HttpResponse:
    """A conversation's full record, read-only, for any agent or supervisor.

    Every agent may read a contact's history: following up on an earlier
    conversation is any agent's job (DOMAIN.md, "any agent can follow up later").
    """
    user = request.user
    if agent_for_request(request=request) is None and not user.is_staff:
        raise PermissionDenied(_("This page is for agents."))
    conversation = selectors.conversation_record(conversation_uuid=conversation_uuid)
    if conversation is None:
        raise Http404
    try:
        after = int(request.GET.get("after", "0"))
    except ValueError:
        return HttpResponse(status=400)
    entries = selectors.conversation_timeline_after(conversation=conversation, after_id=after, limit=HISTORY_PAGE + 1)
    has_more = len(entries) > HISTORY_PAGE
    entries = entries[:HISTORY_PAGE]
    context = entries_context(conversation=conversation, user=user, entries=entries)
    context.update(
        media=selectors.conversation_media(conversation=conversation),
        next_after=entries[-1].pk if has_more else None,
        history=selectors.contact_previous_conversations(contact=conversation.contact, exclude=conversation),
    )
    return render(request, "conversations/history.html", context)


# --- the agent's own canned responses ------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def canned_mine(request: HttpRequest) -> HttpResponse:
    """List the agent's own canned responses and add one; shared ones are listed read-only."""
    user = _agent_user(request)
    form = CannedResponseForm(request.POST or None, owner=user)
    if request.method == "POST" and form.is_valid():
        canned_response_save(owner=user, form=form)
        return redirect("conversations:canned-mine")
    context = {
        "form": form,
        "mine": CannedResponse.objects.filter(owner=user).order_by("shortcut"),
        "shared": CannedResponse.objects.filter(owner__isnull=True).order_by("shortcut"),
    }
    return render(request, "conversations/canned_mine.html", context, status=422 if form.errors else 200)


@login_required
@require_POST
def canned_mine_delete(request: HttpRequest, response_id: int) -> HttpResponse:
    user = _agent_user(request)
    if not canned_response_delete(owner=user, response_id=response_id):
        raise Http404
    return redirect("conversations:canned-mine")
