from __future__ import annotations

from celery import shared_task

from channels_app.webchat.services import chat_inactivity_sweep as chat_inactivity_sweep_service


@shared_task(ignore_result=True)
def chat_inactivity_sweep() -> None:
    chat_inactivity_sweep_service()
