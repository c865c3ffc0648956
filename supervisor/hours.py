"""Business hours of a service: ``{"mon": ["08:00-12:00", "13:00-18:00"], "sat": [], ...}``.

A weekday that is missing or empty means closed that day, unless the whole
mapping is empty: a service without business hours is always open. Times are
in the server's time zone (``TIME_ZONE``).
"""

from __future__ import annotations

import re
from datetime import datetime, time

from django.utils import timezone
from django.utils.translation import gettext as _

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def _parse(text: str) -> tuple[time, time] | None:
    match = RANGE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    start = time(int(match[1]), int(match[2]))
    end = time(int(match[3]), int(match[4]))
    return (start, end) if start < end else None


def business_hours_errors(value) -> list[str]:
    """What is wrong with a business-hours mapping (empty list when it is fine)."""
    if value in (None, ""):
        return []
    if not isinstance(value, dict):
        return [_("Business hours must map weekdays (mon … sun) to lists of “HH:MM-HH:MM”.")]
    errors = []
    for day, ranges in value.items():
        if day not in WEEKDAYS:
            errors.append(_("Unknown weekday “%(day)s”; use mon, tue, wed, thu, fri, sat, sun.") % {"day": day})
            continue
        if not isinstance(ranges, list):
            errors.append(_("%(day)s: give a list of ranges.") % {"day": day})
            continue
        for text in ranges:
            if _parse(text) is None:
                errors.append(_("%(day)s: “%(range)s” is not a range like 08:00-18:00.") % {"day": day, "range": text})
    return errors


def service_is_open(*, service, at: datetime | None = None) -> bool:
    hours = service.business_hours or {}
    if not hours or business_hours_errors(hours):
        return True
    local = timezone.localtime(at or timezone.now())
    now = local.time()
    for text in hours.get(WEEKDAYS[local.weekday()], []):
        start, end = _parse(text)
        if start <= now < end:
            return True
    return False
