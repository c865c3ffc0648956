"""Every write to contacts goes through here: recognition, editing, merging, privacy, following up.

Functions that act for a person take the acting user (``actor``) and raise
``PermissionDenied`` when that user may not act: changing contacts is for
agents and supervisors, merging needs ``contacts.merge_contact``, export and
erasure are for supervisors (staff).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import AgentProfile, AgentState
from channels_app.voice.models import CallSession
from channels_app.webchat.models import ChatSession
from contacts.models import Contact, ContactMerge, ContactPoint
from contacts.normalize import normalize_point
from conversations import events
from conversations.models import (
    Attachment,
    Conversation,
    Direction,
    Interaction,
    Medium,
    Message,
    Note,
    Offer,
    Service,
    TimelineEntry,
)
from core.models import AuditEntry
from core.services import audit_record

logger = logging.getLogger(__name__)


def contact_identify(
    *,
    kind: str,
    value: str,
    first_name: str = "",
    last_name: str = "",
    company: str = "",
    label: str = "",
) -> tuple[Contact, bool]:
    """Find the contact owning the address ``value`` of ``kind``, or create one.

    Returns ``(contact, created)``. The value is normalised first, so any
    spelling of one phone number or email finds the same contact. Two
    first contacts racing on the same address end with one contact: the unique
    constraint decides, and the loser reads the winner's row.
    """
    normalized = normalize_point(kind, value)
    existing = ContactPoint.objects.select_related("contact").filter(kind=kind, value=normalized).first()
    if existing is not None:
        return existing.contact, False
    try:
        with transaction.atomic():
            contact = Contact.objects.create(first_name=first_name, last_name=last_name, company=company)
            ContactPoint.objects.create(contact=contact, kind=kind, value=normalized, label=label)
    except IntegrityError:
        point = ContactPoint.objects.select_related("contact").get(kind=kind, value=normalized)
        return point.contact, False
    return contact, True


def contact_point_add(*, contact: Contact, kind: str, value: str, label: str = "") -> ContactPoint:
    """Add an address to ``contact``; raises ``IntegrityError`` if another contact owns it."""
    normalized = normalize_point(kind, value)
    with transaction.atomic():
        point, _created = ContactPoint.objects.get_or_create(
            kind=kind, value=normalized, defaults={"contact": contact, "label": label}
        )
    if point.contact_id != contact.pk:
        raise IntegrityError(f"{kind} {normalized} belongs to contact {point.contact_id}")
    return point


def contact_touch(*, contact: Contact | None = None, contact_id: int | None = None) -> None:
    """Record activity now, so the contact sorts first in search results."""
    Contact.objects.filter(pk=contact.pk if contact is not None else contact_id).update(last_activity_at=timezone.now())


# --- who may do what --------------------------------------------------------------------------


def _require_signed_in(actor) -> None:
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        raise PermissionDenied(_("Sign in first."))


def _require_contact_worker(actor) -> None:
    """Agents and supervisors work with contacts; other users do not."""
    _require_signed_in(actor)
    if not actor.is_staff and not AgentProfile.objects.filter(user_id=actor.pk).exists():
        raise PermissionDenied(_("Only agents and supervisors can change contacts."))


def _require_merge_permission(actor) -> None:
    _require_signed_in(actor)
    if not actor.has_perm("contacts.merge_contact"):
        raise PermissionDenied(_("You are not allowed to merge contacts."))


def _require_supervisor(actor) -> None:
    _require_signed_in(actor)
    if not actor.is_staff:
        raise PermissionDenied(_("Only supervisors can export or erase a contact's data."))


def _require_active(contact: Contact) -> None:
    if contact.merged_into_id is not None:
        raise ValidationError(
            _("This contact was merged into contact #%(id)s."), code="merged", params={"id": contact.merged_into_id}
        )
    if contact.erased_at is not None:
        raise ValidationError(_("This contact's personal data was erased."), code="erased")


# --- creating and editing -----------------------------------------------------------------------

FIELD_MAX_LENGTHS = {"first_name": 150, "last_name": 150, "company": 200}
LABEL_MAX_LENGTH = 50
MAX_TAGS = 20
TAG_MAX_LENGTH = 40


def clean_tags(tags) -> list[str]:
    """Trim tags, drop empty ones and repeats (whatever their case); keep the first spelling and the order."""
    if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
        raise ValidationError(_("Tags must be a list of words."), code="invalid")
    cleaned: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        tag = " ".join(tag.split())
        if not tag or tag.casefold() in seen:
            continue
        if len(tag) > TAG_MAX_LENGTH:
            raise ValidationError(
                _("A tag has at most %(max)s characters."), code="max_length", params={"max": TAG_MAX_LENGTH}
            )
        seen.add(tag.casefold())
        cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise ValidationError(_("A contact has at most %(max)s tags."), code="max_tags", params={"max": MAX_TAGS})
    return cleaned


def _clean_contact_fields(values: dict, errors: dict) -> dict:
    """Trim and check the contact's own fields; problems go into ``errors`` under the field's name."""
    cleaned = {}
    for name, value in values.items():
        if name == "tags":
            try:
                cleaned[name] = clean_tags(value)
            except ValidationError as exc:
                errors[name] = exc.error_list
            continue
        value = (value or "").strip()
        limit = FIELD_MAX_LENGTHS.get(name)
        if limit is not None and len(value) > limit:
            errors[name] = [
                ValidationError(_("At most %(max)s characters, please."), code="max_length", params={"max": limit})
            ]
        cleaned[name] = value
    return cleaned


def _point_taken(owner: Contact, kind: str, value: str) -> ValidationError:
    return ValidationError(
        _("%(value)s already belongs to %(contact)s (contact #%(id)s)."),
        code="point_taken",
        params={"value": value, "contact": owner.display_name, "id": owner.pk, "kind": kind},
    )


def _clean_points(points, errors: dict) -> list[tuple[str, str, str]]:
    """Normalise each ``(kind, value[, label])``; errors are keyed like a formset: ``points-0-value``."""
    cleaned: list[tuple[str, str, str]] = []
    where: dict[tuple[str, str], int] = {}
    for index, point in enumerate(points):
        kind, value, label = (*point, "")[:3]
        if kind not in ContactPoint.Kind.values:
            errors[f"points-{index}-kind"] = [ValidationError(_("Choose the kind of address."), code="invalid")]
            continue
        label = (label or "").strip()
        if len(label) > LABEL_MAX_LENGTH:
            errors[f"points-{index}-label"] = [
                ValidationError(
                    _("At most %(max)s characters, please."), code="max_length", params={"max": LABEL_MAX_LENGTH}
                )
            ]
        try:
            normalized = normalize_point(kind, value or "")
        except ValidationError as exc:
            errors[f"points-{index}-value"] = exc.error_list
            continue
        if (kind, normalized) in where:
            errors[f"points-{index}-value"] = [ValidationError(_("This address is listed twice."), code="duplicate")]
            continue
        where[(kind, normalized)] = index
        cleaned.append((kind, normalized, label))
    if where:
        taken = Q()
        for kind, normalized in where:
            taken |= Q(kind=kind, value=normalized)
        for point in ContactPoint.objects.filter(taken).select_related("contact"):
            errors[f"points-{where[(point.kind, point.value)]}-value"] = [
                _point_taken(point.contact, point.kind, point.value)
            ]
    return cleaned


@transaction.atomic
def contact_create(
    *,
    actor,
    first_name: str = "",
    last_name: str = "",
    company: str = "",
    notes: str = "",
    tags: list[str] | tuple[str, ...] = (),
    points: list[tuple[str, str] | tuple[str, str, str]] | tuple = (),
) -> Contact:
    """An agent records a new contact with its addresses.

    Phone numbers are stored in E.164 and emails lower-cased. Raises
    ``ValidationError`` keyed by field (``first_name``, ``tags``,
    ``points-<i>-value``, ...); an address that already belongs to another
    contact is refused with a message naming that contact.
    """
    _require_contact_worker(actor)
    errors: dict[str, list] = {}
    fields = _clean_contact_fields(
        {"first_name": first_name, "last_name": last_name, "company": company, "notes": notes, "tags": tags},
        errors,
    )
    cleaned_points = _clean_points(points, errors)
    if not errors and not (fields["first_name"] or fields["last_name"] or fields["company"] or cleaned_points):
        errors[NON_FIELD_ERRORS] = [ValidationError(_("Give a name, a company or at least one address."), code="empty")]
    if errors:
        raise ValidationError(errors)
    contact = Contact.objects.create(**fields)
    for index, (kind, value, label) in enumerate(cleaned_points):
        _point_insert(contact=contact, kind=kind, value=value, label=label, error_key=f"points-{index}-value")
    return contact


def _point_insert(*, contact: Contact, kind: str, value: str, label: str, error_key: str) -> ContactPoint:
    try:
        with transaction.atomic():
            return ContactPoint.objects.create(contact=contact, kind=kind, value=value, label=label)
    except IntegrityError:
        # Another request took the address between our check and this insert: the constraint decided.
        owner = ContactPoint.objects.select_related("contact").get(kind=kind, value=value).contact
        raise ValidationError({error_key: [_point_taken(owner, kind, value)]}) from None


_UNSET: Any = object()


@transaction.atomic
def contact_update(
    *,
    actor,
    contact: Contact,
    first_name: str = _UNSET,
    last_name: str = _UNSET,
    company: str = _UNSET,
    notes: str = _UNSET,
    tags: list[str] = _UNSET,
) -> Contact:
    """Change the fields given; the others keep their values. Merged-away and erased contacts are read-only."""
    _require_contact_worker(actor)
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    _require_active(contact)
    given = {
        name: value
        for name, value in {
            "first_name": first_name,
            "last_name": last_name,
            "company": company,
            "notes": notes,
            "tags": tags,
        }.items()
        if value is not _UNSET
    }
    errors: dict[str, list] = {}
    fields = _clean_contact_fields(given, errors)
    if errors:
        raise ValidationError(errors)
    for name, value in fields.items():
        setattr(contact, name, value)
    contact.save(update_fields=[*fields, "updated_at"])
    _announce_contact_changed(contact)
    return contact


def _announce_contact_changed(contact: Contact) -> None:
    """The agent working the contact's open conversation sees the change at once (name, addresses, channels)."""
    for conversation_uuid, agent_id in Conversation.objects.filter(
        contact=contact, status=Conversation.Status.OPEN, assigned_agent__isnull=False
    ).values_list("uuid", "assigned_agent_id"):
        events.conversation_contact_changed(conversation_uuid=conversation_uuid, agent_id=agent_id)


