"""Every write to contacts goes through here."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from contacts.models import Contact, ContactPoint
from contacts.normalize import normalize_point


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


def contact_touch(*, contact: Contact) -> None:
    """Record activity now, so the contact sorts first in search results."""
    Contact.objects.filter(pk=contact.pk).update(last_activity_at=timezone.now())
