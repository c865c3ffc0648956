"""Normalisation of contact-point values: one spelling per address.

A phone number is stored in E.164, an email lower-cased, so that the same
customer typing their number in three formats is still one contact point.
"""

from __future__ import annotations

import unicodedata

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

MAX_POINT_LENGTH = 254


def normalize_phone(raw: str, *, region: str | None = None) -> str:
    """Return ``raw`` in E.164, reading national formats in ``region``."""
    try:
        number = phonenumbers.parse(raw.strip(), region or settings.DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(_("“%(value)s” is not a phone number."), params={"value": raw}) from exc
    if not phonenumbers.is_possible_number(number):
        raise ValidationError(_("“%(value)s” is not a possible phone number."), params={"value": raw})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    value = raw.strip().lower()
    # The validator allows up to 320 characters; the column holds 254 (RFC 5321's path limit).
    if len(value) > MAX_POINT_LENGTH:
        raise ValidationError(_("The email address is too long."))
    try:
        validate_email(value)
    except ValidationError as exc:
        raise ValidationError(_("“%(value)s” is not an email address."), params={"value": raw}) from exc
    return value


def normalize_opaque(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValidationError(_("The identifier is empty."))
    if len(value) > MAX_POINT_LENGTH:
        raise ValidationError(_("The identifier is too long."))
    return value


def normalize_point(kind: str, raw: str) -> str:
    """Normalise ``raw`` for a contact point of ``kind`` or raise ``ValidationError``."""
    from contacts.models import ContactPoint

    if kind == ContactPoint.Kind.PHONE:
        return normalize_phone(raw)
    if kind == ContactPoint.Kind.EMAIL:
        return normalize_email(raw)
    if kind in (ContactPoint.Kind.WEBCHAT, ContactPoint.Kind.MESSENGER):
        return normalize_opaque(raw)
    raise ValidationError(_("Unknown contact point kind “%(kind)s”."), params={"kind": kind})


def fold_name(raw: str) -> str:
    """A name compared without case, accents or extra spaces: “  Jürgen  MÜLLER” → “jurgen muller”.

    For finding likely duplicates only; stored names keep their spelling.
    """
    decomposed = unicodedata.normalize("NFKD", raw)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(stripped.casefold().split())