@transaction.atomic
def contact_point_create(*, actor, contact: Contact, kind: str, value: str, label: str = "") -> ContactPoint:
    """An agent adds an address to ``contact``.

    Returns the existing point when the contact already has this address.
    Raises ``ValidationError`` (key ``value``) naming the other contact when
    the address belongs to someone else: merging them is a separate, confirmed
    step, never a side effect of typing an address.
    """
    _require_contact_worker(actor)
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    _require_active(contact)
    errors: dict[str, list] = {}
    cleaned = _clean_points([(kind, value, label)], errors)
    existing = ContactPoint.objects.filter(contact=contact, kind=kind, value=cleaned[0][1]).first() if cleaned else None
    if existing is not None:
        return existing
    if errors:
        raise ValidationError({key.removeprefix("points-0-"): messages for key, messages in errors.items()})
    _kind, normalized, clean_label = cleaned[0]
    point = _point_insert(contact=contact, kind=kind, value=normalized, label=clean_label, error_key="value")
    _announce_contact_changed(contact)
    return point


# Media whose live interactions reach the customer through an address of this kind.
POINT_KIND_MEDIA = {
    ContactPoint.Kind.PHONE: (Medium.VOICE, Medium.SMS),
    ContactPoint.Kind.EMAIL: (Medium.EMAIL,),
    ContactPoint.Kind.WEBCHAT: (Medium.CHAT, Medium.VOICE, Medium.VIDEO),
    ContactPoint.Kind.MESSENGER: (Medium.CHAT,),
}


