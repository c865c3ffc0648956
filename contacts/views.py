"""The contacts screens: search, the contact page, create and edit, duplicates and merges, privacy, follow-up.

Thin views: they parse the request, call one service or selector, and render.
Every rule (who may merge, export or erase; what an address may be) lives in
contacts.services and contacts.selectors.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.selectors import agent_for_request
from contacts import selectors, services
from contacts.forms import ContactForm, NewContactForm, PointForm
from contacts.models import Contact, ContactMerge, ContactPoint
from contacts.normalize import normalize_point
from conversations.models import Medium

ADDRESS_PREFIX = re.compile(r"points-\d{1,2}-")
SEARCH_PAGE = 25
ACTIVITIES_PAGE = 20
FOLLOW_UP_MEDIA = (Medium.SMS, Medium.EMAIL, Medium.CHAT, Medium.VOICE)


def _require_worker(request: HttpRequest) -> None:
    """Agents (with a profile) and supervisors work with contacts; other users are refused."""
    if not request.user.is_staff and agent_for_request(request=request) is None:
        raise PermissionDenied(_("This page is for agents and supervisors."))


def _require_merger(request: HttpRequest) -> None:
    _require_worker(request)
    if not request.user.has_perm("contacts.merge_contact"):
        raise PermissionDenied(_("You are not allowed to merge contacts."))


def _messages_of(error: ValidationError) -> list[str]:
    return [str(message) for message in error.messages]


def _live_contact_or_404(contact_id: int) -> Contact:
    return get_object_or_404(selectors.live_contacts(), pk=contact_id)


def _parse_after(raw: str) -> tuple[datetime, int] | None:
    """A keyset position: ``<ISO time>,<id>`` of the last row shown; None when it cannot be read."""
    stamp, _sep, contact_id = (raw or "").rpartition(",")
    try:
        return datetime.fromisoformat(stamp), int(contact_id)
    except ValueError:
        return None


# --- search -------------------------------------------------------------------------------------------


@login_required
@require_GET
def contact_search(request: HttpRequest) -> HttpResponse:
    _require_worker(request)
    query = request.GET.get("q", "").strip()
    after = _parse_after(request.GET.get("after", "")) if request.GET.get("after") else None
    results = selectors.contacts_search(query=query, after=after, limit=SEARCH_PAGE + 1) if query else []
    more_url = ""
    if len(results) > SEARCH_PAGE:
        results = results[:SEARCH_PAGE]
        last = results[-1]
        more_url = "?" + urlencode({"q": query, "after": f"{last.last_activity_at.isoformat()},{last.pk}"})
    context = {"query": query, "results": results, "more_url": more_url}
    template = "contacts/search.html#results" if request.htmx and not request.htmx.boosted else "contacts/search.html"
    return render(request, template, context)


# --- the contact page ---------------------------------------------------------------------------------


@login_required
@require_GET
def contact_page(request: HttpRequest, contact_id: int) -> HttpResponse:
    _require_worker(request)
    detail = selectors.contact_detail(contact_id=contact_id)
    if detail is None:
        raise Http404
    if detail.contact.merged_into_id is not None:
        messages.info(
            request, _("This contact was merged into contact #%(id)s.") % {"id": detail.contact.merged_into_id}
        )
        return redirect("contacts:page", contact_id=detail.contact.merged_into_id)
    text = request.GET.get("text", "").strip()
    earlier_url = ""
    if text:
        activities = selectors.contact_timeline_search(contact=detail.contact, text=text)
    else:
        before = _parse_after(request.GET.get("before", "")) if request.GET.get("before") else None
        activities = selectors.contact_activities(contact=detail.contact, before=before, limit=ACTIVITIES_PAGE + 1)
        if len(activities) > ACTIVITIES_PAGE:
            activities = activities[:ACTIVITIES_PAGE]
            last = activities[-1]
            earlier_url = "?" + urlencode({"before": f"{last.opened_at.isoformat()},{last.pk}"})
    context = {
        "detail": detail,
        "contact": detail.contact,
        "activities": activities,
        "text": text,
        "earlier_url": earlier_url,
        "follow_up_media": [(medium.value, medium.label) for medium in FOLLOW_UP_MEDIA],
        "can_merge": request.user.has_perm("contacts.merge_contact"),
        "is_supervisor": request.user.is_staff,
        "point_form": PointForm(contact=detail.contact),
    }
    return render(request, "contacts/detail.html", context)


# --- create and edit ----------------------------------------------------------------------------------


def _form_page(request: HttpRequest, form: ContactForm, *, contact: Contact | None, taken=(), status=200):
    context = {"form": form, "contact": contact, "taken": taken}
    return render(request, "contacts/form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def contact_new(request: HttpRequest) -> HttpResponse:
    _require_worker(request)
    form = NewContactForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            contact = services.contact_create(actor=request.user, **form.contact_fields(), points=form.points())
        except ValidationError as exc:
            taken = form.add_service_errors(exc)
            return _form_page(request, form, contact=None, taken=taken, status=422)
        return redirect("contacts:page", contact_id=contact.pk)
    return _form_page(request, form, contact=None, status=422 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def contact_edit(request: HttpRequest, contact_id: int) -> HttpResponse:
    _require_worker(request)
    contact = _live_contact_or_404(contact_id)
    initial = {name: getattr(contact, name) for name in ("first_name", "last_name", "company", "notes")}
    initial["tags"] = ", ".join(contact.tags)
    form = ContactForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.contact_update(actor=request.user, contact=contact, **form.contact_fields())
        except ValidationError as exc:
            form.add_service_errors(exc)
            return _form_page(request, form, contact=contact, status=422)
        return redirect("contacts:page", contact_id=contact.pk)
    return _form_page(request, form, contact=contact, status=422 if form.errors else 200)


@login_required
@require_GET
def address_check(request: HttpRequest) -> HttpResponse:
    """While an agent types an address: is it valid, and does it belong to another contact already?"""
    _require_worker(request)
    prefix = request.GET.get("prefix", "")
    if prefix and not ADDRESS_PREFIX.fullmatch(prefix):
        prefix = ""
    kind = request.GET.get(f"{prefix}kind", "")
    value = request.GET.get(f"{prefix}value", "").strip()
    exclude = None
    if request.GET.get("exclude", "").isdigit():
        exclude = Contact.objects.filter(pk=int(request.GET["exclude"])).first()
    context = {"slot": prefix.rstrip("-") or "point", "owner": None, "problem": ""}
    if value and kind in ContactPoint.Kind.values:
        try:
            normalize_point(kind, value)
        except ValidationError as exc:
            context["problem"] = " ".join(exc.messages)
        else:
            context["owner"] = selectors.contact_point_owner(kind=kind, value=value, exclude=exclude)
    return render(request, "contacts/form.html#address-check", context)


@login_required
@require_POST
def point_add(request: HttpRequest, contact_id: int) -> HttpResponse:
    _require_worker(request)
    contact = _live_contact_or_404(contact_id)
    form = PointForm(request.POST)
    if form.is_valid():
        try:
            services.contact_point_create(actor=request.user, contact=contact, **form.cleaned_data)
        except ValidationError as exc:
            taken = form_errors_taken(exc)
            for message in _messages_of(exc):
                messages.error(request, message)
            for owner in taken:
                messages.warning(request, _("See contact #%(id)s to merge the two contacts.") % {"id": owner})
    else:
        messages.error(request, _("Give the kind and the address."))
    return redirect("contacts:page", contact_id=contact.pk)


def form_errors_taken(error: ValidationError) -> list[int]:
    items = [item for errors in getattr(error, "error_dict", {}).values() for item in errors]
    return [item.params["id"] for item in items if item.code == "point_taken" and item.params]


@login_required
@require_POST
def point_remove(request: HttpRequest, contact_id: int, point_id: int) -> HttpResponse:
    _require_worker(request)
    point = get_object_or_404(ContactPoint, pk=point_id, contact_id=contact_id)
    try:
        services.contact_point_remove(actor=request.user, point=point)
    except ValidationError as exc:
        for message in _messages_of(exc):
            messages.error(request, message)
    return redirect("contacts:page", contact_id=contact_id)


# --- duplicates and merging ---------------------------------------------------------------------------


@login_required
@require_GET
def duplicates(request: HttpRequest) -> HttpResponse:
    _require_merger(request)
    return render(request, "contacts/duplicates.html", {"pairs": selectors.contact_duplicates()})


@login_required
@require_http_methods(["GET", "POST"])
def merge(request: HttpRequest, target_id: int, source_id: int) -> HttpResponse:
    """GET previews merging ``source`` into ``target``; POST confirms it."""
    _require_merger(request)
    target = get_object_or_404(Contact, pk=target_id)
    source = get_object_or_404(Contact, pk=source_id)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.contact_merge(actor=request.user, target=target, source=source)
        except ValidationError as exc:
            errors = _messages_of(exc)
        else:
            messages.success(request, _("Contact #%(source)s was merged into this contact.") % {"source": source.pk})
            return redirect("contacts:page", contact_id=target.pk)
    preview = services.contact_merge_preview(target=target, source=source)
    return render(
        request,
        "contacts/merge_preview.html",
        {"preview": preview, "errors": errors},
        status=422 if errors else 200,
    )


@login_required
@require_POST
def merge_undo(request: HttpRequest, merge_id: int) -> HttpResponse:
    _require_merger(request)
    contact_merge = get_object_or_404(ContactMerge, pk=merge_id)
    try:
        services.contact_merge_undo(actor=request.user, merge=contact_merge)
    except ValidationError as exc:
        for message in _messages_of(exc):
            messages.error(request, message)
    else:
        messages.success(request, _("The merge was undone."))
    return redirect("contacts:page", contact_id=contact_merge.target_id)


# --- privacy ------------------------------------------------------------------------------------------


@login_required
@require_GET
def contact_export(request: HttpRequest, contact_id: int) -> HttpResponse:
    _require_worker(request)
    contact = get_object_or_404(Contact, pk=contact_id)
    data = services.contact_export(actor=request.user, contact=contact)
    response = HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, indent=2), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.json"'
    return response


@login_required
@require_POST
def contact_erase(request: HttpRequest, contact_id: int) -> HttpResponse:
    _require_worker(request)
    if not request.user.is_staff:
        raise PermissionDenied(_("Only supervisors can export or erase a contact's data."))
    contact = get_object_or_404(Contact, pk=contact_id)
    if request.POST.get("confirm") != "erase":
        messages.error(request, _("Tick the confirmation to erase the contact's personal data."))
        return redirect("contacts:page", contact_id=contact.pk)
    try:
        services.contact_erase(actor=request.user, contact=contact)
    except ValidationError as exc:
        for message in _messages_of(exc):
            messages.error(request, message)
    else:
        messages.success(request, _("The contact's personal data was erased."))
    return redirect("contacts:page", contact_id=contact.pk)


# --- following up -------------------------------------------------------------------------------------


@login_required
@require_POST
def follow_up(request: HttpRequest, contact_id: int) -> HttpResponse:
    _require_worker(request)
    contact = _live_contact_or_404(contact_id)
    try:
        conversation = services.contact_follow_up(
            actor=request.user, contact=contact, medium=request.POST.get("medium", "")
        )
    except ValidationError as exc:
        for message in _messages_of(exc):
            messages.error(request, message)
        return redirect("contacts:page", contact_id=contact.pk)
    return redirect("conversations:page", conversation_uuid=conversation.uuid)
