"""A real Celery worker takes a task from the configured broker and runs it on our database."""

from __future__ import annotations

import time
import uuid

import pytest
from django.conf import settings

from config.celery import app as celery_app
from core import fs_broker
from core.models import WorkerHeartbeat
from core.tasks import worker_heartbeat
from tests.conftest import redis_available, require_component
from tests.live import celery_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, *, timeout: float, proc) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        assert proc.poll() is None, "the Celery worker exited"
        time.sleep(0.25)
    return False


def test_broker_matches_configuration():
    """The Redis run really uses Redis; the embedded run the filesystem broker that writes messages whole."""
    transport = celery_app.connection_for_write().transport_cls
    if settings.REDIS_URL:
        require_component(redis_available(), f"Redis at {settings.REDIS_URL}")
        assert transport in ("redis", "rediss")
    else:
        assert transport == "parleyfs"
        assert celery_app.connection_for_write().transport.Channel is fs_broker.Channel


def test_worker_round_trip_records_heartbeat(tmp_path):
    if settings.REDIS_URL:
        require_component(redis_available(), f"Redis at {settings.REDIS_URL}")
    celery_app.control.purge()
    hostname = f"parley-test-{uuid.uuid4().hex[:8]}@localhost"
    with celery_worker(tmp_path / "worker.log", hostname) as proc:
        worker_heartbeat.delay()
        arrived = wait_for(lambda: WorkerHeartbeat.objects.filter(hostname=hostname).exists(), timeout=60, proc=proc)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert arrived, f"no heartbeat from the worker within 60 s; worker log:\n{log}"
        worker_heartbeat.delay()
        assert wait_for(
            lambda: WorkerHeartbeat.objects.filter(hostname=hostname, beats=2).exists(), timeout=30, proc=proc
        )