@transaction.atomic
def contact_point_remove(*, actor, point: ContactPoint) -> None:
    """Remove an address from its contact.

    Refused while the contact's open conversation has a live interaction on a
    medium that reaches the customer through this kind of address (a phone
    number during a call or SMS thread, an email during an email thread): the
    customer's next reply would no longer be recognised and would start a
    second contact in the middle of the conversation. Otherwise any address may
    go, even the last one: the history stays with the contact, which is still
    found by name.
    """
    _require_contact_worker(actor)
    point = ContactPoint.objects.select_related("contact").select_for_update().get(pk=point.pk)
    _require_active(point.contact)
    in_use = Interaction.objects.live().filter(
        conversation__contact=point.contact,
        conversation__status=Conversation.Status.OPEN,
        medium__in=POINT_KIND_MEDIA[point.kind],
    )
    if in_use.exists():
        raise ValidationError(
            _("%(value)s is in use in the open conversation; remove it after the conversation ends."),
            code="in_use",
            params={"value": point.value},
        )
    point.delete()
    _announce_contact_changed(point.contact)


# --- duplicates and merging ----------------------------------------------------------------------

# Rows that belong to a contact and move with a merge: snapshot key, model. ContactPoint moves too (key "points").
# tests/contacts/test_merge.py checks that every relation to Contact is either listed here or deliberately left.
MOVED_RELATIONS: tuple[tuple[str, type[models.Model]], ...] = (
    ("conversations", Conversation),
    ("chat_sessions", ChatSession),
    ("call_sessions", CallSession),
)
# Chunks for id lists, well under SQLite's limit on query parameters.
_CHUNK = 500


