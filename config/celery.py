"""Celery application: tasks are autodiscovered from every installed app's tasks.py."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu.transport import TRANSPORT_ALIASES

# The embedded broker (no REDIS_URL): kombu's filesystem transport, writing each message whole (core.fs_broker).
TRANSPORT_ALIASES["parleyfs"] = "core.fs_broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("parley")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@worker_process_init.connect
def relay_events_when_layer_is_in_memory(**kwargs) -> None:
    """A worker's in-memory layer reaches no browser: relay its events through the database."""
    from core import realtime

    if realtime.layer_is_in_memory():
        realtime.RELAY_THROUGH_DATABASE = True
