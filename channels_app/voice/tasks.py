"""Thin Celery tasks: ids in, a service call."""

from __future__ import annotations

from celery import shared_task

from channels_app.voice import services


@shared_task(ignore_result=True)
def call_ring_expire(call_id: int) -> None:
    services.call_ring_expire(call_id=call_id)


@shared_task(ignore_result=True)
def calls_ring_sweep() -> None:
    services.calls_ring_sweep()