def _chunks(ids: list[int]):
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _merged_values(target: Contact, source: Contact) -> dict[str, Any]:
    """The target's fields after a merge: only what the target lacks comes from the source.

    The name moves as a whole (a first name from one contact and a last name
    from the other would invent a person); the company fills an empty company;
    the source's notes are appended and its tags added; the newer activity wins.
    """
    values: dict[str, Any] = {}
    if not (target.first_name or target.last_name) and (source.first_name or source.last_name):
        values.update(first_name=source.first_name, last_name=source.last_name)
    if not target.company and source.company:
        values["company"] = source.company
    if source.notes and source.notes not in target.notes:
        values["notes"] = f"{target.notes}\n\n{source.notes}" if target.notes else source.notes
    tags = list(target.tags)
    known = {tag.casefold() for tag in tags if isinstance(tag, str)}
    for tag in source.tags:
        if isinstance(tag, str) and tag.casefold() not in known and len(tags) < MAX_TAGS:
            known.add(tag.casefold())
            tags.append(tag)
    if tags != target.tags:
        values["tags"] = tags
    if source.last_activity_at > target.last_activity_at:
        values["last_activity_at"] = source.last_activity_at
    return values


def _both_open_message() -> str:
    return _("Both contacts have an open conversation. Close one of them first, then merge the contacts.")


def _merge_conflicts(target: Contact, source: Contact) -> list[str]:
    conflicts = []
    if target.pk == source.pk:
        return [_("A contact cannot be merged into itself.")]
    for contact in (target, source):
        if contact.merged_into_id is not None:
            conflicts.append(
                _("Contact #%(id)s was already merged into contact #%(into)s.")
                % {"id": contact.pk, "into": contact.merged_into_id}
            )
        if contact.erased_at is not None:
            conflicts.append(_("Contact #%(id)s has been erased.") % {"id": contact.pk})
    if Conversation.objects.open().filter(contact__in=(target, source)).count() > 1:
        conflicts.append(_both_open_message())
    return conflicts


def contact_merge_preview(*, target: Contact, source: Contact) -> dict[str, Any]:
    """What merging ``source`` into ``target`` would do, for the agent to confirm.

    Returns the points, conversations (with their notes) and chat sessions that
    move, the target's fields that change (``{"field": (old, new)}``) and any
    ``conflicts`` that refuse the merge; ``can_merge`` is True when there are none.
    """
    conflicts = _merge_conflicts(target, source)
    changes = _merged_values(target, source) if not conflicts else {}
    return {
        "target": target,
        "source": source,
        "points": list(source.points.order_by("kind", "value")),
        "conversations": list(
            Conversation.objects.filter(contact=source).select_related("service").order_by("-opened_at", "-id")
        ),
        "notes": list(Note.objects.filter(conversation__contact=source).order_by("created_at", "id")),
        "chat_session_count": ChatSession.objects.filter(contact=source).count(),
        "fields": {name: (getattr(target, name), value) for name, value in changes.items()},
        "conflicts": conflicts,
        "can_merge": not conflicts,
    }


def _lock_contacts(*contacts: Contact) -> list[Contact]:
    """Lock the contacts' rows, always in id order so two merges of the same pair cannot deadlock."""
    locked = {
        contact.pk: contact
        for contact in Contact.objects.select_for_update().filter(pk__in=[c.pk for c in contacts]).order_by("pk")
    }
    return [locked[contact.pk] for contact in contacts]


def _announce_moved(conversation_ids: list[int]) -> None:
    """Open conversations that changed contact: the desktops showing them re-render the contact."""
    for conversation in Conversation.objects.open().filter(pk__in=conversation_ids):
        events.conversation_changed(conversation_uuid=conversation.uuid, agent_id=conversation.assigned_agent_id)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _python_value(name: str, value: Any) -> Any:
    if name in ("last_activity_at", "updated_at") and value is not None:
        return datetime.fromisoformat(value)
    return value


