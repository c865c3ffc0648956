from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from core.models import WorkerHeartbeat


def worker_heartbeat_record(*, hostname: str) -> WorkerHeartbeat:
    """Note that the worker ``hostname`` is alive and processing tasks now."""
    now = timezone.now()
    heartbeat, created = WorkerHeartbeat.objects.get_or_create(hostname=hostname, defaults={"seen_at": now, "beats": 1})
    if not created:
        WorkerHeartbeat.objects.filter(pk=heartbeat.pk).update(seen_at=now, beats=F("beats") + 1)
        heartbeat.refresh_from_db()
    return heartbeat
