from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F
from django.utils import timezone

from core.models import AuditEntry, WorkerHeartbeat


def worker_heartbeat_record(*, hostname: str) -> WorkerHeartbeat:
    """Note that the worker ``hostname`` is alive and processing tasks now."""
    now = timezone.now()
    heartbeat, created = WorkerHeartbeat.objects.get_or_create(hostname=hostname, defaults={"seen_at": now, "beats": 1})
    if not created:
        WorkerHeartbeat.objects.filter(pk=heartbeat.pk).update(seen_at=now, beats=F("beats") + 1)
        heartbeat.refresh_from_db()
    return heartbeat


def audit_record(
    *, actor, action: str, obj: models.Model, summary: str, details: dict[str, Any] | None = None
) -> AuditEntry:
    """Record that ``actor`` did ``action`` to ``obj``.

    Call it inside the transaction of the change it records, so the entry and
    the change are committed (or rolled back) together. ``summary`` and
    ``details`` must not carry a customer's personal data: name rows by id.
    """
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        actor=user,
        actor_label=user.get_username() if user is not None else "",
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        summary=summary[:255],
        details=details or {},
    )