@transaction.atomic
def contact_merge(*, actor, target: Contact, source: Contact) -> ContactMerge:
    """Merge ``source`` into ``target`` after the agent confirmed the preview.

    The source's points, conversations and chat sessions move to the target;
    the target takes the source's name, company, notes and tags only where it
    lacks them. The source is kept, hidden (``merged_into``), and everything
    needed to undo the merge is recorded in the ``ContactMerge`` snapshot.
    Audited. Requires the ``contacts.merge_contact`` permission.
    """
    _require_merge_permission(actor)
    target, source = _lock_contacts(target, source)
    conflicts = _merge_conflicts(target, source)
    if conflicts:
        raise ValidationError(conflicts)
    now = timezone.now()
    changes = _merged_values(target, source)
    moved: dict[str, list[int]] = {}
    try:
        with transaction.atomic():
            for key, model in (("points", ContactPoint), *MOVED_RELATIONS):
                moved[key] = list(model.objects.filter(contact=source).order_by("pk").values_list("pk", flat=True))
                model.objects.filter(contact=source).update(contact=target)
    except IntegrityError:
        # The target's own conversation was opened after our check: the one-open-per-contact index decided.
        raise ValidationError(_both_open_message()) from None
    snapshot = {
        "version": 1,
        **moved,
        "target_before": {
            **{name: _json_value(getattr(target, name)) for name in changes},
            "updated_at": target.updated_at.isoformat(),
        },
        "target_after": {
            **{name: _json_value(value) for name, value in changes.items()},
            "updated_at": now.isoformat(),
        },
        "source_before": {"updated_at": source.updated_at.isoformat()},
        "source_fields": {
            "first_name": source.first_name,
            "last_name": source.last_name,
            "company": source.company,
            "notes": source.notes,
            "tags": source.tags,
        },
    }
    Contact.objects.filter(pk=target.pk).update(**changes, updated_at=now)
    Contact.objects.filter(pk=source.pk).update(merged_into=target, updated_at=now)
    merge = ContactMerge.objects.create(
        target=target, source=source, performed_by=actor, performed_at=now, snapshot=snapshot
    )
    audit_record(
        actor=actor,
        action="contact-merged",
        obj=merge,
        summary=f"Contact #{source.pk} merged into contact #{target.pk}",
        details={
            "target": target.pk,
            "source": source.pk,
            **{key: len(ids) for key, ids in moved.items()},
            "fields": sorted(changes),
        },
    )
    _announce_moved(moved["conversations"])
    return merge


def _undo_plan(merge: ContactMerge, target: Contact, source: Contact) -> dict[str, Any]:
    """What undoing ``merge`` would move back, what stays with the target, and what forbids it."""
    blockers = []
    if merge.undone_at is not None:
        blockers.append(_("This merge was already undone."))
    if target.merged_into_id is not None:
        blockers.append(
            _("Contact #%(id)s has since been merged into contact #%(into)s; undo that merge first.")
            % {"id": target.pk, "into": target.merged_into_id}
        )
    if target.erased_at is not None or source.erased_at is not None:
        blockers.append(_("The personal data of one of these contacts was erased; the merge cannot be undone."))
    if source.merged_into_id != target.pk and merge.undone_at is None:
        blockers.append(_("The merged contact is no longer part of this merge."))
    snapshot = merge.snapshot
    back: dict[str, list[int]] = {}
    gone: dict[str, list[int]] = {}
    for key, model in (("points", ContactPoint), *MOVED_RELATIONS):
        wanted = snapshot.get(key, [])
        still_on_target: set[int] = set()
        for chunk in _chunks(wanted):
            still_on_target.update(model.objects.filter(pk__in=chunk, contact=target).values_list("pk", flat=True))
        back[key] = [pk for pk in wanted if pk in still_on_target]
        gone[key] = [pk for pk in wanted if pk not in still_on_target]
    # Conversations moved by the merge were all opened before it; later ones happened on the kept contact.
    since = list(
        Conversation.objects.filter(contact=target, opened_at__gt=merge.performed_at).values_list("pk", flat=True)
    )
    restore: dict[str, Any] = {}
    kept: list[str] = []
    after = snapshot.get("target_after", {})
    for name, old in snapshot.get("target_before", {}).items():
        if name == "updated_at":
            continue
        if getattr(target, name) == _python_value(name, after.get(name)):
            restore[name] = _python_value(name, old)
        else:
            kept.append(name)
    return {
        "merge": merge,
        "target": target,
        "source": source,
        "back": back,
        "gone": gone,
        "conversations_since": since,
        "restore": restore,
        "kept_fields": kept,
        "blockers": blockers,
        "can_undo": not blockers,
    }


def contact_merge_undo_preview(*, merge: ContactMerge) -> dict[str, Any]:
    """For the confirmation before undoing: what goes back to the merged contact, what stays, what forbids it.

    ``back``: ids per kind of row that return to the merged contact;
    ``gone``: rows moved by the merge that no longer belong to the kept
    contact (an address removed since) and so cannot return;
    ``conversations_since``: conversations opened on the kept contact after
    the merge, which stay with it; ``kept_fields``: fields edited since the
    merge, which keep the newer value; ``blockers``: reasons that refuse it.
    """
    target = Contact.objects.get(pk=merge.target_id)
    source = Contact.objects.get(pk=merge.source_id)
    return _undo_plan(merge, target, source)


