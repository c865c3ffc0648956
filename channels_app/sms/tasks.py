from __future__ import annotations

import logging

from celery import shared_task

from channels_app.sms import services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, autoretry_for=(OSError,), retry_backoff=5, max_retries=5)
def sms_media_fetch(message_id: int, account_id: int, url: str, content_type: str, index: int = 0) -> None:
    try:
        services.sms_media_store(
            message_id=message_id, account_id=account_id, url=url, content_type=content_type, index=index
        )
    except ValueError:
        logger.warning("MMS media of message %s is too large; not stored", message_id)


@shared_task(ignore_result=True)
def sms_inbound_process(inbound_id: int) -> None:
    """File the stored inbound SMS of this row's sender into conversations, oldest first."""
    services.sms_inbound_process(inbound_id=inbound_id)


@shared_task(ignore_result=True)
def sms_inbound_sweep() -> None:
    counts = services.sms_inbound_sweep()
    if any(counts.values()):
        logger.info("inbound SMS sweep: %s", counts)
