"""Thin Celery tasks of the email channel: ids in, call a service."""

from __future__ import annotations

from celery import shared_task

from conversations.outbox import TransientSendError


@shared_task(name="channels_app.email.tasks.imap_poll_all", ignore_result=True)
def imap_poll_all() -> dict:
    """Beat: poll every active mailbox, then send transcripts a dead broker left behind."""
    from channels_app.email.imap import imap_poll_all as poll
    from channels_app.email.models import TranscriptRequest

    results = poll()
    for request_id in TranscriptRequest.objects.filter(sent_at__isnull=True).values_list("pk", flat=True)[:50]:
        transcript_send_task.delay(request_id)
    return results


@shared_task(
    name="channels_app.email.tasks.transcript_send",
    autoretry_for=(TransientSendError,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
    ignore_result=True,
)
def transcript_send_task(request_id: int) -> bool:
    from channels_app.email.transports import transcript_deliver

    return transcript_deliver(request_id=request_id)