@transaction.atomic
def contact_merge_undo(*, actor, merge: ContactMerge) -> ContactMerge:
    """Undo a merge: both contacts are restored as they were before it.

    Points, conversations and chat sessions moved by the merge return to the
    merged contact; the kept contact's fields and timestamps get their
    earlier values back; the merged contact is shown again. What happened on
    the kept contact since the merge stays there: conversations opened after
    the merge (which address they came through is not recorded, so returning
    them would be a guess) and fields an agent edited since. Refused once the
    kept contact has itself been merged away (undo that first) or either
    contact was erased. Audited. Requires ``contacts.merge_contact``.
    """
    _require_merge_permission(actor)
    merge = ContactMerge.objects.select_for_update().get(pk=merge.pk)
    target, source = _lock_contacts(merge.target, merge.source)
    plan = _undo_plan(merge, target, source)
    if plan["blockers"]:
        raise ValidationError(plan["blockers"])
    snapshot = merge.snapshot
    for key, model in (("points", ContactPoint), *MOVED_RELATIONS):
        for chunk in _chunks(plan["back"][key]):
            model.objects.filter(pk__in=chunk, contact=target).update(contact=source)
    target_fields = dict(plan["restore"])
    untouched_since = target.updated_at == _python_value("updated_at", snapshot["target_after"]["updated_at"])
    now = timezone.now()
    target_fields["updated_at"] = (
        _python_value("updated_at", snapshot["target_before"]["updated_at"]) if untouched_since else now
    )
    Contact.objects.filter(pk=target.pk).update(**target_fields)
    Contact.objects.filter(pk=source.pk).update(
        merged_into=None, updated_at=_python_value("updated_at", snapshot["source_before"]["updated_at"])
    )
    merge.undone_at = now
    merge.undone_by = actor
    merge.save(update_fields=["undone_at", "undone_by"])
    audit_record(
        actor=actor,
        action="contact-merge-undone",
        obj=merge,
        summary=f"Merge of contact #{source.pk} into contact #{target.pk} undone",
        details={
            "target": target.pk,
            "source": source.pk,
            **{key: len(ids) for key, ids in plan["back"].items()},
            "not_returned": {key: ids for key, ids in plan["gone"].items() if ids},
            "conversations_since": plan["conversations_since"],
            "kept_fields": plan["kept_fields"],
        },
    )
    _announce_moved(plan["back"]["conversations"])
    return merge


# --- privacy -------------------------------------------------------------------------------------

# What erased text is replaced with; the same in every language, so reports and exports can recognise it.
REDACTED = "[redacted]"


def _merged_family(contact: Contact) -> list[int]:
    """The contact and every contact merged into it, directly or through another merge."""
    ids = [contact.pk]
    frontier = [contact.pk]
    while frontier:
        frontier = list(Contact.objects.filter(merged_into__in=frontier).values_list("pk", flat=True))
        ids.extend(frontier)
    return ids


def _rows(queryset) -> list[dict[str, Any]]:
    return list(queryset.order_by("pk").values())


def contact_export(*, actor, contact: Contact) -> dict[str, Any]:
    """Everything Parley stores about ``contact``, as JSON-ready data (GDPR access and portability).

    Contains the contact and the contacts merged into it, their points, every
    conversation with its interactions, messages (with attachment metadata,
    not the files), notes, timeline and offers, the chat sessions, the merges
    and the audit entries about them. Supervisors only; audited.
    """
    _require_supervisor(actor)
    family = _merged_family(contact)
    conversations = _rows(Conversation.objects.filter(contact_id__in=family))
    in_conversations = {"conversation__contact_id__in": family}
    interactions = _rows(Interaction.objects.filter(**in_conversations))
    messages = _rows(Message.objects.filter(**in_conversations))
    attachments = _rows(Attachment.objects.filter(message__conversation__contact_id__in=family))
    notes = _rows(Note.objects.filter(**in_conversations))
    timeline = _rows(TimelineEntry.objects.filter(**in_conversations))
    offers = _rows(Offer.objects.filter(interaction__conversation__contact_id__in=family))
    merges = _rows(ContactMerge.objects.filter(Q(target_id__in=family) | Q(source_id__in=family)))
    audit = _rows(
        AuditEntry.objects.filter(
            Q(object_type=Contact._meta.label_lower, object_id__in=[str(pk) for pk in family])
            | Q(object_type=ContactMerge._meta.label_lower, object_id__in=[str(merge["id"]) for merge in merges])
        )
    )

    def grouped(rows: list[dict], key: str) -> dict[int, list[dict]]:
        groups: dict[int, list[dict]] = {}
        for row in rows:
            groups.setdefault(row[key], []).append(row)
        return groups

    attachments_by_message = grouped(attachments, "message_id")
    for message in messages:
        message["attachments"] = attachments_by_message.get(message["id"], [])
    offers_by_interaction = grouped(offers, "interaction_id")
    for interaction in interactions:
        interaction["offers"] = offers_by_interaction.get(interaction["id"], [])
    parts = {
        "interactions": grouped(interactions, "conversation_id"),
        "messages": grouped(messages, "conversation_id"),
        "notes": grouped(notes, "conversation_id"),
        "timeline": grouped(timeline, "conversation_id"),
    }
    for conversation in conversations:
        for name, groups in parts.items():
            conversation[name] = groups.get(conversation["id"], [])
    contacts = {row["id"]: row for row in _rows(Contact.objects.filter(pk__in=family))}
    data = {
        "format": "parley-contact-export",
        "version": 1,
        "exported_at": timezone.now(),
        "contact": contacts[contact.pk],
        "merged_contacts": [row for pk, row in contacts.items() if pk != contact.pk],
        "points": _rows(ContactPoint.objects.filter(contact_id__in=family)),
        "conversations": conversations,
        "chat_sessions": _rows(ChatSession.objects.filter(contact_id__in=family)),
        "call_sessions": _rows(CallSession.objects.filter(contact_id__in=family)),
        "merges": merges,
        "audit": audit,
    }
    audit_record(
        actor=actor,
        action="contact-exported",
        obj=contact,
        summary=f"Data of contact #{contact.pk} exported",
        details={"contacts": family, "conversations": len(conversations), "messages": len(messages)},
    )
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _scrub_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A merge snapshot without personal values: ids and timestamps stay, names and notes go."""
    personal = ("first_name", "last_name", "company", "notes", "tags")
    scrubbed = dict(snapshot)
    for section in ("target_before", "target_after", "source_fields"):
        values = dict(scrubbed.get(section, {}))
        for name in personal:
            if name in values:
                values[name] = [] if name == "tags" else REDACTED
        scrubbed[section] = values
    return scrubbed


def _delete_files(names: list[str]) -> None:
    storage = Attachment._meta.get_field("file").storage
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            logger.exception("could not delete erased attachment %s", name)


@transaction.atomic
def contact_erase(*, actor, contact: Contact) -> dict[str, int]:
    """Erase the contact's personal data (GDPR), keeping what reports count.

    Names, company, notes and tags are cleared and the points deleted; message
    subjects and bodies, notes, wrap-up notes and transfer notes are replaced
    by ``REDACTED``; attachment files are deleted (after commit) and their rows
    kept with the name redacted; chat sessions lose the name, email and phone
    given and get a fresh visitor id; text in interaction details is dropped.
    Conversations, interactions with their times and states, message counts,
    sizes and dispositions stay. Contacts merged into this one are erased with
    it and their merges can no longer be undone. Refused while a conversation
    is open, and for a contact merged into another (erase that one).
    Supervisors only; audited. Returns counts of what was erased.
    """
    _require_supervisor(actor)
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    if contact.erased_at is not None:
        raise ValidationError(_("This contact's personal data was already erased."), code="erased")
    if contact.merged_into_id is not None:
        raise ValidationError(
            _("This contact was merged into contact #%(id)s; erase that contact, which holds its data."),
            code="merged",
            params={"id": contact.merged_into_id},
        )
    family = _merged_family(contact)
    conversations = Conversation.objects.filter(contact_id__in=family)
    if conversations.filter(status=Conversation.Status.OPEN).exists():
        raise ValidationError(
            _("The contact has an open conversation; close it before erasing the contact."), code="open"
        )
    now = timezone.now()
    in_conversations = {"conversation__contact_id__in": family}
    attachments = Attachment.objects.filter(message__conversation__contact_id__in=family)
    files = [name for name in attachments.values_list("file", flat=True) if name]
    counts = {
        "contacts": len(family),
        "points": ContactPoint.objects.filter(contact_id__in=family).delete()[0],
        "messages": Message.objects.filter(**in_conversations).exclude(body="").update(body=REDACTED),
        "subjects": Message.objects.filter(**in_conversations).exclude(subject="").update(subject=REDACTED),
        "attachments": attachments.update(file="", filename=REDACTED),
        "notes": Note.objects.filter(**in_conversations).update(body=REDACTED),
        "wrapup_notes": conversations.exclude(notes="").update(notes=REDACTED),
    }
    Message.objects.filter(**in_conversations).exclude(status_reason="").update(status_reason="")
    Offer.objects.filter(interaction__conversation__contact_id__in=family).exclude(transfer_note="").update(
        transfer_note=REDACTED
    )
    for entry in TimelineEntry.objects.filter(**in_conversations, kind=TimelineEntry.Kind.TRANSFERRED):
        if entry.data.get("note"):
            entry.data["note"] = REDACTED
            entry.save(update_fields=["data"])
    for interaction in Interaction.objects.filter(**in_conversations).exclude(details={}):
        # Call quality figures stay for reports; text (email thread ids, addresses) goes, so
        # a later email can no longer be threaded into the erased contact's conversation.
        interaction.details = {
            key: value for key, value in interaction.details.items() if isinstance(value, int | float)
        }
        interaction.save(update_fields=["details"])
    sessions = ChatSession.objects.filter(contact_id__in=family)
    counts["chat_sessions"] = sessions.update(name="", email="", phone="")
    for session_id in sessions.values_list("pk", flat=True):
        # The browser's visitor id is an online identifier: a fresh random one breaks the link.
        ChatSession.objects.filter(pk=session_id).update(visitor_id=uuid.uuid4())
    for session_id in CallSession.objects.filter(contact_id__in=family).values_list("pk", flat=True):
        CallSession.objects.filter(pk=session_id).update(visitor_id=uuid.uuid4())
    for merge in ContactMerge.objects.filter(Q(target_id__in=family) | Q(source_id__in=family)):
        merge.snapshot = _scrub_snapshot(merge.snapshot)
        merge.save(update_fields=["snapshot"])
    Contact.objects.filter(pk__in=family).update(
        first_name="", last_name="", company="", notes="", tags=[], erased_at=now, updated_at=now
    )
    audit_record(
        actor=actor,
        action="contact-erased",
        obj=contact,
        summary=f"Personal data of contact #{contact.pk} erased",
        details={**counts, "contact_ids": family},
    )
    transaction.on_commit(lambda: _delete_files(files))
    return counts


# --- following up ----------------------------------------------------------------------------------

# Which addresses reach the customer on each medium an agent can start from the contact page.
FOLLOW_UP_POINT_KINDS = {
    Medium.SMS: (ContactPoint.Kind.PHONE,),
    Medium.VOICE: (ContactPoint.Kind.PHONE,),
    Medium.EMAIL: (ContactPoint.Kind.EMAIL,),
    Medium.CHAT: (ContactPoint.Kind.WEBCHAT, ContactPoint.Kind.MESSENGER),
}


def contact_follow_up(*, actor, contact: Contact, medium: str, service: Service | None = None) -> Conversation:
    """The agent contacts the customer again from the contact page: by SMS, email, call or chat.

    The source document's rule holds here too: when the contact has an open
    conversation, that conversation is returned unchanged (the agent continues
    in it, on any medium, with the conversation's own tools). Otherwise a new
    conversation is opened, assigned to the agent, with an outbound interaction
    of ``medium`` already active. Refused when the contact has no address for
    ``medium`` (SMS and calls need a phone number, email an email address).
    """
    # Imported here: conversations.services imports this module.
    from agents.services import agent_work_started
    from conversations.services import conversation_open, interaction_start

    _require_signed_in(actor)
    profile = AgentProfile.objects.filter(user_id=actor.pk).first()
    if profile is None:
        raise PermissionDenied(_("Only agents can contact customers."))
    if profile.state == AgentState.LOGGED_OUT:
        raise ValidationError(_("Log in to the desktop before contacting a customer."), code="logged_out")
    _require_active(contact)
    kinds = FOLLOW_UP_POINT_KINDS.get(medium)
    if kinds is None:
        raise ValidationError(_("A conversation cannot be started by “%(medium)s”."), params={"medium": medium})
    if service is not None and medium not in service.media:
        raise ValidationError(
            _("%(service)s does not handle %(medium)s."),
            params={"service": service.name, "medium": Medium(medium).label},
        )
    if not contact.points.filter(kind__in=kinds).exists():
        messages = {
            Medium.SMS: _("The contact has no phone number."),
            Medium.VOICE: _("The contact has no phone number."),
            Medium.EMAIL: _("The contact has no email address."),
            Medium.CHAT: _("The contact has no chat or messenger address."),
        }
        raise ValidationError(messages[medium], code="no_address")
    with transaction.atomic():
        if medium in (Medium.CHAT, Medium.VOICE):
            # A web chat lives in the customer's browser tab, and calls are placed from it (WebRTC; there is no
            # telephone line): Parley can only join a conversation the customer has open, never start a chat
            # or call towards a visitor who is not on the website.
            conversation = Conversation.objects.open().filter(contact=contact).first()
            if conversation is None:
                raise ValidationError(
                    _("The customer is not in a chat with us now; only they can start one. Follow up by SMS or email."),
                    code="not_online",
                )
            return conversation
        conversation, created = conversation_open(contact=contact, service=service, agent=actor)
        if not created:
            return conversation
        interaction_start(
            conversation=conversation,
            medium=medium,
            direction=Direction.OUTBOUND,
            service=service,
            agent=actor,
            state=Interaction.State.ACTIVE,
        )
        agent_work_started(user=actor)
        events.agent_conversations_changed(user_id=actor.pk)
    return conversation
